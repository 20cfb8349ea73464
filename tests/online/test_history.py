"""The scorer's memory of recent frames is bounded and keeps the newest."""

import torch

from musc_online.online.history import FrameHistory, FrameRecord


def _record(score: float) -> FrameRecord:
    return FrameRecord([torch.zeros(4, 2)], torch.zeros(3), score, "ok")


def test_the_oldest_frames_are_forgotten_and_a_recalled_one_becomes_the_newest():
    history = FrameHistory(size=3)
    for i in range(4):
        history.remember(f"f{i}", _record(float(i)))
    assert len(history) == 3 and "f0" not in history and history["f3"].score == 3.0
    history.remember("f1", _record(1.5))  # recalled from its picture: now the newest
    history.remember("f4", _record(4.0))
    assert "f2" not in history and "f1" in history and history["f1"].score == 1.5
