"""Bayer demosaicing: each of the four GenICam patterns gives back the colours a sensor of that pattern saw."""

from __future__ import annotations

import numpy as np
import pytest

from musc_online.cameras.bayer import BAYER_PATTERNS, demosaic, mosaic


def _scene(height: int = 48, width: int = 64) -> np.ndarray:
    """A smooth scene whose three channels differ (red rises left to right, blue top to bottom)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    red, green, blue = 40 + 3 * x, np.full_like(x, 128.0), 30 + 4 * y
    return np.clip(np.stack([red, green, blue], axis=-1), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("pattern", sorted(BAYER_PATTERNS))
def test_each_pattern_gives_back_the_scene(pattern):
    scene = _scene()
    raw = mosaic(scene, pattern)
    rgb = demosaic(raw, pattern)
    assert rgb.shape == scene.shape and rgb.dtype == np.uint8
    error = np.abs(rgb.astype(int) - scene.astype(int))
    assert error[1:-1, 1:-1].max() <= 1, f"{pattern}: largest error inside {error[1:-1, 1:-1].max()}"
    assert error.max() <= 4, f"{pattern}: largest error {error.max()}"  # at the border: one step of the ramp


@pytest.mark.parametrize("pattern", sorted(BAYER_PATTERNS))
def test_a_wrong_pattern_is_visibly_wrong(pattern):
    """The check above has teeth: reading a mosaic with another pattern swaps or smears the colours."""
    scene = _scene()
    raw = mosaic(scene, pattern)
    for other in set(BAYER_PATTERNS) - {pattern}:
        assert np.abs(demosaic(raw, other).astype(int) - scene.astype(int)).mean() > 10


def test_an_unknown_pattern_is_named():
    with pytest.raises(ValueError, match="BayerXY8"):
        demosaic(np.zeros((4, 4), np.uint8), "BayerXY8")
