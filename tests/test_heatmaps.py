import numpy as np

from musc_online.heatmaps import colourise, normalise, overlay, save_png, side_by_side


def test_scale_runs_from_blue_to_red():
    low, high = colourise(np.array([0.0, 1.0]))
    assert low[2] > low[0] and high[0] > high[2]
    np.testing.assert_array_equal(colourise(np.array([-3.0, 7.0])), colourise(np.array([0.0, 1.0])))


def test_constant_map_normalises_to_zero():
    assert not normalise(np.full((3, 3), 0.7), 0.7, 0.7).any()


def test_overlay_resizes_map_to_image_and_saves(tmp_path):
    image = np.zeros((30, 40, 3), np.uint8)
    amap = np.linspace(0, 1, 16).reshape(4, 4)
    blended = overlay(image, amap, alpha=1.0)
    assert blended.shape == (30, 40, 3)
    assert blended[-1, -1, 0] > blended[0, 0, 0]  # the high corner is red-ish, the low one blue-ish
    path = save_png(side_by_side(image, amap), tmp_path / "a" / "b.png")
    assert path.is_file()
