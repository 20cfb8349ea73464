"""The frame path stays on the scorer's device: while a steady frame is decided, the host reads tensor values only
through the frame's one copy (``image_score.to_host``) and the judge search (FAISS answers on the host). On a GPU
(marker ``gpu``) the same frames make no more synchronising calls than those, and the half-precision backbone
scores real images as the CPU's full-precision one does."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.overrides import TorchFunctionMode

from musc_online.backbones import create_backbone
from musc_online.online.judges import seed_judges
from musc_online.online.scorer import OnlineScorer
from musc_online.online.settings import OnlineSettings
from musc_online.roi import CareArea
from musc_online.settings import TileSettings

from ..made_pictures import noisy_products

# What makes the host read a tensor's values (on a GPU: a copy to the host and a wait). ``Tensor.to`` is left out:
# on a CPU ``.to("cpu")`` and ``.to(scorer.device)`` cannot be told apart (the GPU test below counts both).
HOST_READS = {"cpu", "item", "tolist", "numpy", "__array__", "__float__", "__int__", "__index__", "__bool__"}
MAY_READ = {("image_score.py", "to_host"), ("bank.py", "search")}  # the frame's one copy; the judge search
PACKAGE = str(Path(__file__).resolve().parents[2] / "musc_online")
GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
SYNC_WARNING = "called a synchronizing CUDA operation"
# Per steady frame on a GPU: the judge search (its query goes to FAISS on the host, its answer picks the judges
# gathered next), the decision's one copy (scores and map: the band needs the score, and the next frame of a
# micro-batch is scored against this one's admission), and the stage timings' read (it waits for the admission's
# device copies queued after that copy).
SYNCS_PER_FRAME = 3
# fp16 backbone and fp16 window on CUDA against fp32 on the CPU: image scores (raw and after RsCIN) within 1 %.
FP16_SCORE_TOLERANCE = 1e-2


class HostReads(TorchFunctionMode):
    """Records where the host reads tensor values outside ``MAY_READ`` (innermost musc_online file:line)."""

    def __init__(self) -> None:
        super().__init__()
        self.allowed = 0
        self.stray: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in HOST_READS:
            stack = []
            frame = sys._getframe(1)
            while frame is not None:
                stack.append((Path(frame.f_code.co_filename), frame.f_code.co_name, frame.f_lineno))
                frame = frame.f_back
            if any((path.name, name) in MAY_READ for path, name, _ in stack):
                self.allowed += 1
            else:
                ours = next((f"{p.name}:{line} {func.__name__}" for p, _, line in stack if str(p).startswith(PACKAGE)))
                self.stray.append(ours)
        return func(*args, **(kwargs or {}))


@pytest.fixture(scope="module")
def backbone():
    return create_backbone("test_random_vit")


def _steady_scorer(backbone, tiled: bool, device: str = "cpu") -> OnlineScorer:
    """A scorer past warm-up (full window, calibrated band, no seed judge pending); tiled with a care area."""
    tiles = TileSettings(grid=2) if tiled else TileSettings()
    settings = OnlineSettings(window=4, judges_per_frame=2, admission="all", calibration_scores=8, tiles=tiles)
    scorer = OnlineScorer(backbone, settings, device)
    if tiled:
        mask = np.zeros((96, 96), bool)
        mask[8:88, 4:90] = True
        scorer.care_area = CareArea(mask, "a test area")
    seed_judges(scorer, noisy_products(6, seed=1), [f"judge-{i}" for i in range(6)])
    for i, image in enumerate(noisy_products(8, seed=2)):
        scorer.score(image, f"warm-{i}")
    assert scorer.window.full and scorer.thresholds.calibrated and not scorer.calibration.pending
    return scorer


@pytest.mark.parametrize("tiled", [False, True], ids=["whole frame", "tiles and care area"])
def test_a_steady_frame_reaches_the_host_through_one_copy(backbone, tiled):
    scorer = _steady_scorer(backbone, tiled)
    with HostReads() as reads:
        decisions = scorer.score_many(noisy_products(2, seed=3), ["a", "b"])
    assert [d.references["judges"] for d in decisions] == [2, 2] and not decisions[0].provisional
    assert reads.stray == []
    assert reads.allowed > 0  # the counter sees the reads that are allowed


@pytest.mark.gpu
@GPU
@pytest.mark.parametrize("tiled", [False, True], ids=["whole frame", "tiles and care area"])
def test_a_steady_frame_on_a_gpu_makes_only_the_syncs_its_answer_needs(tiled, monkeypatch):
    scorer = _steady_scorer(create_backbone("test_random_vit").to("cuda"), tiled, "cuda")
    explicit = []
    for owner, name in (
        (torch.cuda, "synchronize"),
        (torch.cuda.Event, "synchronize"),
        (torch.cuda.Stream, "synchronize"),
    ):
        original = getattr(owner, name)
        monkeypatch.setattr(owner, name, lambda *a, _o=original, _n=name, **k: (explicit.append(_n), _o(*a, **k))[1])
    frames = 4
    torch.cuda.synchronize()
    explicit.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            decisions = scorer.score_many(noisy_products(frames, seed=3), [f"f{i}" for i in range(frames)])
        finally:
            torch.cuda.set_sync_debug_mode("default")
    implicit = [str(w.message) for w in caught if SYNC_WARNING in str(w.message)]
    assert all(d.references["judges"] == 2 for d in decisions)
    assert len(implicit) >= frames  # each decision's copy is seen: the count works
    assert len(implicit) + len(explicit) <= SYNCS_PER_FRAME * frames, (implicit, explicit)


def _bottle(root: Path, names: list[str]) -> list[np.ndarray]:
    return [np.asarray(Image.open(root / name).convert("RGB")) for name in names]


@pytest.mark.gpu
@pytest.mark.realdata
@GPU
def test_half_precision_backbone_scores_real_bottles_as_the_cpu_does(mvtec_root):
    bottle = mvtec_root / "bottle"
    judges = _bottle(bottle / "train" / "good", [f"{i:03d}.png" for i in range(8)])
    frames = _bottle(bottle / "test" / "good", ["000.png", "001.png", "002.png"])
    frames += _bottle(bottle / "test" / "broken_large", ["000.png", "001.png", "002.png"])
    backbone = create_backbone("efficientnet_lite0")  # its real packaged weights
    scores = {}
    for device in ("cpu", "cuda"):  # the CPU first: ``to`` moves the backbone's weights in place
        backbone.to(device)
        scorer = OnlineScorer(backbone, OnlineSettings(window=4, judges_per_frame=4, admission="all"), device)
        seed_judges(scorer, judges, [f"judge-{i}" for i in range(len(judges))])
        decisions = [scorer.score(image, f"f{i}") for i, image in enumerate(frames)]
        scores[device] = np.array([[d.raw_score, d.score] for d in decisions])
    np.testing.assert_allclose(scores["cuda"], scores["cpu"], rtol=FP16_SCORE_TOLERANCE)
