"""timm ViTs (DINO, DINOv2): final-norm'd tokens of the chosen blocks, as MuSc's DINO variants use them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F
from PIL import Image
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn

from ._preprocess import IMAGENET_MEAN, IMAGENET_STD, square_resize_normalise
from .base import Backbone, BackboneOutput, checked_layers
from .weights import HubWeights, cached_hub_file, explicit_weights_file, read_state_dict
from .weights_sources import TIMM_HUB_FILES


class TimmViT(Backbone):
    """Wraps a timm ``VisionTransformer``; ``layers`` are 1-based block indices."""

    resample = Image.Resampling.BICUBIC

    def __init__(self, model: VisionTransformer, name: str, image_size: int, layers: Sequence[int]) -> None:
        super().__init__()
        self.model = model
        self.name = name
        self.image_size = image_size
        self.layers = checked_layers(layers, range(1, len(model.blocks) + 1), "block numbers")

    def preprocess(self, images: list[np.ndarray]) -> torch.Tensor:
        """Square bicubic resize to ``image_size`` and ImageNet mean/std."""
        return square_resize_normalise(images, self.image_size, IMAGENET_MEAN, IMAGENET_STD, self.resample)

    def forward(self, pixels: torch.Tensor) -> BackboneOutput:
        """Final-norm'd block outputs as (B, C, H, W) grids, plus the normalised final class token."""
        final, intermediates = self.model.forward_intermediates(
            pixels, indices=[layer - 1 for layer in self.layers], norm=True, output_fmt="NCHW"
        )
        pooled = self.model.forward_head(final, pre_logits=True)
        return BackboneOutput(list(intermediates), F.normalize(pooled, dim=-1))


def build_timm_vit(
    name: str, timm_name: str, image_size: int, layers: Sequence[int], weights: str | Path | None
) -> TimmViT:
    """A pretrained timm ViT at ``image_size``, weights from ``weights`` or the local hub cache."""
    if weights is not None:
        path = explicit_weights_file(weights)
    else:
        hub_id = timm.models.get_pretrained_cfg(timm_name).hf_hub_id
        path = cached_hub_file(name, HubWeights(hub_id, TIMM_HUB_FILES))
    model = timm.create_model(timm_name, pretrained=False, num_classes=0, img_size=image_size)
    # Converts original DINO/DINOv2 checkpoints and resizes the position embedding (plain bicubic, as MuSc).
    state_dict = checkpoint_filter_fn(read_state_dict(path), model, antialias=False)
    model.load_state_dict(state_dict, strict=True)
    return TimmViT(model, name, image_size, layers)
