"""The store link thread: the line follows its store, so nothing needs to reach the line's own sockets.

Every ``poll_s`` it applies the corrections written for this line by anyone (the plant's review station, an
operator on another host, a script): a correction reaches the scorer within about a second, and the control
socket stays only as the fast path. Every ``report_every_s`` it writes the line's status into the store, which
is how one review station shows every line of a plant. Every ``PRUNE_EVERY_S`` (and at every tick while a
backlog remains) it removes frames older than ``[store] keep_days``, at most ``PRUNE_SLICE_S`` at a time.
Applying is idempotent and serialised with the control path (``CorrectionApplier``), so nothing is applied
twice; the store keeps what is pending across restarts of either side.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from daemon.service.corrections import CorrectionApplier
from daemon.store import Retention, Store

log = logging.getLogger("musc.daemon.store_link")

PRUNE_EVERY_S = 3600.0  # a line adds 18,000 frames an hour at 5 frames/s: an hourly prune is a few batches
PRUNE_SLICE_S = 0.5  # longest a tick spends pruning, so corrections and reports wait at most this for it


class StoreLink:
    """Applies the line's pending corrections from the store and reports the line's status to it."""

    def __init__(
        self,
        store: Store,
        line: int,
        corrections: CorrectionApplier,
        snapshot: Callable[[], Path],
        report: Callable[[], dict],
        stopping: threading.Event,
        poll_s: float,
        report_every_s: float,
        count_error: Callable[[str], None],
        retention: Retention | None = None,
    ) -> None:
        self.store = store
        self.line = line
        self.corrections = corrections
        self.snapshot = snapshot
        self.report = report
        self.stopping = stopping
        self.poll_s = poll_s
        self.report_every_s = report_every_s
        self.count_error = count_error
        self.retention = retention if retention and retention.keep_days else None  # keep_days 0: keep for ever
        self.host = socket.gethostname()

    def run(self) -> None:
        """The thread's body: until the line stops."""
        next_report = next_prune = 0.0
        while not self.stopping.wait(self.poll_s):
            try:
                if self.corrections.apply_pending():
                    self.snapshot()  # what was applied survives even a kill -9 (the store replays the rest)
                if time.monotonic() >= next_report:
                    self.store.report_line(self.line, self.host, self.report())
                    next_report = time.monotonic() + self.report_every_s
                if self.retention and time.monotonic() >= next_prune:
                    _, finished = self.retention.prune(slice_s=PRUNE_SLICE_S)
                    next_prune = time.monotonic() + (PRUNE_EVERY_S if finished else 0.0)
            except Exception:  # the store may be down for a while: say so, count it, try again
                log.warning("store link: could not reach the store", exc_info=True)
                self.count_error("store")
