"""Tiled batch MuSc: every image's tiles scored against the facing tiles of all the other images of the set.

The whole-image pass is batch MuSc unchanged (``batch.score_patches``); this adds the tiles' maps, stitched and
fused with it, so ``eval`` measures what a tiled line decides.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from musc_online.lnamd import lnamd
from musc_online.msm import compute_dtype, interval_size
from musc_online.settings import MuscSettings, TileSettings
from musc_online.tiling.layout import TileLayout
from musc_online.tiling.scoring import fuse, tile_distances, tile_maps


def tiled_patch_maps(
    global_maps: torch.Tensor,
    tile_layers: Sequence[torch.Tensor],
    layout: TileLayout,
    settings: MuscSettings,
    tiles: TileSettings,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """(N, ch, cw) fused maps from the whole images' (N, gh, gw) patch maps and, per layer, the (N, T, C, h, w) maps
    of their tiles; each image's tiles are scored against the other N - 1 images'. ``progress`` is told of every
    image scored in one scoring set (N x degrees x layers in all: ``tile_steps``)."""
    count = global_maps.shape[0]
    if count < 2:
        raise ValueError(f"MSM needs at least 2 images to score against each other, got {count}")
    grids = [tuple(layer.shape[-2:]) for layer in tile_layers]
    finest = max(grids, key=lambda hw: hw[0] * hw[1])
    k = interval_size(count - 1, settings.topmin_max, settings.topk_rounding)
    total = torch.zeros((count, layout.count, *finest), dtype=torch.float64, device=tile_layers[0].device)
    for r in settings.r_list:
        for layer, grid in zip(tile_layers, grids, strict=True):
            features = lnamd(layer.flatten(0, 1), r).reshape(count, -1, layer.shape[2])
            features = features.to(compute_dtype(features.device))
            columns = layout.reference_columns(grid, tiles.halo, tiles.mode, features.device)
            for i in range(count):
                others = [part for part in (features[:i], features[i + 1 :]) if len(part)]
                distances = tile_distances(features[i], others, layout.count, columns, settings.block_elements)
                total[i] += tile_maps(distances, k, grid, finest)  # on the features' device: no copy per image
                if progress:
                    progress(1)
    total /= len(settings.r_list) * len(tile_layers)
    return torch.stack([fuse(global_maps[i], layout.stitch(total[i])) for i in range(count)]).to(global_maps.device)


def tile_steps(count: int, layers: int, settings: MuscSettings) -> int:
    """How many steps ``tiled_patch_maps`` reports for ``count`` images of ``layers`` layers."""
    return count * layers * len(settings.r_list)
