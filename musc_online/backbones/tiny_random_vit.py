"""RANDOMLY INITIALISED tiny ViTs, for unit tests only: ``test_random_vit`` and ``test_random_timm_vit``.

They run through the same adapters as the real backbones (``OpenClipViT``, ``TimmViT``), so tests exercise
the real code paths in milliseconds. Their features mean nothing: never use them to score images.
"""

from __future__ import annotations

from collections.abc import Sequence

import timm
import torch
from open_clip.transformer import VisionTransformer

from .open_clip_vit import OpenClipViT
from .timm_vit import TimmViT

TEST_RANDOM_VIT = "test_random_vit"
TEST_RANDOM_TIMM_VIT = "test_random_timm_vit"
SEED = 0


def build_test_random_vit(image_size: int, layers: Sequence[int]) -> OpenClipViT:
    """Random open_clip ViT (width 64, 4 blocks, 2 heads, patch 8, 32-d output), identical on every call."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        visual = VisionTransformer(
            image_size=image_size, patch_size=8, width=64, layers=4, heads=2, mlp_ratio=4.0, output_dim=32
        )
    return OpenClipViT(visual, TEST_RANDOM_VIT, layers)


def build_test_random_timm_vit(image_size: int, layers: Sequence[int]) -> TimmViT:
    """Random timm ViT (timm's ``test_vit``: width 64, 6 blocks, here patch 8), identical on every call."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = timm.create_model("test_vit", pretrained=False, num_classes=0, img_size=image_size, patch_size=8)
    return TimmViT(model, TEST_RANDOM_TIMM_VIT, image_size, layers)
