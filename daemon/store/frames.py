"""Frames and their outcomes: receipts, decisions, refusals and pictures, grouped; counts and queries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

from sqlalchemy import (
    Select,
    func,
    select,
    update,
)
from sqlalchemy.orm import Session

from daemon.store.database import Database
from daemon.store.records import (
    INTERRUPTED,
    LABELS,
    ConflictError,
    Counts,
    DecisionRecord,
    FrameEntry,
    NewDecision,
    NewFrame,
    NewRefusal,
    NotFoundError,
    check_choice,
    record_from,
)
from daemon.store.schema import CorrectionRow, DecisionRow, FrameRow, pending_where


class FrameQueries(Database):
    """The frame side of a line's store."""

    def write_frames(self, line: int, entries: Sequence[FrameEntry], keys: Mapping[int, int]) -> dict[int, int]:
        """Write a group of frame receipts, decisions, refusals and pictures in one transaction, in order.

        Entries name frames by the writer's own sequence numbers: ``keys`` maps those already written to their
        store keys; the keys of the frames this group receives are returned. All or nothing.
        """
        new_keys: dict[int, int] = {}
        with self._writes.begin() as session:
            unflushed: list[tuple[int, FrameRow]] = []

            def flush() -> None:  # the store gives keys to the receipts added so far
                if unflushed:
                    session.flush()
                    new_keys.update((seq, row.id) for seq, row in unflushed)
                    unflushed.clear()

            def key_of(seq: int) -> int:
                flush()
                if seq in new_keys:
                    return new_keys[seq]
                if seq in keys:
                    return keys[seq]
                raise NotFoundError(f"frame number {seq} of line {line} was never recorded as received")

            for entry in entries:
                if isinstance(entry, NewFrame):
                    row = FrameRow(
                        line=line,
                        frame_id=entry.frame_id,
                        camera=entry.camera,
                        received_at=entry.received_at,
                        status="pending",
                        size_bytes=entry.size_bytes,
                    )
                    session.add(row)
                    unflushed.append((entry.seq, row))
                elif isinstance(entry, NewDecision):
                    check_choice(entry.label, LABELS, "label")
                    key = key_of(entry.seq)
                    self._settle(session, key, "decided", None, None)
                    fields_ = {f.name: getattr(entry, f.name) for f in fields(entry) if f.name != "seq"}
                    session.add(DecisionRow(frame=key, **fields_))
                elif isinstance(entry, NewRefusal):
                    self._settle(session, key_of(entry.seq), "refused", entry.code, entry.reason)
                else:
                    statement = update(DecisionRow).where(DecisionRow.frame == key_of(entry.seq))
                    session.execute(statement.values(artifact_path=entry.path))
            flush()
        return new_keys

    def record_frame(self, line: int, frame_id: str, camera: str, received_at: float, size_bytes: int) -> int:
        """Record one received frame as pending and return its key (``write_frames`` for many at once)."""
        return self.write_frames(line, [NewFrame(0, frame_id, camera, received_at, size_bytes)], {})[0]

    def record_decision(self, key: int, **decision: Any) -> None:
        """Record the decision on one pending frame; a frame is decided or refused once."""
        self.write_frames(self._line_of(key), [NewDecision(0, **decision)], {0: key})

    def record_refusal(self, key: int, code: str, reason: str) -> None:
        """Record why one pending frame was refused."""
        self.write_frames(self._line_of(key), [NewRefusal(0, code, reason)], {0: key})

    def _line_of(self, key: int) -> int:
        with self._reads() as session:
            line = session.scalar(select(FrameRow.line).where(FrameRow.id == key))
        if line is None:
            raise NotFoundError(f"no frame with key {key}")
        return line

    def refuse_pending(self, line: int, reason: str) -> int:
        """Refuse every frame still pending (received before a crash, never decided); returns how many."""
        with self._writes.begin() as session:
            statement = (
                update(FrameRow)
                .where(FrameRow.line == line, FrameRow.status == "pending")
                .values(status="refused", refusal_code=INTERRUPTED, refusal_reason=reason)
            )
            return session.execute(statement, execution_options={"synchronize_session": False}).rowcount

    @staticmethod
    def _settle(session: Session, key: int, status: str, code: str | None, reason: str | None) -> None:
        frame = session.get(FrameRow, key, with_for_update=True)
        if frame is None:
            raise NotFoundError(f"no frame with key {key}")
        if frame.status != "pending":
            raise ConflictError(f"frame {frame.frame_id!r} (key {key}) is already {frame.status}")
        frame.status = status
        frame.refusal_code = code
        frame.refusal_reason = reason

    def counts(self, line: int) -> Counts:
        """Frames received, decided, refused and pending, decisions by label, and corrections not yet applied."""
        with self._reads() as session:
            by_status = dict(
                session.execute(
                    select(FrameRow.status, func.count()).where(FrameRow.line == line).group_by(FrameRow.status)
                ).all()
            )
            by_label = dict(
                session.execute(
                    select(DecisionRow.label, func.count())
                    .join(FrameRow, DecisionRow.frame == FrameRow.id)
                    .where(FrameRow.line == line)
                    .group_by(DecisionRow.label)
                ).all()
            )
            pending_corrections = session.scalar(
                select(func.count()).select_from(CorrectionRow).where(*pending_where(line))
            )
            by_code = dict(
                session.execute(
                    select(FrameRow.refusal_code, func.count())
                    .where(FrameRow.line == line, FrameRow.status == "refused")
                    .group_by(FrameRow.refusal_code)
                ).all()
            )
            failed_corrections = sum(
                1
                for audit in session.scalars(select(CorrectionRow.audit).where(CorrectionRow.line == line))
                if audit and "error" in audit
            )
        return Counts(
            received=sum(by_status.values()),
            decided=by_status.get("decided", 0),
            refused=by_status.get("refused", 0),
            pending=by_status.get("pending", 0),
            ok=by_label.get("ok", 0),
            unsure=by_label.get("unsure", 0),
            defect=by_label.get("defect", 0),
            corrections_pending=pending_corrections or 0,
            corrections_failed=failed_corrections,
            refused_by_code={code or INTERRUPTED: count for code, count in sorted(by_code.items(), key=str)},
        )

    def frame_outcomes(self, line: int, frame_ids: Sequence[str]) -> dict[str, str]:
        """How each of these frames of a line ended, by id: "decided", "refused: <code>" or "pending"."""
        outcomes: dict[str, str] = {}
        with self._reads() as session:
            for start in range(0, len(frame_ids), 500):
                chunk = list(frame_ids[start : start + 500])
                rows = session.execute(
                    select(FrameRow.frame_id, FrameRow.status, FrameRow.refusal_code)
                    .where(FrameRow.line == line, FrameRow.frame_id.in_(chunk))
                    .order_by(FrameRow.id)
                )
                for frame_id, status, code in rows:
                    outcomes[frame_id] = f"refused: {code}" if status == "refused" else status
        return outcomes

    def recent_decisions(
        self,
        line: int,
        labels: Sequence[str] | None = None,
        camera: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[DecisionRecord]:
        """Decisions of a line, newest frame first, optionally only some labels, one camera, frames since a time."""
        query = self._decisions(line)
        if labels:
            query = query.where(DecisionRow.label.in_(labels))
        if camera is not None:
            query = query.where(FrameRow.camera == camera)
        if since is not None:
            query = query.where(FrameRow.received_at >= since)
        with self._reads() as session:
            return [record_from(DecisionRecord, *rows, key=rows[0].id) for rows in session.execute(query.limit(limit))]

    def decision_for(self, line: int, frame_id: str) -> DecisionRecord | None:
        """The decision on a frame id of a line (the newest, should a camera have resent it), or None."""
        with self._reads() as session:
            rows = session.execute(self._decisions(line).where(FrameRow.frame_id == frame_id).limit(1)).first()
        return None if rows is None else record_from(DecisionRecord, *rows, key=rows[0].id)

    @staticmethod
    def _decisions(line: int) -> Select[tuple[FrameRow, DecisionRow]]:
        return (
            select(FrameRow, DecisionRow)
            .join(DecisionRow, DecisionRow.frame == FrameRow.id)
            .where(FrameRow.line == line)
            .order_by(FrameRow.received_at.desc(), FrameRow.id.desc())
        )

    # Corrections ----------------------------------------------------------------------------------------------
