"""Review station sessions: random tokens kept in the store by their SHA-256 only, with idle and absolute expiry.

A session's token is the browser's cookie (HttpOnly, SameSite=Strict, Secure when the page came over HTTPS);
its CSRF token is derived from it (an HMAC), so nothing else needs keeping and a page of another site, which
never sees the cookie, cannot know it. The store keeps the hash, the account and the times: a station restart
keeps everyone logged in, a copy of the store opens nothing, and removing an account or changing its password
deletes its sessions (``daemon.store``). The open station (loopback, no accounts) has one local session made at
start and kept in memory only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from daemon.store import Store

IDLE_EXPIRY_S = 12 * 3600.0  # a session unused this long is over: a shift, with room
ABSOLUTE_EXPIRY_S = 7 * 24 * 3600.0  # and none lives longer than a week, however often it is used
TOUCH_EVERY_S = 60.0  # a session's last use is written at most this often (not on every request)
COOKIE = "musc_session"


def token_hash(token: str) -> str:
    """What the store keeps of a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_for(token: str) -> str:
    """The CSRF token that goes with a session token (every write echoes it in ``X-CSRF-Token``)."""
    digest = hmac.new(token.encode(), b"musc-online review csrf", hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def session_cookie(token: str, secure: bool, expire: bool = False) -> str:
    """The session cookie: HttpOnly (no script reads it), SameSite=Strict (no other site sends it), Path=/,
    and Secure when the page was served over HTTPS (the browser then never sends it in clear)."""
    return (
        f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"
        + ("; Secure" if secure else "")
        + ("; Max-Age=0" if expire else "")
    )


@dataclass(frozen=True)
class Session:
    """A logged-in browser: whose it is, its role now and its tokens."""

    token: str
    name: str
    role: str

    @property
    def csrf(self) -> str:
        """The token this session's writes must carry."""
        return csrf_for(self.token)

    @property
    def may_correct(self) -> bool:
        """Operators mark and undo; viewers only look."""
        return self.role == "operator"

    def csrf_matches(self, given: str | None) -> bool:
        """Whether a request's CSRF header is this session's token (constant-time)."""
        return given is not None and hmac.compare_digest(self.csrf.encode(), given.encode())


def local_session(name: str) -> Session:
    """The open station's one session (loopback, no accounts): the local operator, never stored."""
    return Session(secrets.token_urlsafe(32), name, "operator")


class SessionBook:
    """Sessions of accounts in the store: made at login, found by cookie, expired when idle or old, ended."""

    def __init__(
        self,
        store: Store,
        idle_s: float = IDLE_EXPIRY_S,
        absolute_s: float = ABSOLUTE_EXPIRY_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.idle_s = idle_s
        self.absolute_s = absolute_s
        self.clock = clock

    def create(self, name: str, role: str) -> Session:
        """A new session with a fresh random token for account ``name`` (expired ones are swept on the way)."""
        now = self.clock()
        session = Session(secrets.token_urlsafe(32), name, role)
        self.store.add_session(token_hash(session.token), name, now, now - self.idle_s, now - self.absolute_s)
        return session

    def get(self, token: str | None) -> Session | None:
        """The live session of a cookie's token with its account's role now, or None; its idle time restarts."""
        if not token:
            return None
        now, key = self.clock(), token_hash(token)
        found = self.store.live_session(key, idle_since=now - self.idle_s, created_since=now - self.absolute_s)
        if found is None:
            return None
        if now - found.last_seen >= TOUCH_EVERY_S:
            self.store.touch_session(key, now)
        return Session(token, found.name, found.role)

    def end(self, token: str | None) -> None:
        """Forget a session (logout, or a new login from the same browser)."""
        if token:
            self.store.end_session(token_hash(token))
