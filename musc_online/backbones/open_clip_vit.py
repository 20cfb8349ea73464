"""open_clip ViTs, MuSc's own backbone (CLIP ViT-L-14-336, OpenAI weights, at 518 px).

Patch features are the raw residual-stream tokens after the chosen blocks (no final LayerNorm, no
projection); the image feature is CLIP's pooled, projected embedding, L2-normalised.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.transformer import VisionTransformer
from PIL import Image

from ._preprocess import square_resize_normalise
from .base import Backbone, BackboneOutput, checked_layers
from .weights import HubWeights, cached_hub_file, explicit_weights_file, read_state_dict
from .weights_sources import OPEN_CLIP_HUB_FILES


def resize_position_embedding(position_embedding: torch.Tensor, grid: int) -> torch.Tensor:
    """Bicubically resize a (1 + g*g, C) ViT position embedding to (1 + grid*grid, C); class token kept.

    Same interpolation as the MuSc reference (bicubic, align_corners=False, no antialiasing).
    """
    class_token, patches = position_embedding[:1], position_embedding[1:]
    old_grid = math.isqrt(patches.shape[0])
    if old_grid * old_grid != patches.shape[0]:
        raise ValueError(f"position embedding of {patches.shape[0]} patch tokens is not a square grid")
    if old_grid == grid:
        return position_embedding
    channels = patches.shape[1]
    patches = patches.reshape(1, old_grid, old_grid, channels).permute(0, 3, 1, 2)
    patches = F.interpolate(patches.float(), size=(grid, grid), mode="bicubic", align_corners=False)
    patches = patches.permute(0, 2, 3, 1).reshape(grid * grid, channels).to(position_embedding.dtype)
    return torch.cat([class_token, patches])


class OpenClipViT(Backbone):
    """Wraps an open_clip ``VisionTransformer``; ``layers`` are 1-based block indices."""

    resample = Image.Resampling.BICUBIC

    def __init__(self, visual: VisionTransformer, name: str, layers: Sequence[int]) -> None:
        super().__init__()
        self.visual = visual
        self.name = name
        self.image_size = visual.image_size[0]
        self.layers = checked_layers(layers, range(1, len(visual.transformer.resblocks) + 1), "block numbers")

    def preprocess(self, images: list[np.ndarray]) -> torch.Tensor:
        """Square bicubic resize to ``image_size`` and OpenAI CLIP mean/std, as the MuSc reference does."""
        return square_resize_normalise(images, self.image_size, OPENAI_DATASET_MEAN, OPENAI_DATASET_STD, self.resample)

    def forward(self, pixels: torch.Tensor) -> BackboneOutput:
        """Raw block outputs as (B, C, H, W) patch grids, plus the normalised pooled projection."""
        out = self.visual.forward_intermediates(
            pixels,
            indices=[layer - 1 for layer in self.layers],
            normalize_intermediates=False,
            intermediates_only=False,
            output_fmt="NCHW",
        )
        return BackboneOutput(list(out["image_intermediates"]), F.normalize(out["image_features"], dim=-1))


def _hub_weights(model_name: str, pretrained: str) -> HubWeights:
    """The hub repo and file names open_clip would download ``model_name``/``pretrained`` from."""
    config = open_clip.get_pretrained_cfg(model_name, pretrained)
    if not config.get("hf_hub"):
        raise ValueError(f"open_clip has no hub weights named '{pretrained}' for {model_name}")
    repo_id, filename = os.path.split(config["hf_hub"])  # 'org/repo/' means open_clip's default names
    return HubWeights(repo_id, (filename,) if filename else OPEN_CLIP_HUB_FILES)


def load_visual_weights(visual: VisionTransformer, state_dict: dict[str, torch.Tensor]) -> None:
    """Load the image tower of a CLIP checkpoint, resizing its position embedding to ``visual``'s grid."""
    prefix = "module.visual." if "module.visual.conv1.weight" in state_dict else "visual."
    tower = {key[len(prefix) :]: value for key, value in state_dict.items() if key.startswith(prefix)}
    if not tower:
        raise ValueError("checkpoint holds no CLIP image tower (no 'visual.*' keys)")
    grid = visual.grid_size[0]
    tower["positional_embedding"] = resize_position_embedding(tower["positional_embedding"], grid)
    visual.load_state_dict(tower, strict=True)


@contextmanager
def _root_warnings_silenced() -> Iterator[None]:
    """Mute log records up to WARNING for the duration of the block, then restore the previous setting."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def build_open_clip_vit(
    name: str,
    model_name: str,
    pretrained: str,
    image_size: int,
    layers: Sequence[int],
    weights: str | Path | None,
) -> OpenClipViT:
    """An open_clip ViT's image tower at ``image_size``, weights from ``weights`` or the local hub cache."""
    if weights is not None:
        path = explicit_weights_file(weights)
    else:
        path = cached_hub_file(name, _hub_weights(model_name, pretrained))
    quick_gelu = open_clip.get_pretrained_cfg(model_name, pretrained).get("quick_gelu", False)
    with _root_warnings_silenced():  # open_clip warns "initialized randomly"; the weights load just below
        model = open_clip.create_model(
            model_name, pretrained=None, force_quick_gelu=quick_gelu, force_image_size=image_size
        )
    load_visual_weights(model.visual, read_state_dict(path))
    return OpenClipViT(model.visual, name, layers)
