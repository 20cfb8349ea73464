"""Operators' corrections: one active per frame, undo records, what the daemon applied and how."""

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
    LABELS,
    VERDICTS,
    ConflictError,
    CorrectionRecord,
    NotFoundError,
    check_choice,
    record_from,
)
from daemon.store.schema import CorrectionRow, EventRow, FrameRow, pending_where


class CorrectionQueries(Database):
    """The corrections side of a line's store."""

    def add_correction(
        self,
        line: int,
        frame_id: str,
        verdict: str,
        operator: str,
        previous_label: str,
        defect_label: str | None = None,
        note: str | None = None,
    ) -> int:
        """Record an operator's verdict on a decided frame; one active correction per frame until it is undone."""
        check_choice(verdict, VERDICTS, "verdict")
        check_choice(previous_label, LABELS, "previous_label")
        if defect_label is not None and verdict != "defect":
            raise ValueError("a defect label goes with a 'defect' verdict only")
        if not operator:
            raise ValueError("every correction names its operator")
        with self._writes.begin() as session:
            self._require_decided(session, line, frame_id)
            active = session.scalars(
                select(CorrectionRow).where(
                    CorrectionRow.line == line,
                    CorrectionRow.frame_id == frame_id,
                    CorrectionRow.undone_at.is_(None),
                    CorrectionRow.undoes.is_(None),
                )
            ).first()
            if active is not None:
                raise ConflictError(
                    f"frame {frame_id!r} on line {line} is already corrected to {active.verdict!r} by "
                    f"{active.operator} (correction {active.id}); undo that correction first"
                )
            row = CorrectionRow(
                line=line,
                frame_id=frame_id,
                verdict=verdict,
                defect_label=defect_label,
                note=note,
                operator=operator,
                created_at=time.time(),
                previous_label=previous_label,
            )
            session.add(row)
            try:
                session.flush()
            except IntegrityError as error:  # another writer marked the frame between our check and our insert
                raise ConflictError(f"frame {frame_id!r} on line {line} was just corrected by someone else") from error
            return row.id

    @staticmethod
    def _require_decided(session: Session, line: int, frame_id: str) -> None:
        """NotFoundError unless the line decided this frame id; says where else it was seen (index on frame_id)."""
        seen = session.execute(select(FrameRow.line, FrameRow.status).where(FrameRow.frame_id == frame_id)).all()
        if any(seen_line == line and status == "decided" for seen_line, status in seen):
            return
        here = sorted({status for seen_line, status in seen if seen_line == line})
        elsewhere = sorted({seen_line for seen_line, _ in seen if seen_line != line})
        detail = f" (it is {'/'.join(here)} here)" if here else ""
        detail += f" (it was seen on line {', '.join(map(str, elsewhere))})" if elsewhere else ""
        raise NotFoundError(f"no decided frame {frame_id!r} on line {line}{detail}")

    def undo_correction(self, correction_id: int, operator: str) -> int:
        """Undo a correction: mark it undone and add an undo record (pending, for the daemon to revert); returns its id.

        The daemon reverts an undo record only if the correction it undoes had been applied.
        """
        if not operator:
            raise ValueError("every undo names its operator")
        with self._writes.begin() as session:
            original = session.get(CorrectionRow, correction_id, with_for_update=True)
            if original is None:
                raise NotFoundError(f"no correction {correction_id}")
            if original.undoes is not None:
                raise ConflictError(f"correction {correction_id} is itself an undo; mark the frame again instead")
            if original.undone_at is not None:
                raise ConflictError(f"correction {correction_id} was already undone")
            now = time.time()
            original.undone_at = now
            undo = CorrectionRow(
                line=original.line,
                frame_id=original.frame_id,
                verdict=original.verdict,
                defect_label=original.defect_label,
                operator=operator,
                created_at=now,
                previous_label=original.verdict,
                undoes=original.id,
            )
            session.add(undo)
            session.flush()
            session.add(
                EventRow(
                    line=original.line,
                    at=now,
                    kind="correction_undone",
                    message=f"{operator} undid correction {original.id} ({original.verdict}) of {original.frame_id}",
                    data={"correction": original.id, "undo": undo.id},
                )
            )
            return undo.id

    def pending_corrections(self, line: int) -> list[CorrectionRecord]:
        """Corrections (and undo records) the daemon has not applied yet and nobody undid, oldest first."""
        return self._corrections(*pending_where(line))

    def corrected_frame_ids(self, line: int) -> set[str]:
        """The frame ids of the line with an active correction (read from the index that keeps them unique)."""
        query = select(CorrectionRow.frame_id).where(
            CorrectionRow.line == line, CorrectionRow.undone_at.is_(None), CorrectionRow.undoes.is_(None)
        )
        with self._reads() as session:
            return set(session.scalars(query))

    def corrections(self, line: int) -> list[CorrectionRecord]:
        """Every correction and undo record of a line, oldest first."""
        return self._corrections(CorrectionRow.line == line)

    def _corrections(self, *conditions: Any) -> list[CorrectionRecord]:
        query = select(CorrectionRow).where(*conditions).order_by(CorrectionRow.created_at, CorrectionRow.id)
        with self._reads() as session:
            return [record_from(CorrectionRecord, row) for row in session.scalars(query)]

    def mark_applied(self, correction_id: int, audit: dict[str, Any]) -> None:
        """Mark a correction applied by the daemon, with an audit of what it changed; once only."""
        with self._writes.begin() as session:
            row = session.get(CorrectionRow, correction_id, with_for_update=True)
            if row is None:
                raise NotFoundError(f"no correction {correction_id}")
            if row.applied_at is not None:
                raise ConflictError(f"correction {correction_id} was already applied")
            row.applied_at = time.time()
            row.audit = audit

    # Judges and events ----------------------------------------------------------------------------------------
