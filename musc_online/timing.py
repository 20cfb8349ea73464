"""Stage timings that stay honest on a GPU: each stage ends when the device's work queued before it is done.

On a GPU a stage's end is an event recorded on the device's stream, so marking it waits for nothing and the frame
path keeps the device busy; only reading the laps waits, for the last mark (after a frame's one copy to the host,
nothing is queued by then).
"""

from __future__ import annotations

import time
from itertools import pairwise

import torch


class Stopwatch:
    """Times consecutive stages on ``device``; ``laps`` maps each stage's name to its seconds."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._marks: list[tuple[str, float | torch.cuda.Event]] = [("", self._now())]

    def _now(self) -> float | torch.cuda.Event:
        """The clock now: the host's, or on a GPU an event on the device's current stream."""
        if self.device.type != "cuda":
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record(torch.cuda.current_stream(self.device))
        return event

    def mark(self, name: str) -> None:
        """End the stage ``name`` now (on a GPU: once the work queued so far is done), without waiting."""
        self._marks.append((name, self._now()))

    def lap(self, name: str) -> float:
        """End the stage ``name`` and return its seconds (on a GPU this waits for the queued work)."""
        self.mark(name)
        return self.laps[name]

    @property
    def laps(self) -> dict[str, float]:
        """Each stage's seconds, in order (on a GPU: after waiting for the last mark, if it is not done yet)."""
        if self.device.type == "cuda":
            last = self._marks[-1][1]
            if not last.query():
                last.synchronize()
            seconds = [start.elapsed_time(end) / 1e3 for (_, start), (_, end) in pairwise(self._marks)]
        else:
            seconds = [end - start for (_, start), (_, end) in pairwise(self._marks)]
        return {name: s for (name, _), s in zip(self._marks[1:], seconds, strict=True)}
