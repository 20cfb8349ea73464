"""Stage timings that stay honest on a GPU: a lap waits for the device's queued work before it reads the clock."""

from __future__ import annotations

import time

import torch


class Stopwatch:
    """Times consecutive stages on ``device``; ``laps`` maps each stage's name to its seconds."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.laps: dict[str, float] = {}
        self._clock = time.perf_counter()

    def lap(self, name: str) -> float:
        """End the stage ``name`` now (after the device's queued work) and return its seconds."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self.laps[name] = now - self._clock
        self._clock = now
        return self.laps[name]
