"""Controlled changes to product images, for streams that test what a line does to the scorer.

A recurring defect (the same mark on many parts, MuSc's known weak point when it fills 30 % or more of
the references) and a drift of normal appearance (lighting or position changing half way).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw


def plant_recurring_defect(image: np.ndarray) -> np.ndarray:
    """The same dark blotch and streak, at the same relative place, on any RGB uint8 image."""
    height, width = image.shape[:2]
    picture = Image.fromarray(image)
    draw = ImageDraw.Draw(picture)
    box = (0.47 * width, 0.28 * height, 0.58 * width, 0.36 * height)
    draw.ellipse(tuple(int(v) for v in box), fill=(70, 45, 20))
    draw.line(
        (int(0.42 * width), int(0.38 * height), int(0.62 * width), int(0.40 * height)),
        fill=(40, 30, 20),
        width=max(1, width // 100),
    )
    return np.asarray(picture)


def brighten(image: np.ndarray, gain: float = 1.4, offset: float = 20.0) -> np.ndarray:
    """A lighting change: gain and offset, clipped to uint8."""
    return np.clip(image.astype(np.float32) * gain + offset, 0, 255).astype(np.uint8)
