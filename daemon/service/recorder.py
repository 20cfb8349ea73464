"""The recorder thread: everything the store must learn about frames, written in grouped transactions.

Receipts, decisions, refusals and picture paths come in one FIFO (so a frame's receipt is always written
before its outcome) and leave in groups: one transaction per group keeps SQLite fast and keeps the store off
the scoring path. A group that fails is retried, then written entry by entry so that one bad entry cannot hold
up the rest; an entry that still fails is logged and counted, and a frame it leaves pending is refused as
interrupted at the next start.

An outcome whose receipt never reached the store (shed by a full records queue, or lost with a failed write) is
set aside before its group is written, counted and logged once: it cannot be recorded, and it must not make the
group it came in fail, which would turn every later write into retries and single-entry transactions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from daemon.service.handoff import Handoff
from daemon.store import FrameEntry, NewFrame, NewPicture, NewRefusal, Store

log = logging.getLogger("musc.daemon.recorder")

GROUP = 256  # entries per transaction at most
RETRIES = 3
RETRY_PAUSE_S = 0.5


class Recorder:
    """Writes the line's frame entries to the store, keeping each frame's store key until its last entry.

    A refusal is a frame's last entry; a decided frame's is its ``NewPicture`` (path None: no picture kept,
    nothing to write).
    """

    def __init__(
        self,
        store: Store,
        line: int,
        entries: Handoff[FrameEntry],
        count_error: Callable[[str], None],
        observe_write: Callable[[float], None] = lambda seconds: None,
    ) -> None:
        self.store = store
        self.line = line
        self.entries = entries
        self.count_error = count_error
        self.observe_write = observe_write  # seconds per grouped write (the store write metric)
        self.keys: dict[int, int] = {}  # seq -> store key, for frames with entries still to come

    def run(self) -> None:
        """The thread's body: until the queue is closed and drained."""
        while not self.entries.finished:
            group, _ = self.entries.take(GROUP, 0.1)
            if group:
                self._write(self._recordable(group))
                for entry in group:
                    if isinstance(entry, NewRefusal | NewPicture):
                        self.keys.pop(entry.seq, None)
                self.entries.done(len(group))

    def _recordable(self, group: list[FrameEntry]) -> list[FrameEntry]:
        """The group's entries worth writing: receipts, and outcomes of frames whose receipt the store has or gets
        in this group; pictures that were not kept are nothing to write."""
        received = {entry.seq for entry in group if isinstance(entry, NewFrame)}
        kept: list[FrameEntry] = []
        orphans: list[FrameEntry] = []
        for entry in group:
            if isinstance(entry, NewPicture) and entry.path is None:
                continue
            known = isinstance(entry, NewFrame) or entry.seq in received or entry.seq in self.keys
            (kept if known else orphans).append(entry)
        if orphans:
            log.error(
                "%d outcome(s) of frames whose receipt never reached the store are not recorded (first: %s)",
                len(orphans),
                orphans[0],
            )
            self.count_error("store")
        return kept

    def _write(self, group: list[FrameEntry]) -> None:
        for attempt in range(RETRIES):
            try:
                started = time.perf_counter()
                self.keys.update(self.store.write_frames(self.line, group, self.keys))
                self.observe_write(time.perf_counter() - started)
                return
            except Exception:
                log.warning("store write of %d entries failed (attempt %d)", len(group), attempt + 1, exc_info=True)
                self.count_error("store")
                time.sleep(RETRY_PAUSE_S)
        for entry in group:
            try:
                self.keys.update(self.store.write_frames(self.line, [entry], self.keys))
            except Exception:
                log.exception("could not record %s; a frame it leaves pending is refused at the next start", entry)
                self.count_error("store")
