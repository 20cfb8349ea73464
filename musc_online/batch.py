"""Batch MuSc: score every image of a set against all the others, as the paper does offline.

The pure tensor path from backbone features to patch maps, pixel maps, image scores and RsCIN scores.
It owns no files, sockets or progress bars, so ``eval``, ``replay`` and the benchmarks share it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from musc_online.lnamd import lnamd
from musc_online.msm import msm
from musc_online.roi import CareArea
from musc_online.rscin import rscin
from musc_online.settings import MuscSettings


@dataclass
class BatchScores:
    """What batch MuSc gives for N images; all tensors on the CPU."""

    patch_maps: torch.Tensor  # (N, H, W) on the finest patch grid, float64 as the reference keeps it
    anomaly_maps: torch.Tensor  # (N, S, S) at image size
    image_scores: torch.Tensor  # (N,) maximum of each anomaly map (over the care area, when one is given)
    rscin_scores: torch.Tensor  # (N,) re-scored image scores (what the image metrics use)


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (N, H, W) maps with align_corners=True, as the reference assembles maps."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps.unsqueeze(1), size=size, mode="bilinear", align_corners=True).squeeze(1)


def finest_grid(layer_maps: Sequence[torch.Tensor]) -> tuple[int, int]:
    """The largest (H, W) among the layers' grids: the grid the per-layer maps are averaged on."""
    return max((tuple(m.shape[-2:]) for m in layer_maps), key=lambda hw: hw[0] * hw[1])


def score_patches(layer_maps: Sequence[torch.Tensor], settings: MuscSettings = MuscSettings()) -> torch.Tensor:
    """Mean MSM patch score over every (degree r, layer) scoring set, on the finest grid, (N, H, W) float64.

    Each layer is (N, C, H, W); layers of coarser grids (CNN stages) are scored on their own grid and
    upsampled before averaging.
    """
    grid = finest_grid(layer_maps)
    total = None
    for r in settings.r_list:
        for layer in layer_maps:
            n, _, h, w = layer.shape
            scores = msm(lnamd(layer, r), settings.topmin_max, settings.topk_rounding, settings.block_elements)
            scores = upsample(scores.view(n, h, w).double(), grid)
            total = scores if total is None else total + scores
    return (total / (len(settings.r_list) * len(layer_maps))).cpu()


def assemble_scores(
    patch_maps: torch.Tensor,
    image_features: torch.Tensor,
    image_size: int | tuple[int, int],
    k_list: Sequence[int] = (1, 2, 3),
    care: CareArea | None = None,
) -> BatchScores:
    """From patch maps (N, H, W) to pixel maps at image size, image scores (map maxima, over the ``care`` area when
    given: ``roi``) and RsCIN scores."""
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    anomaly_maps = upsample(patch_maps, size)
    pixels = anomaly_maps.flatten(1) if care is None else anomaly_maps[:, care.at(*size)]
    image_scores = pixels.amax(dim=1)
    return BatchScores(patch_maps, anomaly_maps, image_scores, rscin(image_scores, image_features.cpu(), k_list))


def score_batch(
    layer_maps: Sequence[torch.Tensor],
    image_features: torch.Tensor,
    image_size: int | tuple[int, int],
    settings: MuscSettings = MuscSettings(),
) -> BatchScores:
    """Full batch MuSc from backbone features: patch maps, pixel maps, image scores, RsCIN scores."""
    return assemble_scores(score_patches(layer_maps, settings), image_features, image_size, settings.k_list)
