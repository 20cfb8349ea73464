"""The ``[camera]`` care area settings (care_mask, care_polygons, frame_size) through the daemon's config: the whole
frame by default, and unusable values refused naming the setting and where it came from."""

from __future__ import annotations

import pytest

from daemon.config import ConfigError, load_config
from daemon.service.recovery import build_scorer

from .conftest import LINE
from .inprocess import TINY

SQUARE = "[[[0, 0], [31, 0], [31, 63], [0, 63]]]"  # the left half of a 64 x 64 frame


def test_a_line_without_a_care_area_scores_the_whole_frame(tmp_path):
    config = load_config(LINE, env={**TINY, "MUSC_PATHS__DATA_DIR": str(tmp_path)})
    assert config.care_area() is None and build_scorer(config).care_area is None
    assert config.derived()["care_area"] == "the whole frame"


@pytest.mark.parametrize(
    ("settings", "phrases"),
    [
        ({"CARE_POLYGONS": SQUARE}, ["camera.care_polygons = ", "needs frame_size = [width, height]"]),
        (
            {"CARE_POLYGONS": "[[[0, 0], [5, 5]]]", "FRAME_SIZE": "[64, 64]"},
            ["camera.care_polygons = [[[0.0, 0.0], [5.0, 5.0]]] (from env MUSC_CAMERA__CARE_POLYGONS)", "at least 3"],
        ),
        (
            {"CARE_POLYGONS": "[[[0, 0], [70, 0], [5, 5]]]", "FRAME_SIZE": "[64, 64]"},
            ["camera.care_polygons", "point [70, 0] lies outside the 64 x 64 frame"],
        ),
        ({"CARE_POLYGONS": "[[0, 0], [1, 1]]"}, ["camera.care_polygons", "must be a list of polygons"]),
        (
            {"CARE_POLYGONS": SQUARE, "FRAME_SIZE": "[64, 64]", "CARE_MASK": "/tmp/x.png"},
            ["camera.care_polygons", "and care_mask cannot both be set"],
        ),
        ({"FRAME_SIZE": "[64, 64, 3]"}, ["camera.frame_size = [64, 64, 3]", "must be [width, height]"]),
        ({"FRAME_SIZE": "[0, 64]"}, ["camera.frame_size", "must be at least 1"]),
        (
            {"CARE_POLYGONS": "[[[0, 0], [2, 0], [2, 2]]]", "FRAME_SIZE": "[4000, 4000]"},
            ["camera.care_polygons", "too small to keep any pixel at 320 x 320"],  # efficientnet_lite0's size
        ),
    ],
)
def test_bad_care_settings_are_refused_naming_the_setting_and_where_it_came_from(settings, phrases):
    env = {f"MUSC_CAMERA__{key}": value for key, value in settings.items()}
    with pytest.raises(ConfigError) as caught:
        load_config(LINE, env=env).care_area()
    for phrase in phrases:
        assert phrase in str(caught.value)
