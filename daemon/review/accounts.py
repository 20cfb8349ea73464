"""Who may use the review station: passwords, logins (throttled), the session a request acts as, and when a
login is needed at all.

The accounts live in the store (one table for the whole plant, ``musc-online accounts``), so every station
sees the same people. Passwords are hashed with Argon2id through argon2-cffi, never with home-made crypto.
Sessions are kept in the store by their hash (``sessions``); failed logins are counted per account and per
address and lock out (``throttle``). A session is checked against its account on every request, so removing an
account or changing its password ends that account's sessions at once.

Bound to a loopback address with no accounts in the store, the station runs open as the single local operator
(there is nobody else to tell apart) with one session made at start; anywhere else, and behind a proxy (which
serves it to others whatever address it binds), it needs accounts.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from daemon.review.sessions import Session, SessionBook, local_session
from daemon.review.throttle import Throttle
from daemon.store import Store
from musc_online.transport import is_loopback

LOGIN_DELAY_S = 1.0  # every refused login is answered after this long, whatever failed
ACCOUNT_HINT = "musc-online accounts add NAME --role operator"

_HASHER = PasswordHasher()  # Argon2id with argon2-cffi's defaults (RFC 9106 low-memory profile)
_DUMMY_HASH: list[str] = []  # a hash to verify against for unknown names, so they cost what a wrong password does


class StationRefused(RuntimeError):
    """The station will not start as asked; the message says why and what to do."""


def hash_password(password: str) -> str:
    """The Argon2id hash (with its salt and parameters) to keep in the store for ``password``."""
    if not password:
        raise ValueError("the password is empty")
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches the stored hash; a malformed hash matches nothing."""
    try:
        return _HASHER.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """Whether the hash was made with weaker parameters than today's (then it is replaced at the next login)."""
    try:
        return _HASHER.check_needs_rehash(password_hash)
    except InvalidHashError:
        return False


@dataclass(frozen=True)
class Login:
    """A login's outcome: the new session, or why not (``locked``: what is locked out and for how many seconds)."""

    session: Session | None
    locked: tuple[str, int] | None = None


class Gate:
    """The station's door: whether a login is needed, logins, and the session a request acts as."""

    def __init__(
        self,
        store: Store,
        host: str,
        operator: str,
        sessions: SessionBook | None = None,
        throttle: Throttle | None = None,
        behind_proxy: bool = False,
    ) -> None:
        self.store = store
        self.loopback = is_loopback(host) and not behind_proxy
        self.sessions = sessions or SessionBook(store)
        self.throttle = throttle or Throttle(store)
        self.local = local_session(operator)
        if not self.loopback and not store.accounts():
            where = f"{host or 'every interface'}" + (" behind a proxy" if behind_proxy else "")
            raise StationRefused(
                f"the review station on {where} needs accounts, and the store has none: "
                f"create one with `{ACCOUNT_HINT}` (only a loopback address may run without login)"
            )

    def login_required(self) -> bool:
        """Off loopback (or behind a proxy) always; on loopback as soon as the store holds an account."""
        return not self.loopback or bool(self.store.accounts())

    def login(self, name: str, password: str, address: str) -> Login:
        """A new session for the right name and password from an address that is not locked out; else why not.

        The caller answers every refusal after the same fixed delay (``LOGIN_DELAY_S``).
        """
        locked = self.throttle.locked(name, address)
        if locked is not None:
            return Login(None, locked)
        account = self.store.account(name) if name else None
        if account is None:
            if not _DUMMY_HASH:
                _DUMMY_HASH.append(_HASHER.hash(secrets.token_urlsafe(16)))
            verify_password(_DUMMY_HASH[0], password)
        elif verify_password(account.password_hash, password):
            if needs_rehash(account.password_hash):
                self.store.set_password(name, hash_password(password))
            self.throttle.succeeded(account.name)
            return Login(self.sessions.create(account.name, account.role))
        self.throttle.failed(name, address)
        return Login(None, self.throttle.locked(name, address))

    def session(self, token: str | None) -> Session | None:
        """The live session a request's cookie names, with its account's role as it is now."""
        if token and secrets.compare_digest(token, self.local.token):
            return None if self.login_required() else self.local  # void once a login is needed
        return self.sessions.get(token)

    def open_session(self) -> Session | None:
        """The open station's local session (no password to ask for); None once a login is needed."""
        return None if self.login_required() else self.local
