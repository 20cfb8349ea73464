import pytest
import torch

from musc_online.online.window import RollingWindow


def _frame(value: float):
    return [torch.full((4, 3), value), torch.full((2, 5), value)], torch.full((6,), value)


def test_oldest_frame_leaves_when_full_and_slot_is_reused():
    window = RollingWindow(3, torch.device("cpu"), torch.float32)
    for i in range(3):
        assert window.admit(f"f{i}", *_frame(i), score=float(i)) is None
    assert window.full
    assert window.admit("f3", *_frame(3), score=3.0) == "f0"
    assert window.ids == ["f1", "f2", "f3"]
    assert window.voter_scores().tolist() == [1.0, 2.0, 3.0]
    assert float(window.features_of("f3")[1][0, 0]) == 3.0


def test_evict_removes_vote_at_once():
    window = RollingWindow(4, torch.device("cpu"), torch.float32)
    for i in range(3):
        window.admit(f"f{i}", *_frame(i), score=float(i))
    assert window.evict("f1")
    assert "f1" not in window
    assert not window.evict("f1")
    assert window.voter_image_features()[:, 0].tolist() == [0.0, 2.0]


def test_duplicate_admission_is_refused():
    window = RollingWindow(2, torch.device("cpu"), torch.float32)
    window.admit("a", *_frame(0), score=0.0)
    with pytest.raises(ValueError, match="already"):
        window.admit("a", *_frame(0), score=0.0)
