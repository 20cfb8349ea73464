"""Bayer demosaicing: an 8-bit colour-filter mosaic to RGB by bilinear interpolation (numpy only).

The pattern names are GenICam's: ``BayerRG8`` has red at the top-left pixel, green right of it and below it,
blue diagonally; ``BayerBG8``, ``BayerGR8`` and ``BayerGB8`` likewise name the top-left 2 x 2 tile row by row.
"""

from __future__ import annotations

import numpy as np

# The colour (0 red, 1 green, 2 blue) of the top-left 2 x 2 tile, row by row, per pattern.
BAYER_PATTERNS: dict[str, tuple[int, int, int, int]] = {
    "BayerRG8": (0, 1, 1, 2),
    "BayerBG8": (2, 1, 1, 0),
    "BayerGR8": (1, 0, 2, 1),
    "BayerGB8": (1, 2, 0, 1),
}
_KERNELS = {
    0: np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=np.float32),  # red and blue: from 2 or 4 neighbours
    1: np.array([[0, 1, 0], [1, 4, 1], [0, 1, 0]], dtype=np.float32),  # green: from its 4 direct neighbours
}


def channel_masks(shape: tuple[int, int], pattern: str) -> np.ndarray:
    """(3, H, W) booleans: where the sensor saw red, green and blue."""
    tile = BAYER_PATTERNS[pattern]
    masks = np.zeros((3, *shape), dtype=bool)
    for index, colour in enumerate(tile):
        masks[colour, index // 2 :: 2, index % 2 :: 2] = True
    return masks


def mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """What a sensor with ``pattern`` records of an RGB image (for tests and fake cameras)."""
    masks = channel_masks(rgb.shape[:2], pattern)
    return np.einsum("chw,hwc->hw", masks, rgb).astype(np.uint8)


def _filter3(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """3 x 3 correlation with edges reflected."""
    padded = np.pad(image, 1, mode="reflect")
    height, width = image.shape
    return sum(kernel[dy, dx] * padded[dy : dy + height, dx : dx + width] for dy in range(3) for dx in range(3))


def demosaic(raw: np.ndarray, pattern: str) -> np.ndarray:
    """RGB uint8 (H, W, 3) from a Bayer mosaic (H, W) of ``pattern``; each colour where measured is kept as is."""
    if pattern not in BAYER_PATTERNS:
        raise ValueError(f"unknown Bayer pattern {pattern!r}; known: {', '.join(BAYER_PATTERNS)}")
    masks = channel_masks(raw.shape, pattern)
    values = raw.astype(np.float32)
    rgb = np.empty((*raw.shape, 3), dtype=np.uint8)
    for colour in range(3):
        kernel = _KERNELS[1 if colour == 1 else 0]
        seen = masks[colour].astype(np.float32)
        estimate = _filter3(values * seen, kernel) / _filter3(seen, kernel)
        rgb[..., colour] = np.clip(np.rint(np.where(masks[colour], values, estimate)), 0, 255).astype(np.uint8)
    return rgb
