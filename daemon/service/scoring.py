"""The scoring thread: takes micro-batches off the queue, decides them with the scorer, answers each frame.

A batch holds only frames that can still be answered within their age budget, judged by how long scoring has
recently taken per frame; the others are answered ``late`` instead of being scored stale. A frame id that was
scored before (or twice in one batch) is refused before anything is scored, and a scoring fault refuses the
batch's frames with the error: no frame is left unanswered and none votes without having been answered.

Seed judges that calibrate the band are scored here too, never before the frames they follow are answered: one
per frame after a batch, and one after another while no frame waits. A seed costs about what a frame costs.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections import deque

from daemon.observability import DaemonMetrics
from daemon.service.answers import Answers
from daemon.service.frames import Accepted, AgeBudget, Refused
from daemon.service.handoff import Handoff
from musc_online.online.scorer import OnlineScorer

log = logging.getLogger("musc.daemon.scoring")

RECENT_BATCHES = 16  # per-frame scoring times kept for the estimate
MARGIN = 1.25  # the estimate's safety factor
SEEDS_PER_FRAME = 1  # seeds scored after each answered frame: 32 seeds are done 32 frames after they fall due even
# on a line with no idle time. Two made the demo's answers wait up to 0.8 s (one: 0.22 s) and gained one frame.


class Scoring:
    """Decides queued frames in micro-batches of at most ``micro_batch``; holds ``lock`` while it scores."""

    def __init__(
        self,
        frames: Handoff[Accepted],
        scorer: OnlineScorer,
        lock: threading.Lock,
        answers: Answers,
        budget: AgeBudget,
        metrics: DaemonMetrics,
        micro_batch: int,
    ) -> None:
        self.frames = frames
        self.scorer = scorer
        self.lock = lock
        self.answers = answers
        self.budget = budget
        self.metrics = metrics
        self.micro_batch = micro_batch
        self._per_frame_s: deque[float] = deque(maxlen=RECENT_BATCHES)
        self._seeding_failed = False

    def expected_cost_s(self, frames: int) -> float:
        """How long scoring ``frames`` frames is expected to take (0 until something was scored)."""
        return frames * MARGIN * statistics.median(self._per_frame_s) if self._per_frame_s else 0.0

    def run(self) -> None:
        """The thread's body: until the queue is closed and drained (a paused line holds the queue)."""
        seeding = False  # a seed was just scored: look for frames without waiting, then go on with the seeds
        while not self.frames.finished:
            batch, late = self.frames.take(self.micro_batch, 0.0 if seeding else 0.1, self.expected_cost_s)
            now = time.time()
            for frame in late:
                self.answers.refuse(self.budget.late(frame, now, self.expected_cost_s(1)))
            seeding = self.score(batch) if batch else not self.frames.held and self.calibrate(0, 1)

    def score(self, batch: list[Accepted]) -> bool:
        """Decide one micro-batch and answer every frame of it, then score up to ``SEEDS_PER_FRAME`` seed judges per
        frame it decided (True when it scored any)."""
        with self.lock:
            fresh = self._without_repeats(batch)
            if not fresh:
                return False
            started = time.perf_counter()
            try:
                decisions = self.scorer.score_many([i.image for i in fresh], [i.header.frame_id for i in fresh])
            except Exception as error:  # a scoring fault must refuse the frames, never lose them
                log.exception("scoring failed")
                self.metrics.errors("scoring").inc()
                for item in fresh:
                    message = f"scoring failed: {type(error).__name__}: {error}"
                    self.answers.refuse(Refused(item.received, "internal_error", message, item.header.identity()))
                return False
        self._per_frame_s.append((time.perf_counter() - started) / len(fresh))
        for item, decision in zip(fresh, decisions, strict=True):
            self.answers.decide(item, decision)
        return self.calibrate(len(fresh), SEEDS_PER_FRAME * len(fresh))

    def calibrate(self, decided: int, limit: int) -> bool:
        """Score up to ``limit`` seed judges if seeds are due after ``decided`` more frames (``OnlineScorer.
        score_due_seeds``); True when one was. A failure stops this until a restart; frames are still decided, on
        the provisional band."""
        if self._seeding_failed:
            return False
        with self.lock:
            try:
                return self.scorer.score_due_seeds(decided, limit) > 0
            except Exception:
                log.exception("scoring a seed judge failed: the band stays provisional until `band recalibrate`")
                self.metrics.errors("scoring").inc()
                self._seeding_failed = True
                return False

    def _without_repeats(self, batch: list[Accepted]) -> list[Accepted]:
        """The batch less any frame whose id was already scored or comes earlier in it (those are refused)."""
        fresh, seen = [], set()
        for item in batch:
            frame_id = item.header.frame_id
            if frame_id in seen or frame_id in self.scorer.history or frame_id in self.scorer.window:
                message = f"frame id {frame_id!r} was already scored; each frame needs its own id"
                self.answers.refuse(Refused(item.received, "duplicate_frame_id", message, item.header.identity()))
            else:
                seen.add(frame_id)
                fresh.append(item)
        return fresh
