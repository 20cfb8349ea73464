"""What a plant shares through one store: each line's latest report, the review station's accounts, and
judge banks exported by one line for others to import."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import delete, select

from daemon.store.database import Database
from daemon.store.records import (
    ROLES,
    AccountRecord,
    ConflictError,
    JudgeBankRecord,
    JudgeBankSummary,
    LineReport,
    NotFoundError,
    check_choice,
    record_from,
)
from daemon.store.schema import AccountRow, JudgeBankRow, LineRow, ReviewSessionRow


class PlantQueries(Database):
    """Lines, accounts and judge banks of a (plant's) store."""

    def report_line(self, line: int, host: str, status: Any) -> None:
        """Record a line daemon's current status (it reports every few seconds)."""
        with self._writes.begin() as session:
            row = session.get(LineRow, line, with_for_update=True)
            if row is None:
                session.add(LineRow(line=line, host=host, reported_at=time.time(), status=status))
            else:
                row.host, row.reported_at, row.status = host, time.time(), status

    def lines(self) -> list[LineReport]:
        """Every line that reported, by line number."""
        with self._reads() as session:
            return [record_from(LineReport, row) for row in session.scalars(select(LineRow).order_by(LineRow.line))]

    def add_account(self, name: str, role: str, password_hash: str) -> None:
        """Create a review station account; a name is used once."""
        check_choice(role, ROLES, "role")
        if not name or not name.isprintable() or len(name) > 64:
            raise ValueError("an account name is 1 to 64 printable characters")
        with self._writes.begin() as session:
            if session.get(AccountRow, name) is not None:
                raise ConflictError(f"account {name!r} exists; change its password or remove it first")
            session.add(AccountRow(name=name, role=role, password_hash=password_hash, created_at=time.time()))

    def set_password(self, name: str, password_hash: str) -> None:
        """Replace an account's password hash and end the account's sessions."""
        with self._writes.begin() as session:
            row = session.get(AccountRow, name, with_for_update=True)
            if row is None:
                raise NotFoundError(f"no account {name!r}")
            row.password_hash = password_hash
            session.execute(delete(ReviewSessionRow).where(ReviewSessionRow.name == name))  # logged out everywhere

    def remove_account(self, name: str) -> None:
        """Delete an account and (by the foreign key) its sessions; its corrections keep its name."""
        with self._writes.begin() as session:
            if not session.execute(delete(AccountRow).where(AccountRow.name == name)).rowcount:
                raise NotFoundError(f"no account {name!r}")

    def account(self, name: str) -> AccountRecord | None:
        """The account called ``name``, or None."""
        with self._reads() as session:
            row = session.get(AccountRow, name)
            return None if row is None else record_from(AccountRecord, row)

    def accounts(self) -> list[AccountRecord]:
        """Every account, by name."""
        with self._reads() as session:
            rows = session.scalars(select(AccountRow).order_by(AccountRow.name))
            return [record_from(AccountRecord, row) for row in rows]

    def save_judge_bank(self, name: str, from_line: int, judges: int, fingerprint: Any, data: bytes) -> None:
        """Keep an exported judge bank under ``name`` (replacing an older one of that name)."""
        with self._writes.begin() as session:
            session.execute(delete(JudgeBankRow).where(JudgeBankRow.name == name))
            session.add(
                JudgeBankRow(
                    name=name,
                    from_line=from_line,
                    judges=judges,
                    fingerprint=fingerprint,
                    created_at=time.time(),
                    data=data,
                )
            )

    def judge_bank(self, name: str) -> JudgeBankRecord:
        """The judge bank called ``name``."""
        with self._reads() as session:
            row = session.get(JudgeBankRow, name)
            if row is None:
                known = ", ".join(session.scalars(select(JudgeBankRow.name))) or "none"
                raise NotFoundError(f"no judge bank {name!r} in the store (known: {known})")
            return record_from(JudgeBankRecord, row)

    def judge_banks(self) -> list[JudgeBankSummary]:
        """Every judge bank in the store, by name (without the exports themselves)."""
        columns = [getattr(JudgeBankRow, f) for f in ("name", "from_line", "judges", "fingerprint", "created_at")]
        with self._reads() as session:
            rows = session.execute(select(*columns).order_by(JudgeBankRow.name))
            return [JudgeBankSummary(*row) for row in rows]
