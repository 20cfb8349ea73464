"""The picture thread: writes each kept decision's frame-and-heatmap PNG and keeps the folder within its limits.

PNG encoding and disk writes are slow and the disk may be slower still, so they happen here, off the
scoring path; the store learns each picture's path through the recorder. Each job's frame is at most
``pipeline.picture_side`` on its longer side (shrunk at ingest), and the queue is bounded in bytes. The
writer makes room before each picture, so the folder never holds more than ``max_files``; it is also pruned
every ``PRUNE_PERIOD_S`` (pictures age out after ``max_age_days``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from daemon.artifacts import ArtifactWriter
from daemon.service.answers import PictureJob
from daemon.service.handoff import Handoff
from daemon.store import FrameEntry, NewPicture

log = logging.getLogger("musc.daemon.pictures")

PRUNE_PERIOD_S = 60.0


class PictureWriter:
    """Drains the picture queue into the artifact folder; every job ends with one ``NewPicture`` record."""

    def __init__(
        self,
        writer: ArtifactWriter,
        jobs: Handoff[PictureJob],
        records: Handoff[FrameEntry],
        count_error: Callable[[str], None],
    ) -> None:
        self.writer = writer
        self.jobs = jobs
        self.records = records
        self.count_error = count_error

    def run(self) -> None:
        """The thread's body: until the queue is closed and drained; prunes once more at the end."""
        self._prune()
        last_prune = time.monotonic()
        while not self.jobs.finished:
            jobs, _ = self.jobs.take(1, 0.5)
            for job in jobs:
                self.records.put(NewPicture(job.seq, self._save(job)))
            self.jobs.done(len(jobs))
            if time.monotonic() - last_prune >= PRUNE_PERIOD_S:
                self._prune()
                last_prune = time.monotonic()
        self._prune()

    def _save(self, job: PictureJob) -> str | None:
        try:
            return str(self.writer.save(job.decision, job.image))
        except Exception:
            log.exception("could not write the picture of frame %s", job.decision.frame_id)
            self.count_error("artifacts")
            return None

    def _prune(self) -> None:
        try:
            self.writer.prune()
        except Exception:
            log.exception("could not prune the artifact folder %s", self.writer.folder)
            self.count_error("artifacts")
