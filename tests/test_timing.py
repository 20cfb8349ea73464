"""Stage timings: consecutive laps, each from the end of the one before."""

from __future__ import annotations

import time

import torch

from musc_online.timing import Stopwatch


def test_each_lap_times_its_own_stage_in_order():
    watch = Stopwatch(torch.device("cpu"))
    time.sleep(0.05)
    slow = watch.lap("slow")
    fast = watch.lap("fast")
    assert list(watch.laps) == ["slow", "fast"]
    assert watch.laps["slow"] == slow >= 0.05
    assert 0 <= fast < slow
