"""A category's images as a stream sees them: each read when needed, through its own camera augmentation.

Frames and judges of ``streams`` load lazily: building a stream only lists files. The product variant (the
changeover's product B) and a frame's augmentation are applied on every read, to its mask alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from musc_online.augment import Augmentation, draw_augmentation, variant, variant_mask
from musc_online.datasets import Category, load_image, load_mask

Judge = tuple[str, Callable[[], np.ndarray]]


@dataclass(frozen=True)
class ImageLoader:
    """Reads one image when called and applies the product variant and the frame's augmentation."""

    path: Path
    augmentation: Augmentation | None = None
    product_b: bool = False

    def __call__(self) -> np.ndarray:
        image = load_image(self.path)
        if self.product_b:
            image = variant(image)
        return image if self.augmentation is None else self.augmentation.apply(image)


@dataclass(frozen=True)
class MaskLoader:
    """Reads one ground-truth mask at ``size`` when called and moves it like the frame's image."""

    path: Path | None
    augmentation: Augmentation
    product_b: bool = False

    def __call__(self, size: int) -> np.ndarray:
        mask = load_mask(self.path, size)
        if self.path is None:
            return mask
        if self.product_b:
            mask = variant_mask(mask)
        return self.augmentation.apply_mask(mask)


def judges_of(catalog: Category, rng: np.random.Generator, product_b: bool = False) -> list[Judge]:
    """The category's train/good images as judges, each through its own camera augmentation."""
    prefix = "B-" if product_b else ""
    return [
        (f"{prefix}train_good_{s.path.stem}", ImageLoader(s.path, draw_augmentation(rng), product_b))
        for s in catalog.train_good
    ]
