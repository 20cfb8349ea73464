"""The one interface every backbone implements: images in, per-layer patch grids and an image feature out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


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

    Subclasses set ``name``, ``image_size`` and ``layers`` and implement ``preprocess`` and ``forward``.
    """

    name: str
    image_size: int
    layers: tuple[int, ...]

    def preprocess(self, images: list[np.ndarray]) -> torch.Tensor:
        """Turn RGB uint8 arrays (H, W, 3) of any size into the model's normalised (B, 3, S, S) input."""
        raise NotImplementedError

    def forward(self, pixels: torch.Tensor) -> BackboneOutput:  # pragma: no cover - interface
        raise NotImplementedError

    @torch.inference_mode()
    def extract(self, images: list[np.ndarray], device: torch.device | str = "cpu") -> BackboneOutput:
        """Preprocess and run a batch of images on ``device``."""
        return self(self.preprocess(images).to(device))


class WeightsNotFoundError(FileNotFoundError):
    """Raised when a backbone's pretrained weights are neither in the local cache nor given as a file."""
