"""Small pictures drawn for tests of augmentation and streams: a tinted texture, a flat part with a dark disc."""

from __future__ import annotations

import numpy as np

TINT = np.array([1.0, 0.8, 0.55])  # R > G > B in every textured picture


def textured(rng: np.random.Generator, size: int) -> np.ndarray:
    """A tinted grey texture with a little noise, different for every draw."""
    yy, xx = np.mgrid[0:size, 0:size]
    grey = 120 + 40 * np.sin(xx / 3.0 + rng.uniform(0, 6)) * np.cos(yy / 5.0) + rng.normal(0, 6, (size, size))
    return np.clip(grey[..., None] * TINT, 0, 255).astype(np.uint8)


def flat_disc(size: int) -> np.ndarray:
    """Flat grey 150 with a dark disc of radius 6 at the centre."""
    yy, xx = np.mgrid[0:size, 0:size]
    image = np.full((size, size, 3), 150, np.uint8)
    image[np.hypot(yy - size / 2 + 0.5, xx - size / 2 + 0.5) < 6] = 30
    return image


def noisy_products(count: int, seed: int, side: int = 96) -> list[np.ndarray]:
    """``count`` looks of one random product (a fixed texture) under fresh camera noise: frames of a good line."""
    rng = np.random.default_rng(seed)
    product = rng.integers(60, 200, (side, side, 3))
    return [np.clip(product + rng.normal(0, 6, product.shape), 0, 255).astype(np.uint8) for _ in range(count)]
