"""Frames and their outcomes: receipts, decisions, refusals and pictures, grouped; counts and queries.

Counts come from running tallies kept in the same transactions as the frames (``TallyRow``), so a status or a
page refresh reads a few rows instead of counting a year of history, and retention does not change them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

from sqlalchemy import (
    Select,
    func,
    select,
    union_all,
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
)
from daemon.store.schema import PENDING, CorrectionRow, DecisionRow, FrameRow, TallyRow, pending_where

Tally = Counter[tuple[str, str]]  # (kind, key) -> change of a line's running count


class FrameQueries(Database):
    """The frame side of a line's store."""

    def write_frames(self, line: int, entries: Sequence[FrameEntry], keys: Mapping[int, int]) -> dict[int, int]:
        """Write a group of frame receipts, decisions, refusals and pictures in one transaction, in order.

        Entries name frames by the writer's own sequence numbers: ``keys`` maps those already written to their
        store keys; the keys of the frames this group receives are returned. All or nothing.
        """
        new_keys: dict[int, int] = {}
        tally: Tally = Counter()
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
                    tally["status", "pending"] += 1
                elif isinstance(entry, NewDecision):
                    check_choice(entry.label, LABELS, "label")
                    key = key_of(entry.seq)
                    self._settle(session, key, "decided", None, None, tally)
                    fields_ = {f.name: getattr(entry, f.name) for f in fields(entry) if f.name != "seq"}
                    session.add(DecisionRow(frame=key, **fields_))
                    tally["label", entry.label] += 1
                elif isinstance(entry, NewRefusal):
                    self._settle(session, key_of(entry.seq), "refused", entry.code, entry.reason, tally)
                else:
                    statement = update(DecisionRow).where(DecisionRow.frame == key_of(entry.seq))
                    session.execute(statement.values(artifact_path=entry.path))
            flush()
            self._count(session, line, tally)
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
                .where(FrameRow.line == line, PENDING)  # through the partial index of pending frames
                .values(status="refused", refusal_code=INTERRUPTED, refusal_reason=reason)
            )
            refused = session.execute(statement, execution_options={"synchronize_session": False}).rowcount
            self._count(session, line, Counter({("status", "pending"): -refused, **_refused(INTERRUPTED, refused)}))
            return refused

    @staticmethod
    def _settle(session: Session, key: int, status: str, code: str | None, reason: str | None, tally: Tally) -> None:
        frame = session.get(FrameRow, key, with_for_update=True)
        if frame is None:
            raise NotFoundError(f"no frame with key {key}")
        if frame.status != "pending":
            raise ConflictError(f"frame {frame.frame_id!r} (key {key}) is already {frame.status}")
        frame.status = status
        frame.refusal_code = code
        frame.refusal_reason = reason
        tally["status", "pending"] -= 1
        tally.update(_refused(code or INTERRUPTED, 1) if status == "refused" else {("status", status): 1})

    @staticmethod
    def _count(session: Session, line: int, tally: Tally) -> None:
        """Move the line's running counts by ``tally``, in the transaction that recorded what they count."""
        for (kind, key), change in sorted(tally.items()):
            if not change:
                continue
            where = (TallyRow.line == line, TallyRow.kind == kind, TallyRow.key == key)
            moved = session.execute(update(TallyRow).where(*where).values(count=TallyRow.count + change))
            if not moved.rowcount:
                session.add(TallyRow(line=line, kind=kind, key=key, count=change))
        session.flush()

    def counts(self, line: int) -> Counts:
        """Frames received, decided, refused and pending since the store began (retention keeps these counts),
        decisions by label, refusals by code, and corrections not yet applied or that could not act."""
        with self._reads() as session:
            query = select(TallyRow.kind, TallyRow.key, TallyRow.count).where(TallyRow.line == line)
            tallies: dict[str, dict[str, int]] = {"status": {}, "label": {}, "refusal": {}}
            for kind, key, count in session.execute(query):
                tallies[kind][key] = count
            pending_corrections = session.scalar(
                select(func.count()).select_from(CorrectionRow).where(*pending_where(line))
            )
            audits = session.scalars(
                select(CorrectionRow.audit).where(CorrectionRow.line == line, CorrectionRow.applied_at.is_not(None))
            )
            failed_corrections = sum(1 for audit in audits if audit and "error" in audit)
        by_status, by_label = tallies["status"], tallies["label"]
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
            refused_by_code={code: count for code, count in sorted(tallies["refusal"].items()) if count},
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
        """A line's newest decisions (the latest recorded first), optionally only some labels, one camera, frames
        received since a time.

        Each label is read on its own, walking the (label, frame) index backwards from the newest, and ``since``
        becomes a lower bound on the store key as well: a read stops after ``limit`` rows or at the window's
        start, however long the history (a rare label is not found by scanning every frame). The reads are merged
        in the database, so only ``limit`` rows come back.
        """
        query = _decisions(line)
        if camera is not None:
            query = query.where(FrameRow.camera == camera)
        with self._reads() as session:
            if since is not None:
                first = self._first_key(session, line, since)
                query = query.where(FrameRow.received_at >= since, DecisionRow.frame >= first)
            newest = query.order_by(DecisionRow.frame.desc()).limit(limit)
            if labels:
                reads = [select(newest.where(DecisionRow.label == label).subquery()) for label in labels]
                merged = union_all(*reads).subquery()
                newest = select(merged).order_by(merged.c.key.desc()).limit(limit)
            return [DecisionRecord(**row._mapping) for row in session.execute(newest)]

    @staticmethod
    def _first_key(session: Session, line: int, since: float) -> int:
        """The store key of the line's first frame received at or after ``since`` (keys grow as frames arrive)."""
        query = select(FrameRow.id).where(FrameRow.line == line, FrameRow.received_at >= since)
        first = session.scalar(query.order_by(FrameRow.received_at).limit(1))
        return 0 if first is None else first

    def decision_for(self, line: int, frame_id: str) -> DecisionRecord | None:
        """The decision on a frame id of a line (the newest, should a camera have resent it), or None."""
        query = _decisions(line).where(FrameRow.frame_id == frame_id)
        with self._reads() as session:
            row = session.execute(query.order_by(FrameRow.received_at.desc(), FrameRow.id.desc()).limit(1)).first()
        return None if row is None else DecisionRecord(**row._mapping)

    # Corrections ----------------------------------------------------------------------------------------------


def _decisions(line: int) -> Select[Any]:
    """The line's decisions with their frames, as the columns of a ``DecisionRecord`` (no ORM objects to build)."""
    columns = [FrameRow.id.label("key")]
    columns += [
        getattr(FrameRow if f.name in FrameRow.__table__.c else DecisionRow, f.name) for f in fields(DecisionRecord)[1:]
    ]
    return (
        select(*columns).join_from(FrameRow, DecisionRow, DecisionRow.frame == FrameRow.id).where(FrameRow.line == line)
    )


def _refused(code: str, count: int) -> Tally:
    """The running counts ``count`` refusals with ``code`` move."""
    return Counter({("status", "refused"): count, ("refusal", code): count})
