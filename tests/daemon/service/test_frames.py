"""The age budget: deadlines from the camera's clock, the skew guard, and what a late answer says."""

from __future__ import annotations

import math

import numpy as np

from daemon.service.frames import Accepted, AgeBudget, Received
from musc_online.protocol import FrameHeader


def _frame(taken: float, arrived: float) -> Accepted:
    header = FrameHeader(line=3, camera="cam", frame_id="f", timestamp=taken, encoding="png")
    return Accepted(Received(1, arrived, 10, "cam", "f"), header, np.zeros((2, 2, 3), np.uint8))


def test_the_deadline_counts_from_the_camera_and_a_clock_ahead_counts_from_arrival():
    skewed = []
    budget = AgeBudget(2000, 500, lambda camera, ahead: skewed.append((camera, round(ahead, 3))))
    assert budget.deadline(_frame(100.0, 100.3)) == 102.0
    assert budget.deadline(_frame(100.4, 100.0)) == 102.4  # a little ahead: within the guard, trusted
    assert budget.deadline(_frame(160.0, 100.0)) == 102.0  # a minute ahead: from arrival, reported
    assert skewed == [("cam", 60.0)]
    assert AgeBudget(0, 500, print).deadline(_frame(1.0, 2.0)) == math.inf


def test_a_late_answer_says_how_old_and_how_late():
    budget = AgeBudget(2000, 500, print)
    frame = _frame(100.0, 100.1)
    frame.deadline = budget.deadline(frame)
    refused = budget.late(frame, now=103.0)
    assert refused.code == "late" and refused.identity["frame_id"] == "f"
    assert refused.details == {"age_ms": 3000.0, "late_by_ms": 1000.0, "budget_ms": 2000.0}
    assert "3000 ms old" in refused.message and "1000 ms past" in refused.message
    soon = budget.late(frame, now=101.8, expected_s=0.5)
    assert soon.details["late_by_ms"] == 300.0 and "would be, once scored," in soon.message
