"""The review station's sessions and login lockouts, kept in the store so a station restart keeps both and every
station of the plant (and ``musc-online accounts``) sees the same ones.

A session is stored by the SHA-256 of its token only: whoever reads the store cannot open one. The policy (how
long a session lives, how many failures lock what out) is the review station's; these are its queries.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, or_, select, update

from daemon.store.database import Database
from daemon.store.records import record_from
from daemon.store.schema import AccountRow, LoginLockoutRow, ReviewSessionRow

LOCKOUT_KINDS = ("account", "address")


@dataclass(frozen=True)
class SessionRecord:
    """A live session: whose it is, the account's role now, and its times."""

    name: str
    role: str
    created_at: float
    last_seen: float


@dataclass(frozen=True)
class LockoutRecord:
    """Failed logins of an account or an address since ``first_at``; locked while ``locked_until`` is ahead."""

    kind: str
    subject: str
    failures: int
    first_at: float
    last_at: float
    locked_until: float | None


class SessionQueries(Database):
    """Review station sessions (by token hash) and login lockouts (by account and by client address)."""

    def add_session(self, token_hash: str, name: str, at: float, idle_since: float, created_since: float) -> None:
        """Keep a new session of account ``name``; those unused since ``idle_since`` or made before
        ``created_since`` (expired) go with it."""
        expired = or_(ReviewSessionRow.last_seen < idle_since, ReviewSessionRow.created_at < created_since)
        with self._writes.begin() as session:
            session.execute(delete(ReviewSessionRow).where(expired))
            session.add(ReviewSessionRow(token_hash=token_hash, name=name, created_at=at, last_seen=at))

    def live_session(self, token_hash: str, idle_since: float, created_since: float) -> SessionRecord | None:
        """The session of ``token_hash`` when used since ``idle_since`` and made since ``created_since``."""
        query = (
            select(ReviewSessionRow, AccountRow.role)
            .join(AccountRow, AccountRow.name == ReviewSessionRow.name)
            .where(
                ReviewSessionRow.token_hash == token_hash,
                ReviewSessionRow.last_seen >= idle_since,
                ReviewSessionRow.created_at >= created_since,
            )
        )
        with self._reads() as session:
            found = session.execute(query).first()
            return None if found is None else record_from(SessionRecord, found[0], role=found[1])

    def touch_session(self, token_hash: str, at: float) -> None:
        """Restart a session's idle time."""
        with self._writes.begin() as session:
            touched = update(ReviewSessionRow).where(ReviewSessionRow.token_hash == token_hash)
            session.execute(touched.values(last_seen=at))

    def end_session(self, token_hash: str) -> None:
        """Forget a session (logout); nothing happens for an unknown one."""
        with self._writes.begin() as session:
            session.execute(delete(ReviewSessionRow).where(ReviewSessionRow.token_hash == token_hash))

    def sessions_of(self, name: str) -> int:
        """How many sessions account ``name`` has in the store (expired ones included until pruned)."""
        with self._reads() as session:
            return len(session.scalars(select(ReviewSessionRow.token_hash).where(ReviewSessionRow.name == name)).all())

    def lockout(self, kind: str, subject: str) -> LockoutRecord | None:
        """The failed-login record of an account or an address, or None."""
        with self._reads() as session:
            row = session.get(LoginLockoutRow, (kind, subject))
            return None if row is None else record_from(LockoutRecord, row)

    def count_failure(self, kind: str, subject: str, at: float, window_s: float, limit: int, lock_s: float) -> None:
        """One more failed login for ``subject``; at ``limit`` failures within ``window_s`` it is locked ``lock_s``.

        Records older than the window (and not locked) are dropped on the way, so the table stays small.
        """
        with self._writes.begin() as session:
            stale = or_(LoginLockoutRow.locked_until.is_(None), LoginLockoutRow.locked_until < at)
            session.execute(delete(LoginLockoutRow).where(LoginLockoutRow.last_at < at - window_s, stale))
            row = session.get(LoginLockoutRow, (kind, subject), with_for_update=True)
            if row is None:
                row = LoginLockoutRow(kind=kind, subject=subject, failures=0, first_at=at)
                session.add(row)
            elif row.first_at < at - window_s or (row.locked_until or at) < at:  # a new count after the last one
                row.failures, row.first_at = 0, at
            row.failures += 1
            row.locked_until = None
            row.last_at = at
            if row.failures >= limit:
                row.locked_until = at + lock_s

    def clear_failures(self, kind: str, subject: str) -> bool:
        """Forget an account's or an address's failures and lift its lockout; whether there was a record."""
        with self._writes.begin() as session:
            cleared = session.execute(
                delete(LoginLockoutRow).where(LoginLockoutRow.kind == kind, LoginLockoutRow.subject == subject)
            )
            return bool(cleared.rowcount)

    def lockouts(self, at: float) -> list[LockoutRecord]:
        """Every subject locked out at ``at``, by kind and subject."""
        query = (
            select(LoginLockoutRow)
            .where(LoginLockoutRow.locked_until > at)
            .order_by(LoginLockoutRow.kind, LoginLockoutRow.subject)
        )
        with self._reads() as session:
            return [record_from(LockoutRecord, row) for row in session.scalars(query)]
