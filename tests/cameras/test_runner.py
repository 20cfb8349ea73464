"""CameraRunner: a lost camera is closed, reopened with growing waits, logged and counted; stop ends it."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from musc_online.cameras import CameraError, CameraRunner, CameraSource, CameraUnavailable, Grab


class _Flaky(CameraSource):
    """A camera that fails to open ``open_failures`` times, delivers ``good`` frames, drops out once, then delivers
    one more frame and falls silent."""

    uri = "flaky://1"

    def __init__(self, open_failures: int, good: int) -> None:
        self.open_failures, self.good = open_failures, good
        self.opens = self.closes = 0
        self.dropped = False

    @property
    def camera_id(self) -> str:
        return "flaky"

    def open(self) -> None:
        if self.open_failures:
            self.open_failures -= 1
            raise CameraError("no such camera")
        self.opens += 1

    def grab(self, timeout_s: float) -> Grab | None:
        if self.good:
            self.good -= 1
            return Grab(np.zeros((2, 2), np.uint8), 0.0)
        if not self.dropped:
            self.dropped, self.good = True, 1
            raise CameraError("cable pulled")
        return None  # silent from now on

    def close(self) -> None:
        self.closes += 1


def test_a_lost_camera_is_reopened_and_every_loss_counted(caplog):
    source = _Flaky(open_failures=2, good=3)
    runner = CameraRunner(source, grab_timeout_s=0.01, reopen_min_s=0.001, reopen_max_s=0.002)
    assert all(runner.next_grab() is not None for _ in range(3))
    assert runner.counts.errors == 2 and runner.counts.reopens == 1 and runner.counts.grabbed == 3
    assert runner.next_grab() is not None  # through "cable pulled": closed, reopened, grabbing again
    assert runner.counts.errors_by_kind == {"CameraError": 3}
    assert runner.counts.last_error == "cable pulled" and source.closes == 1 and source.opens == 2
    assert "cable pulled" in caplog.text


def test_a_silent_camera_counts_as_lost_in_free_run_but_not_when_waiting_for_triggers():
    source = _Flaky(open_failures=0, good=0)
    source.dropped = True  # silent from the start
    free_run = CameraRunner(source, grab_timeout_s=0.001, reopen_min_s=0.001, reopen_max_s=0.001)
    stopper = threading.Timer(0.2, free_run.stop)
    stopper.start()
    assert free_run.next_grab() is None  # returns once stopped
    assert free_run.counts.errors >= 1 and "no frame within" in free_run.counts.last_error
    triggered = CameraRunner(source, grab_timeout_s=0.001, wait_for_trigger=True)
    stopper = threading.Timer(0.2, triggered.stop)
    stopper.start()
    assert triggered.next_grab() is None
    assert triggered.counts.errors == 0


def test_a_source_that_can_never_work_is_not_retried():
    class _Missing(_Flaky):
        def open(self) -> None:
            raise CameraUnavailable("needs pypylon")

    with pytest.raises(CameraUnavailable, match="pypylon"):
        CameraRunner(_Missing(0, 0)).next_grab()
