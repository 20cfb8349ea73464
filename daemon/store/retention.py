"""Retention: a line's frames, decisions and pictures older than ``[store] keep_days`` leave, a small batch per
transaction, and the pictures those decisions named leave the line's artifact folder.

Kept whatever their age: corrections and the frames they name (with their decisions, so a correction still says
what it corrected and the line can recall it after a restart), frames still pending, judges, events, line reports,
and the running counts (``counts`` goes on counting since the store began). Corrections name frames by line and
frame id, not by key, so no foreign key points at a removed row.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Select, delete, exists, func, select

from daemon.store.database import Database
from daemon.store.schema import CorrectionRow, DecisionRow, FrameRow

log = logging.getLogger("musc.daemon.retention")

BATCH = 1000  # frames per transaction: short enough that the recorder's writes never wait long behind one
DAY_S = 86400.0


@dataclass(frozen=True)
class Pruned:
    """Frames and decisions removed (or, in a dry run, removable), and the pictures those decisions named."""

    frames: int
    decisions: int
    pictures: int


class RetentionQueries(Database):
    """Removing old frames of a line."""

    def prune_batch(self, line: int, before: float, batch: int) -> tuple[Pruned, list[str]]:
        """Remove up to ``batch`` of the line's oldest prunable frames received before ``before``, with their
        decisions, in one transaction; returns what went and the paths of their pictures (the caller deletes them,
        the store holds no files)."""
        with self._writes.begin() as session:
            keys = list(session.scalars(_prunable(line, before).order_by(FrameRow.received_at).limit(batch)))
            if not keys:
                return Pruned(0, 0, 0), []
            named = select(DecisionRow.artifact_path).where(
                DecisionRow.frame.in_(keys), DecisionRow.artifact_path.is_not(None)
            )
            pictures = list(session.scalars(named))
            decisions = session.execute(delete(DecisionRow).where(DecisionRow.frame.in_(keys))).rowcount
            frames = session.execute(delete(FrameRow).where(FrameRow.id.in_(keys))).rowcount
        return Pruned(frames, decisions, len(pictures)), pictures

    def prunable(self, line: int, before: float) -> Pruned:
        """What ``prune_batch`` would remove in all, without removing anything (a dry run)."""
        keys = _prunable(line, before).subquery()
        decided = select(func.count(), func.count(DecisionRow.artifact_path)).join(keys, DecisionRow.frame == keys.c.id)
        with self._reads() as session:
            frames = session.scalar(select(func.count()).select_from(keys)) or 0
            decisions, pictures = session.execute(decided).one()
        return Pruned(frames, decisions, pictures)


def _prunable(line: int, before: float) -> Select[tuple[int]]:
    """Keys of the line's frames received before ``before`` that retention may remove: settled, never corrected."""
    corrected = exists().where(CorrectionRow.line == FrameRow.line, CorrectionRow.frame_id == FrameRow.frame_id)
    return select(FrameRow.id).where(
        FrameRow.line == line, FrameRow.received_at < before, FrameRow.status != "pending", ~corrected
    )


class Retention:
    """Removes a line's old frames from the store and their pictures from the line's artifact folder.

    Run by the line's store link thread (never the scoring thread) a slice at a time, so corrections still reach
    the scorer within a second while a long backlog is worked off; and by ``musc-online store prune``.
    """

    def __init__(self, store: RetentionQueries, line: int, keep_days: int, artifacts_dir: Path) -> None:
        self.store = store
        self.line = line
        self.keep_days = keep_days
        self.artifacts_dir = artifacts_dir.resolve()

    def cutoff(self, now: float | None = None) -> float:
        """Frames received before this time (epoch seconds) are old enough to go."""
        return (time.time() if now is None else now) - self.keep_days * DAY_S

    def dry_run(self, now: float | None = None) -> Pruned:
        """What a prune would remove now, removing nothing."""
        return self.store.prunable(self.line, self.cutoff(now))

    def prune(self, now: float | None = None, slice_s: float = float("inf")) -> tuple[Pruned, bool]:
        """Remove old frames batch by batch for up to about ``slice_s`` seconds; (what went, whether all did)."""
        before, started = self.cutoff(now), time.monotonic()
        frames = decisions = pictures = 0
        while True:
            pruned, paths = self.store.prune_batch(self.line, before, BATCH)
            frames, decisions = frames + pruned.frames, decisions + pruned.decisions
            pictures += sum(self._remove(path) for path in paths)
            finished = pruned.frames < BATCH
            if finished or time.monotonic() - started >= slice_s:
                break
        if frames:
            log.info("retention removed %d frames, %d decisions, %d pictures", frames, decisions, pictures)
        return Pruned(frames, decisions, pictures), finished

    def _remove(self, path: str) -> bool:
        """Delete a removed decision's picture if it lies in the line's artifact folder (never any other file)."""
        picture = Path(path).resolve()
        if picture.suffix != ".png" or not picture.is_relative_to(self.artifacts_dir):
            return False
        try:
            picture.unlink()
        except FileNotFoundError:  # aged out of the artifact folder already
            return False
        return True
