"""The ingest thread: takes every message off the frames socket, accounts for it, and queues or refuses it.

It never waits on the store. Each message gets a receipt (recorded in the store by the recorder), is
validated and decoded, gets its deadline from the age budget, and enters the scoring queue, or is refused
at once: malformed, for another line, already too old (``late``), or behind more queued work than its
budget leaves time for (``overloaded``). Only the model's input and a bounded picture of a frame enter the
queue (``FrameKeeper``), never the decoded original, and the queue is bounded in bytes as well as frames.
A full queue makes it wait for room only while the frame can still be served (backpressure, as without a
budget). Between messages it answers queued frames that can no longer be scored within their budget, so a
late frame is told so within a few tens of milliseconds of its deadline, even while the scorer is busy.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable

from daemon.observability import DaemonMetrics
from daemon.service.answers import Answers
from daemon.service.frames import Accepted, AgeBudget, FrameKeeper, Received, Refused, examine, identify
from daemon.service.handoff import Handoff
from daemon.store import NewFrame
from musc_online.transport import Socket, recv_parts

POLL_S = 0.025  # how often the queue is checked for frames past their budget while no message arrives


class Ingest:
    """Receives frames for ``line`` until ``stopping`` is set and the socket is empty."""

    def __init__(
        self,
        line: int,
        sock: Socket,
        frames: Handoff[Accepted],
        answers: Answers,
        budget: AgeBudget,
        metrics: DaemonMetrics,
        max_pixels: int,
        keep: FrameKeeper,
        expected_cost_s: Callable[[int], float],
        stopping: threading.Event,
    ) -> None:
        self.line = line
        self.sock = sock
        self.frames = frames
        self.answers = answers
        self.budget = budget
        self.metrics = metrics
        self.max_pixels = max_pixels
        self.keep = keep
        self.expected_cost_s = expected_cost_s
        self.stopping = stopping
        self._numbers = itertools.count(1)

    def run(self) -> None:
        """The thread's body."""
        while not self.stopping.is_set() or self.sock.poll(0):
            parts = recv_parts(self.sock, int(POLL_S * 1000))
            if parts is not None:
                self.take(parts)
            self.expire()

    def take(self, parts: list[bytes]) -> None:
        """Account for one message, then queue it for scoring or answer it with a refusal."""
        received = Received(next(self._numbers), time.time(), sum(len(p) for p in parts))
        identify(parts, received)
        self.metrics.frames_received.inc()
        self.answers.record(
            NewFrame(received.seq, received.frame_id, received.camera, received.received_at, received.size_bytes)
        )
        result = examine(parts, received, self.line, self.max_pixels)
        if isinstance(result, Refused):
            self.answers.refuse(result)
            return
        result.deadline = self.budget.deadline(result)
        now = time.time()
        remaining = result.deadline - now
        if remaining < self.expected_cost_s(1):
            self.answers.refuse(self.budget.late(result, now, self.expected_cost_s(1)))
            return
        ahead = self.frames.reading()[1]
        if self.expected_cost_s(ahead + 1) > remaining:
            self.answers.refuse(self._overloaded(result, ahead, remaining))
            return
        kept = self.keep(result)
        if isinstance(kept, Refused):
            self.answers.refuse(kept)
            return
        while not self.frames.put(kept, kept.deadline, wait_s=POLL_S):
            self.expire()  # a full queue waits for room (backpressure) while the frame can still be served
            if self.frames.closed or time.time() + self.expected_cost_s(1) > kept.deadline:
                ahead = self.frames.reading()[1]
                self.answers.refuse(self._overloaded(kept, ahead, kept.deadline - time.time()))
                return

    def _overloaded(self, frame: Accepted, ahead: int, remaining_s: float) -> Refused:
        """The refusal of a frame that the frames ahead of it would keep from being scored within its budget."""
        work_ms = 1e3 * self.expected_cost_s(ahead + 1)
        message = (
            f"{ahead} frames wait for the scorer (about {work_ms:.0f} ms of work with this one) and the frame's age "
            f"budget has {1e3 * remaining_s:.0f} ms left: the camera sends faster than the line can score"
        )
        details = {"queued": ahead, "expected_work_ms": round(work_ms, 1)}
        return Refused(frame.received, "overloaded", message, frame.header.identity(), details)

    def expire(self) -> None:
        """Answer as late every queued frame that can no longer be scored within its budget."""
        cost = self.expected_cost_s(1)
        now = time.time()
        for frame in self.frames.expire(cost):
            self.answers.refuse(self.budget.late(frame, now, cost))
