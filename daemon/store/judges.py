"""The judge bank's history and the line's events."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import (
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from daemon.store.database import Database
from daemon.store.records import (
    JUDGE_SOURCES,
    ConflictError,
    EventRecord,
    JudgeRecord,
    NotFoundError,
    check_choice,
    record_from,
)
from daemon.store.schema import EventRow, JudgeRow


class JudgeQueries(Database):
    """Judges and events of a line's store."""

    def add_judge(self, line: int, judge_id: str, source: str) -> None:
        """Record a frame joining the line's judge bank; an id is in the bank once at a time."""
        check_choice(source, JUDGE_SOURCES, "source")
        with self._writes.begin() as session:
            if self._active_judge(session, line, judge_id) is not None:
                raise ConflictError(f"judge {judge_id!r} is already in the bank of line {line}")
            session.add(JudgeRow(line=line, judge_id=judge_id, source=source, added_at=time.time()))
            try:
                session.flush()
            except IntegrityError as error:
                raise ConflictError(f"judge {judge_id!r} was just added to line {line} by someone else") from error

    def remove_judge(self, line: int, judge_id: str) -> None:
        """Record a judge leaving the line's bank (its history stays)."""
        with self._writes.begin() as session:
            row = self._active_judge(session, line, judge_id)
            if row is None:
                raise NotFoundError(f"judge {judge_id!r} is not in the bank of line {line}")
            row.removed_at = time.time()

    def sync_judge(self, line: int, judge_id: str, in_bank: bool, source: str) -> None:
        """Make the record of a judge agree with the scorer's bank: added when it is in it, removed when not."""
        check_choice(source, JUDGE_SOURCES, "source")
        with self._writes.begin() as session:
            row = self._active_judge(session, line, judge_id)
            if in_bank and row is None:
                session.add(JudgeRow(line=line, judge_id=judge_id, source=source, added_at=time.time()))
            elif not in_bank and row is not None:
                row.removed_at = time.time()

    @staticmethod
    def _active_judge(session: Session, line: int, judge_id: str) -> JudgeRow | None:
        query = select(JudgeRow).where(
            JudgeRow.line == line, JudgeRow.judge_id == judge_id, JudgeRow.removed_at.is_(None)
        )
        return session.scalars(query.with_for_update()).first()

    def judges(self, line: int, include_removed: bool = False) -> list[JudgeRecord]:
        """The line's judges, oldest first; removed ones too when asked."""
        query = select(JudgeRow).where(JudgeRow.line == line).order_by(JudgeRow.added_at, JudgeRow.id)
        if not include_removed:
            query = query.where(JudgeRow.removed_at.is_(None))
        with self._reads() as session:
            return [record_from(JudgeRecord, row) for row in session.scalars(query)]

    def log_event(self, line: int, kind: str, message: str, data: Any | None = None) -> int:
        """Record an event (a JSON-able `data` travels with it) and return its id."""
        with self._writes.begin() as session:
            row = EventRow(line=line, at=time.time(), kind=kind, message=message, data=data)
            session.add(row)
            session.flush()
            return row.id

    def events(self, line: int, limit: int = 100, kind_prefix: str = "") -> list[EventRecord]:
        """The line's latest events (those whose kind starts with ``kind_prefix``), newest first."""
        query = select(EventRow).where(EventRow.line == line).order_by(EventRow.at.desc(), EventRow.id.desc())
        if kind_prefix:
            query = query.where(EventRow.kind.startswith(kind_prefix))
        with self._reads() as session:
            return [record_from(EventRecord, row) for row in session.scalars(query.limit(limit))]
