"""A care area on real images: MVTec AD bottle through the real EfficientNet-Lite0 (at 256 px), judges seeded from
train/good. A bright blob planted in a corner, outside a disc over the bottle, is decided ok; the same blob on the
bottle is flagged; and a line without the care area flags the corner blobs, so it is the care area that spares them.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from musc_online.backbones import create_backbone
from musc_online.datasets import images_in
from musc_online.online.judges import JudgeCandidate, add_judges, prepare_judges
from musc_online.online.scorer import OnlineScorer
from musc_online.online.settings import OnlineSettings
from musc_online.roi import CareArea

SIZE = 256  # frames are shrunk once here: the scorer squares them to this size anyway
CORNERS = [(0.08, 0.08), (0.92, 0.08), (0.08, 0.92), (0.92, 0.92)]  # outside the disc
ON_THE_BOTTLE = [(0.5, 0.62), (0.4, 0.4), (0.6, 0.35), (0.35, 0.6)]  # inside it

pytestmark = [pytest.mark.slow, pytest.mark.realdata]


def _small(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR))


def _blob(image: np.ndarray, x: float, y: float) -> np.ndarray:
    """A bright round blob, a tenth of the frame wide, centred at (x, y) in fractions of the frame."""
    picture = Image.fromarray(image)
    r = 0.05 * SIZE
    ImageDraw.Draw(picture).ellipse((x * SIZE - r, y * SIZE - r, x * SIZE + r, y * SIZE + r), fill=(235, 235, 235))
    return np.asarray(picture)


@pytest.fixture(scope="module")
def bottle(mvtec_root) -> dict[str, list[np.ndarray]]:
    root = mvtec_root / "bottle"
    train = [_small(p) for p in images_in(root / "train" / "good")[:14]]
    return {"judges": train[:8], "warm": train[8:], "test": [_small(p) for p in images_in(root / "test" / "good")[:4]]}


def _line(backbone, care: CareArea | None, judges: list[JudgeCandidate], warm: list[np.ndarray]) -> OnlineScorer:
    """A scorer with the bottle's judges, its band calibrated on good frames (the judges' mutual scores, prepared
    once, only stand in until each judge is scored as a steady frame on this line)."""
    scorer = OnlineScorer(backbone, OnlineSettings(window=4, judges_per_frame=4, calibration_scores=8))
    scorer.care_area = care
    add_judges(scorer, judges)
    scorer.score_many(warm, [f"warm{i}" for i in range(len(warm))])
    scorer.score_due_seeds(len(warm))
    assert scorer.thresholds.calibrated
    return scorer


def test_a_defect_outside_the_care_area_is_never_flagged_and_one_inside_is(bottle):
    backbone = create_backbone("efficientnet_lite0", image_size=SIZE)
    centre, radius = SIZE / 2, 0.44 * SIZE
    disc = [[centre + radius * np.cos(a), centre + radius * np.sin(a)] for a in np.linspace(0, 2 * np.pi, 48)[:-1]]
    care = CareArea.from_polygons([disc], (SIZE, SIZE))
    outside = [_blob(image, x, y) for image, (x, y) in zip(bottle["test"], CORNERS, strict=True)]
    inside = [_blob(image, x, y) for image, (x, y) in zip(bottle["test"], ON_THE_BOTTLE, strict=True)]

    probe = OnlineScorer(backbone, OnlineSettings())
    judges = prepare_judges(probe, bottle["judges"], [f"judge{i}" for i in range(len(bottle["judges"]))])
    line = _line(backbone, care, judges, bottle["warm"])
    spared = [line.score(image, f"outside{i}") for i, image in enumerate(outside)]
    flagged = [line.score(image, f"inside{i}") for i, image in enumerate(inside)]
    assert [d.label for d in spared] == ["ok"] * 4, [(d.label, d.score, d.band) for d in spared]
    assert all(d.label in ("unsure", "defect") for d in flagged), [(d.label, d.score, d.band) for d in flagged]
    assert not any(d.provisional for d in spared + flagged)
    assert spared[0].patch_scores.shape == flagged[0].patch_scores.shape  # maps stay whole: only the score is masked

    whole = _line(backbone, None, judges, bottle["warm"])
    unmasked = [whole.score(image, f"outside{i}") for i, image in enumerate(outside)]
    assert all(d.label in ("unsure", "defect") for d in unmasked), [(d.label, d.score, d.band) for d in unmasked]
