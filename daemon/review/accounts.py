"""Who may use the review station: passwords, sessions and CSRF tokens, and when a login is needed at all.

The accounts live in the store (one table for the whole plant, `musc-online accounts`), so every station
sees the same people. Passwords are hashed with Argon2id through argon2-cffi, never with home-made crypto.
Sessions are kept in memory only: a station restart logs everyone out, which is cheap and leaves nothing to
steal on disk. Each session has a random token (the cookie) and a separate CSRF token that every write must
echo in a header; both come from ``secrets`` and are compared in constant time.

A session is checked against its account on every request, so removing an account or changing its password
ends that account's sessions at once. Bound to a loopback address with no accounts in the store, the station
runs open as the single local operator (there is nobody else to tell apart); anywhere else it needs accounts.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from daemon.store import Store

IDLE_EXPIRY_S = 12 * 3600.0  # a session unused this long is gone: a shift, with room
LOGIN_DELAY_S = 1.0  # every failed login is answered after this long, whatever failed
COOKIE = "musc_session"
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


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the station on this machine (an address or ``localhost``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name other than localhost, or "" (every interface): it may be reachable from elsewhere


def session_cookie(token: str, expire: bool = False) -> str:
    """The session cookie: HttpOnly (no script reads it), SameSite=Strict (no other site sends it), Path=/."""
    return f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/" + ("; Max-Age=0" if expire else "")


def cookie_token(header: str | None) -> str | None:
    """The session token in a request's Cookie header, if any."""
    try:
        morsel = SimpleCookie(header or "").get(COOKIE)
    except CookieError:
        return None
    return morsel.value if morsel else None


@dataclass
class Session:
    """A logged-in browser: whose it is, the token its writes must carry, and when it was last used."""

    token: str
    name: str
    role: str
    csrf: str
    last_seen: float
    hash_marker: str | None  # the account's password hash at login; None for the open station's local session

    @property
    def may_correct(self) -> bool:
        """Operators mark and undo; viewers only look."""
        return self.role == "operator"

    def csrf_matches(self, given: str | None) -> bool:
        """Whether a request's CSRF header is this session's token (constant-time)."""
        return given is not None and hmac.compare_digest(self.csrf.encode(), given.encode())


class Sessions:
    """The in-memory session table: random tokens, idle expiry, thread-safe."""

    def __init__(self, idle_s: float = IDLE_EXPIRY_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_s = idle_s
        self.clock = clock
        self._by_token: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, name: str, role: str, hash_marker: str | None = None) -> Session:
        """A new session with fresh random tokens."""
        session = Session(
            token=secrets.token_urlsafe(32),
            name=name,
            role=role,
            csrf=secrets.token_urlsafe(32),
            last_seen=self.clock(),
            hash_marker=hash_marker,
        )
        with self._lock:
            self._expire()
            self._by_token[session.token] = session
        return session

    def get(self, token: str | None) -> Session | None:
        """The live session of a cookie's token (its idle time restarts), or None."""
        if not token:
            return None
        with self._lock:
            self._expire()
            session = self._by_token.get(token)
            if session is not None:
                session.last_seen = self.clock()
            return session

    def end(self, token: str | None) -> None:
        """Forget a session (logout, or its account changed)."""
        with self._lock:
            self._by_token.pop(token or "", None)

    def __len__(self) -> int:
        with self._lock:
            self._expire()
            return len(self._by_token)

    def _expire(self) -> None:
        cutoff = self.clock() - self.idle_s
        for token in [t for t, s in self._by_token.items() if s.last_seen < cutoff]:
            del self._by_token[token]


class Gate:
    """The station's door: whether a login is needed, logins, and the session a request acts as."""

    def __init__(
        self,
        store: Store,
        host: str,
        operator: str,
        sessions: Sessions | None = None,
        login_delay_s: float = LOGIN_DELAY_S,
    ) -> None:
        self.store = store
        self.loopback = is_loopback(host)
        self.operator = operator
        self.sessions = sessions or Sessions()
        self.login_delay_s = login_delay_s
        if not self.loopback and not store.accounts():
            raise StationRefused(
                f"the review station on {host or 'every interface'} needs accounts, and the store has none: "
                f"create one with `{ACCOUNT_HINT}` (only a loopback address may run without login)"
            )

    def login_required(self) -> bool:
        """Off loopback always; on loopback as soon as the store holds an account."""
        return not self.loopback or bool(self.store.accounts())

    def login(self, name: str, password: str) -> Session | None:
        """A new session for the right name and password; None (after the fixed delay) for anything else."""
        started = time.monotonic()
        account = self.store.account(name) if name else None
        if account is None:
            if not _DUMMY_HASH:
                _DUMMY_HASH.append(_HASHER.hash(secrets.token_urlsafe(16)))
            verify_password(_DUMMY_HASH[0], password)
        elif verify_password(account.password_hash, password):
            marker = account.password_hash
            if needs_rehash(marker):
                marker = hash_password(password)
                self.store.set_password(name, marker)
            return self.sessions.create(account.name, account.role, marker)
        time.sleep(max(0.0, self.login_delay_s - (time.monotonic() - started)))
        return None

    def open_session(self) -> Session:
        """The local operator's session of an open station (loopback, no accounts): no password to ask for."""
        return self.sessions.create(self.operator, "operator")

    def session(self, token: str | None) -> Session | None:
        """The live session a request's cookie names, checked against its account as it is now."""
        session = self.sessions.get(token)
        if session is None:
            return None
        if session.hash_marker is None:  # the open station's local session: void once a login is needed
            if self.login_required():
                self.sessions.end(token)
                return None
            return session
        account = self.store.account(session.name)
        if account is None or not hmac.compare_digest(account.password_hash, session.hash_marker):
            self.sessions.end(token)  # removed, or its password changed: log out everywhere
            return None
        session.role = account.role
        return session
