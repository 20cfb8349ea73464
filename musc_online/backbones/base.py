"""The one interface every backbone implements: images in, per-layer patch grids and an image feature out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn

from ._preprocess import square_resize


@dataclass
class BackboneOutput:
    """Features of one batch.

    patch_features: one tensor per chosen layer, (B, C, H, W); grids may differ between layers (CNNs).
    image_features: (B, D), L2-normalised, the image-level feature RsCIN compares images with.
    """

    patch_features: list[torch.Tensor]
    image_features: torch.Tensor


class Backbone(nn.Module):
    """A frozen feature extractor that owns its preprocessing.

    Subclasses set ``name``, ``image_size``, ``layers`` and ``resample`` (the filter ``preprocess`` squares images
    with) and implement ``preprocess`` and ``forward``.
    """

    name: str
    image_size: int
    layers: tuple[int, ...]
    resample: Image.Resampling

    def fit(self, image: np.ndarray) -> np.ndarray:
        """``image`` (RGB uint8, any size) squared to the model's input exactly as ``preprocess`` squares it.

        Preprocessing the result gives the very tensor that preprocessing ``image`` gives, so a caller may keep
        this ``image_size`` x ``image_size`` copy instead of a large frame and still score it the same.
        """
        return square_resize(image, self.image_size, self.resample)

    def preprocess(self, images: list[np.ndarray]) -> torch.Tensor:
        """Turn RGB uint8 arrays (H, W, 3) of any size into the model's normalised (B, 3, S, S) input."""
        raise NotImplementedError

    def forward(self, pixels: torch.Tensor) -> BackboneOutput:  # pragma: no cover - interface
        raise NotImplementedError

    @torch.inference_mode()
    def extract(self, images: list[np.ndarray], device: torch.device | str = "cpu") -> BackboneOutput:
        """Preprocess and run a batch of images on ``device`` (in half precision on CUDA, for speed)."""
        device = torch.device(device)
        with torch.autocast("cuda", dtype=torch.float16, enabled=device.type == "cuda"):
            return self(self.preprocess(images).to(device, non_blocking=True))  # no wait for queued work


def checked_layers(layers: Sequence[int], valid: range, what: str) -> tuple[int, ...]:
    """Return ``layers`` as a tuple after checking it is non-empty, increasing and inside ``valid``."""
    chosen = tuple(int(layer) for layer in layers)
    if not chosen or any(layer not in valid for layer in chosen) or list(chosen) != sorted(set(chosen)):
        raise ValueError(f"layers must be increasing {what} in [{valid.start}, {valid.stop - 1}], got {tuple(layers)}")
    return chosen
