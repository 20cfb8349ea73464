"""The online scorer with tiles on (``[tiles]``): same decisions as untiled for one whole-frame tile, the tiling
saved with the line's state, and frames that cannot be cut like the line's references refused."""

import numpy as np
import pytest

from musc_online.backbones import create_backbone
from musc_online.online.corrections import confirm_defect
from musc_online.online.judges import seed_judges
from musc_online.online.persistence import load, save
from musc_online.online.scorer import OnlineScorer
from musc_online.online.settings import OnlineSettings
from musc_online.settings import TileSettings

from ..made_pictures import noisy_products


@pytest.fixture(scope="module")
def backbone():
    return create_backbone("test_random_vit")


def _scorer(backbone, tiles: TileSettings) -> OnlineScorer:
    scorer = OnlineScorer(backbone, OnlineSettings(window=4, judges_per_frame=2, calibration_scores=8, tiles=tiles))
    seed_judges(scorer, noisy_products(8, seed=1), [f"judge-{i}" for i in range(8)])
    return scorer


def test_one_tile_covering_the_frame_decides_exactly_as_the_untiled_scorer(backbone):
    untiled, tiled = _scorer(backbone, TileSettings()), _scorer(backbone, TileSettings(grid=1))
    for i, image in enumerate(noisy_products(10, seed=2)):
        plain, cut = untiled.score(image, f"f{i}"), tiled.score(image, f"f{i}")
        assert cut.score == pytest.approx(plain.score, rel=1e-6)
        assert cut.label == plain.label and cut.judge_score == pytest.approx(plain.judge_score, rel=1e-6)
        np.testing.assert_allclose(cut.patch_scores, plain.patch_scores, rtol=1e-6)
    assert tiled.calibration.band() == untiled.calibration.band()


def test_a_tiled_line_gives_a_finer_map_and_keeps_frames_at_the_tiling_resolution(backbone):
    scorer = _scorer(backbone, TileSettings(grid=2, resolution=128))
    decision = scorer.score(noisy_products(1, seed=3, side=256)[0], "big")
    plain_grid = _scorer(backbone, TileSettings()).score(noisy_products(1, seed=3)[0]).patch_scores.shape
    assert decision.patch_scores.shape[0] > plain_grid[0]
    assert scorer.views.fit(np.zeros((300, 600, 3), np.uint8)).shape == (64, 128, 3)


def test_state_saved_untiled_is_refused_by_a_tiled_line_and_a_tiled_state_reloads(backbone, tmp_path):
    untiled = _scorer(backbone, TileSettings())
    untiled.score(noisy_products(1, seed=4)[0], "f0")
    save(untiled, tmp_path / "untiled")
    with pytest.raises(ValueError, match="tiles"):
        load(OnlineScorer(backbone, OnlineSettings(tiles=TileSettings(grid=2))), tmp_path / "untiled")

    tiles = TileSettings(grid=2)
    tiled = _scorer(backbone, tiles)
    frames = noisy_products(3, seed=5)
    tiled.score(frames[0], "f0")
    save(tiled, tmp_path / "tiled")
    restored = OnlineScorer(backbone, tiled.settings)
    load(restored, tmp_path / "tiled")
    assert restored.score(frames[1], "f1").score == pytest.approx(tiled.score(frames[1], "f1").score, rel=1e-6)


def test_a_frame_that_cuts_into_another_grid_than_the_saved_references_is_refused_saying_why(backbone, tmp_path):
    scorer = _scorer(backbone, TileSettings(tile_size=48))  # the judges (96 px) cut into 2 x 2
    save(scorer, tmp_path / "state")
    restored = OnlineScorer(backbone, scorer.settings)
    load(restored, tmp_path / "state")  # the layout comes with the state, before any frame
    for line in (scorer, restored):
        with pytest.raises(ValueError, match="gives 3 x 3 tiles, but this line's references were cut into 2 x 2"):
            line.score(noisy_products(1, seed=6, side=144)[0], "odd")
        assert line.score(noisy_products(1, seed=6)[0], "even").label in ("ok", "unsure", "defect")


def test_a_tiled_line_names_the_confirmed_defect_a_frame_carries(backbone):
    scorer = _scorer(backbone, TileSettings(grid=2))
    *good, flawed = noisy_products(5, seed=7)
    flawed[20:40, 30:50] = 255
    for i, image in enumerate(good):
        scorer.score(image, f"f{i}")
    scorer.score(flawed, "flawed")
    confirm_defect(scorer, "flawed", "scratch")  # a tiled frame's defect is kept with its tiles' features
    assert scorer.score(flawed.copy(), "again").nearest_defect.frame_id == "flawed"
