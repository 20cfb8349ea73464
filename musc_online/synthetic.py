"""Controlled changes to product images, for streams that test what a line does to the scorer.

A recurring defect (the same mark on many parts, MuSc's known weak point when it fills 30 % or more of
the references) and a drift of normal appearance (lighting or position changing half way).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageDraw

from musc_online.datasets import DatasetError, images_in, load_image


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


def synthetic_product(rng: np.random.Generator, size: int = 256, defective: bool = False) -> np.ndarray:
    """A top view of a round part on a dark belt, slightly different each time; defective parts carry a mark.

    For demos and tests that must run without any dataset: the part's position, brightness and texture
    vary a little, and a defect is a dark scratch or spot at a random place on the part.
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    cy, cx = size / 2 + rng.normal(0, size / 80, 2)
    radius = np.hypot(yy - cy, xx - cx)
    part = radius < size * 0.38
    rings = 150 + 25 * np.cos(radius / (size / 40)) + rng.normal(0, 1.5)
    grey = np.where(part, rings, 35.0) + rng.normal(0, 4, (size, size))
    picture = np.repeat(grey[..., None], 3, axis=2) * np.array([1.0, 0.97, 0.9])
    image = Image.fromarray(np.clip(picture, 0, 255).astype(np.uint8))
    if defective:
        draw = ImageDraw.Draw(image)
        angle, distance = rng.uniform(0, 2 * np.pi), rng.uniform(0.05, 0.3) * size
        y, x = cy + distance * np.sin(angle), cx + distance * np.cos(angle)
        if rng.random() < 0.5:
            r = size * rng.uniform(0.02, 0.04)
            draw.ellipse((x - r, y - r, x + r, y + r), fill=(25, 20, 15))
        else:
            dx, dy = size * 0.08 * np.cos(angle + 1.2), size * 0.08 * np.sin(angle + 1.2)
            draw.line((x - dx, y - dy, x + dx, y + dy), fill=(230, 230, 225), width=max(2, size // 90))
    return np.asarray(image)


def camera_frames(source: str, seed: int = 0, defect_rate: float = 0.1, size: int = 320) -> Iterator[np.ndarray]:
    """Endless frames: a folder's images in order, round and round, or synthetic parts with planted defects."""
    if source == "synthetic":
        rng = np.random.default_rng(seed)
        while True:
            yield synthetic_product(rng, size, defective=rng.random() < defect_rate)
    paths = images_in(source)
    if not paths:
        raise DatasetError(f"no images in {source}")
    for path in itertools.cycle(paths):
        yield load_image(path)
