"""The one interface every camera source implements, and the runner that reopens a lost camera with backoff.

A source opens, grabs one frame at a time and closes. Whatever goes wrong with the camera (unplugged, a cable
pulled, a stream that ends or stalls) is a ``CameraError``; ``CameraRunner`` logs it, counts it, closes the
source and reopens it, waiting longer after each failed attempt, and never lets it escape.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger("musc.camera")


class CameraError(RuntimeError):
    """The camera cannot be opened or stopped delivering; the runner reopens it."""


class CameraUnavailable(CameraError):
    """The source can never work here (a missing optional package, a malformed URI): not worth reopening."""


@dataclass(frozen=True)
class Grab:
    """One grabbed frame: the image (uint8, H x W grey or H x W x 3 RGB), when it was exposed (seconds since the
    epoch) and the camera's own frame number when it has one."""

    image: np.ndarray
    timestamp: float
    camera_frame: int | None = None


class CameraSource(ABC):
    """A camera behind one interface: ``open``, ``grab`` frames, ``close``; ``trigger`` where it takes one."""

    uri: str
    triggerable = False  # True for sources that capture on a software trigger

    @property
    @abstractmethod
    def camera_id(self) -> str:
        """The camera's own id (serial or device id, the file's name): the frames' camera by default."""

    @abstractmethod
    def open(self) -> None:
        """Connect to the camera and start it; CameraError when it cannot be reached."""

    @abstractmethod
    def grab(self, timeout_s: float) -> Grab | None:
        """The next frame; None when none came within ``timeout_s`` (normal while waiting for a trigger);
        CameraError when the camera is gone. Sources that end (a video file) raise StopIteration at the end."""

    @abstractmethod
    def close(self) -> None:
        """Stop the camera and release it; safe to call twice and after a failed ``open``."""

    def trigger(self) -> None:
        """Capture one frame now (software trigger); only for ``triggerable`` sources."""
        raise CameraError(f"{self.uri} takes no software trigger")

    @property
    def skipped(self) -> int:
        """Frames the camera delivered that were passed over for a newer one (live streams keep the newest)."""
        return 0


@dataclass
class CameraCounts:
    """What a camera source did: frames grabbed, passed over for newer ones, and how often it was lost."""

    grabbed: int = 0
    skipped: int = 0
    errors: int = 0
    reopens: int = 0
    last_error: str = ""
    connected: bool = False
    errors_by_kind: dict[str, int] = field(default_factory=dict)


class CameraRunner:
    """Grabs from a source for good: opens it, and after any CameraError closes and reopens it with backoff.

    ``next_grab`` returns the next frame, waiting through outages; it returns None only when ``stop`` was called
    or the source ended. ``counts`` says what happened.
    """

    def __init__(
        self,
        source: CameraSource,
        *,
        grab_timeout_s: float = 2.0,
        reopen_min_s: float = 0.5,
        reopen_max_s: float = 10.0,
        wait_for_trigger: bool = False,
    ) -> None:
        self.source = source
        self.grab_timeout_s = grab_timeout_s
        self.reopen_min_s = reopen_min_s
        self.reopen_max_s = reopen_max_s
        self.wait_for_trigger = wait_for_trigger  # a triggered camera may be silent for long: that is no loss
        self.counts = CameraCounts()
        self._failures = 0  # failed opens and losses since the last frame: the backoff's exponent
        self._stop = threading.Event()

    def stop(self) -> None:
        """Make ``next_grab`` return None as soon as it can (from another thread or a signal handler)."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def next_grab(self) -> Grab | None:
        """The next frame from the camera, reopening it as often as it takes; None once stopped or ended."""
        while not self._stop.is_set():
            if not self.counts.connected and not self._open():
                continue
            try:
                grab = self.source.grab(self.grab_timeout_s)
            except StopIteration:
                log.info("camera source %s ended", self.source.uri)
                return None
            except CameraError as error:
                self._lost(error)
                continue
            if grab is None:
                if not self.wait_for_trigger:
                    self._lost(CameraError(f"no frame within {self.grab_timeout_s:g} s"))
                continue
            self._failures = 0
            self.counts.grabbed += 1
            self.counts.skipped = self.source.skipped
            return grab
        return None

    def _open(self) -> bool:
        """Open the source; on failure wait out the backoff (interruptibly) and return False."""
        delay = min(self.reopen_max_s, self.reopen_min_s * 2 ** min(self._failures, 30))
        try:
            self.source.open()
        except CameraUnavailable:
            raise
        except CameraError as error:
            self._count(error)
            log.warning("camera %s cannot be opened (%s); next try in %.1f s", self.source.uri, error, delay)
            self._stop.wait(delay)
            return False
        if self.counts.errors:
            self.counts.reopens += 1
            log.warning("camera %s reopened after %d error(s)", self.source.uri, self.counts.errors)
        self.counts.connected = True
        return True

    def _lost(self, error: CameraError) -> None:
        self._count(error)
        self.counts.connected = False
        log.warning("camera %s lost (%s); reopening", self.source.uri, error)
        self.source.close()

    def _count(self, error: CameraError) -> None:
        kind = type(error).__name__
        self._failures += 1
        self.counts.errors += 1
        self.counts.errors_by_kind[kind] = self.counts.errors_by_kind.get(kind, 0) + 1
        self.counts.last_error = str(error)

    def close(self) -> None:
        """Close the source."""
        self.source.close()
        self.counts.connected = False


def wait_until(deadline: float) -> None:
    """Sleep until ``time.monotonic()`` reaches ``deadline`` (pacing a free-running source)."""
    time.sleep(max(0.0, deadline - time.monotonic()))
