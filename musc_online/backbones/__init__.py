"""Backbones: one factory over a small registry of frozen feature extractors.

``create_backbone(name)`` returns an eval-mode, gradient-free ``Backbone`` on the CPU. Pretrained weights
come from ``weights=`` or the local caches only (see ``weights.py``); nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from .base import Backbone, BackboneOutput, WeightsNotFoundError
from .efficientnet_lite0 import EFFICIENTNET_LITE0, build_efficientnet_lite0
from .open_clip_vit import build_open_clip_vit
from .timm_vit import build_timm_vit
from .tiny_random_vit import (
    TEST_RANDOM_TIMM_VIT,
    TEST_RANDOM_VIT,
    build_test_random_timm_vit,
    build_test_random_vit,
)

__all__ = [
    "Backbone",
    "BackboneOutput",
    "WeightsNotFoundError",
    "available_backbones",
    "create_backbone",
    "default_settings",
]

WeightsArg = str | Path | None


@dataclass(frozen=True)
class _Entry:
    """How to build one registered backbone, and its default input size and feature layers."""

    build: Callable[[int, Sequence[int], WeightsArg], Backbone]
    image_size: int
    layers: tuple[int, ...]
    accepts_weights: bool = True


def _random(build: Callable[[int, Sequence[int]], Backbone]) -> Callable[..., Backbone]:
    """Adapt a random-init test builder to the registry signature (it takes no weights)."""
    return lambda image_size, layers, _weights: build(image_size, layers)


_REGISTRY: dict[str, _Entry] = {
    # MuSc's default: CLIP ViT-L/14 at 336 px with OpenAI weights, run at 518 px (37 x 37 patches).
    "ViT-L-14-336": _Entry(
        partial(build_open_clip_vit, "ViT-L-14-336", "ViT-L-14-336", "openai"), 518, (6, 12, 18, 24)
    ),
    "dino_vitb8": _Entry(partial(build_timm_vit, "dino_vitb8", "vit_base_patch8_224.dino"), 512, (3, 6, 9, 12)),
    "dinov2_vitb14": _Entry(
        partial(build_timm_vit, "dinov2_vitb14", "vit_base_patch14_dinov2.lvd142m"), 518, (3, 6, 9, 12)
    ),
    "dinov2_vitl14": _Entry(
        partial(build_timm_vit, "dinov2_vitl14", "vit_large_patch14_dinov2.lvd142m"), 518, (6, 12, 18, 24)
    ),
    EFFICIENTNET_LITE0: _Entry(build_efficientnet_lite0, 320, (2, 3, 4)),
    TEST_RANDOM_VIT: _Entry(_random(build_test_random_vit), 64, (1, 2, 3, 4), accepts_weights=False),
    TEST_RANDOM_TIMM_VIT: _Entry(_random(build_test_random_timm_vit), 64, (2, 4, 6), accepts_weights=False),
}


def available_backbones() -> list[str]:
    """Names ``create_backbone`` accepts, sorted."""
    return sorted(_REGISTRY)


def _entry(name: str) -> _Entry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown backbone '{name}'; known: {', '.join(available_backbones())}") from None


def default_settings(name: str) -> tuple[int, tuple[int, ...]]:
    """The default (image_size, layers) of backbone ``name``."""
    entry = _entry(name)
    return entry.image_size, entry.layers


def create_backbone(
    name: str,
    *,
    image_size: int | None = None,
    layers: Sequence[int] | None = None,
    weights: str | Path | None = None,
) -> Backbone:
    """Build backbone ``name`` frozen (eval mode, no gradients) on the CPU; unset settings take the defaults.

    Raises ValueError for an unknown name or bad settings, WeightsNotFoundError when weights are missing.
    """
    entry = _entry(name)
    if weights is not None and not entry.accepts_weights:
        raise ValueError(f"backbone '{name}' is random-init for tests only and takes no weights")
    size = entry.image_size if image_size is None else image_size
    backbone = entry.build(size, entry.layers if layers is None else layers, weights)
    backbone.eval().requires_grad_(False)
    return backbone
