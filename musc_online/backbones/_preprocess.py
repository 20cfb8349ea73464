"""Shared preprocessing: validate RGB uint8 arrays, square-resize them with PIL and normalise."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _check_rgb_uint8(image: object, index: int) -> np.ndarray:
    """Return ``image`` if it is an (H, W, 3) uint8 array, else raise a ValueError saying what is wrong."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image {index}: expected a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"image {index}: expected dtype uint8, got {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"image {index}: expected an RGB array of shape (H, W, 3), got {image.shape}; "
            "convert grayscale or RGBA images to RGB before calling the backbone"
        )
    return image


def square_resize(image: np.ndarray, size: int, resample: Image.Resampling, index: int = 0) -> np.ndarray:
    """One RGB uint8 image (image ``index`` of a batch, for errors) resized to ``size`` x ``size``, aspect not kept.

    An image already ``size`` x ``size`` comes back unchanged (PIL copies it), so squaring twice is squaring once.
    """
    return np.asarray(Image.fromarray(_check_rgb_uint8(image, index)).resize((size, size), resample=resample))


def square_resize_normalise(
    images: Sequence[np.ndarray],
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    resample: Image.Resampling,
) -> torch.Tensor:
    """Resize each RGB uint8 image to ``size`` x ``size`` (aspect not kept, as MuSc does) and normalise.

    Returns a float32 tensor (B, 3, size, size).
    """
    if len(images) == 0:
        raise ValueError("expected at least one image")
    resized = [square_resize(image, size, resample, i) for i, image in enumerate(images)]
    pixels = torch.from_numpy(np.stack(resized)).permute(0, 3, 1, 2).float().div_(255.0)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (pixels - mean_t) / std_t
