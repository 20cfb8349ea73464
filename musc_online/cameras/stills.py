"""``folder:PATH`` and ``synthetic``: the camera stand-ins ``musc-online publish`` has always had, paced in free
run or captured one per software trigger."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from musc_online.cameras.base import CameraError, CameraSource, Grab, wait_until
from musc_online.datasets import DatasetError
from musc_online.synthetic import camera_frames


class StillsSource(CameraSource):
    """A folder's images round and round, or synthetic parts (``seed``, ``defect_rate``), at ``frame_rate``."""

    triggerable = True

    def __init__(
        self,
        uri: str,
        folder: str | None,
        frame_rate: float,
        *,
        triggered: bool = False,
        seed: int = 0,
        defect_rate: float = 0.1,
    ) -> None:
        self.uri = uri
        self._what = folder or "synthetic"
        self._period = 1.0 / frame_rate if frame_rate > 0 else 0.0
        self._triggered = triggered
        self._seed, self._defect_rate = seed, defect_rate
        self._frames: Iterator[np.ndarray] | None = None
        self._next_at = 0.0
        self._triggers = threading.Semaphore(0)

    @property
    def camera_id(self) -> str:
        return "synthetic" if self._what == "synthetic" else Path(self._what).name

    def open(self) -> None:
        frames = camera_frames(self._what, self._seed, self._defect_rate)
        try:
            first = next(frames)  # a folder without images fails here, not at the first grab
        except DatasetError as error:
            raise CameraError(str(error)) from None
        self._frames = itertools.chain([first], frames)
        self._next_at = time.monotonic()

    def grab(self, timeout_s: float) -> Grab | None:
        if self._frames is None:
            raise CameraError(f"{self.uri} is not open")
        if self._triggered:
            if not self._triggers.acquire(timeout=timeout_s):
                return None
        elif self._period:
            wait_until(self._next_at)
            self._next_at = max(self._next_at + self._period, time.monotonic() - self._period)
        return Grab(next(self._frames), time.time())

    def trigger(self) -> None:
        self._triggers.release()

    def close(self) -> None:
        self._frames = None
