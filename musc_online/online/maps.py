"""The online scorer's MSM: one frame's patch maps against its references (the window's voters and its judges).

Per scoring set (degree r x layer) the frame's patches are compared with every reference's, and the interval mean
of the nearest references gives each patch's score; the sets' maps are averaged on the finest grid. The same
similarity blocks give a second map against the judges alone (the judges' own opinion) for one more interval mean.
With tiles on, the tile sets give one map per tile (``tiling.scoring``), stitched and fused with the whole frame's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from musc_online.batch import upsample
from musc_online.device import to_device
from musc_online.msm import distances_from_similarity, interval_mean, interval_size, query_similarity
from musc_online.online.bank import FeatureBank
from musc_online.online.settings import OnlineSettings
from musc_online.online.window import RollingWindow
from musc_online.tiling.scoring import fuse, tile_distances, tile_maps
from musc_online.tiling.views import ViewExtractor


class References(Protocol):
    """What a frame is scored against: the scorer's window, judge bank, settings, device and tile layout."""

    window: RollingWindow
    judges: FeatureBank | None
    settings: OnlineSettings
    device: torch.device
    views: ViewExtractor


@dataclass
class FrameMaps:
    """What MSM gives for one frame (maps float64 on the scorer's device: nothing is copied to the host here)."""

    patch_map: torch.Tensor  # the whole frame's map on its finest grid, against all references
    judges_map: torch.Tensor | None  # the same against the judges alone (None without any)
    references: int  # |R|
    normal_best: list[torch.Tensor]  # per whole-frame set, each patch's best similarity to any reference
    fused: torch.Tensor  # the map the image score comes from: patch_map, or fused with the tiles' with tiles on
    fused_judges: torch.Tensor | None  # the same for judges_map


def reference_blocks(
    refs: References, judge_ids: list[str], count: int, voting: bool = True
) -> list[list[torch.Tensor]]:
    """Per scoring set (``count`` of them), the references' patch features in blocks: the window's voters (unless
    not ``voting``), then the judges."""
    voters = refs.window.slots() if voting else []
    judge_sets = refs.judges.patch_features(judge_ids) if judge_ids else None
    blocks: list[list[torch.Tensor]] = []
    for s in range(count):
        parts = []
        if len(voters):
            buffer = refs.window.buffers[s]
            parts.append(buffer if refs.window.full else buffer.index_select(0, voters))
        if judge_sets is not None:
            parts.append(judge_sets[s])
        blocks.append(parts)
    return blocks


def frame_maps(
    refs: References,
    sets: list[torch.Tensor],
    grids: list[tuple[int, int]],
    judge_ids: list[str],
    judge_rows: list[int],
    voting: bool = True,
) -> FrameMaps:
    """MSM of one frame against all its references (the window's voters unless not ``voting``, and ``judge_ids``)
    and against the ``judge_rows`` among them alone.

    ``sets`` are the whole frame's scoring sets (one per entry of ``grids``) followed, with tiles on, by as many tile
    sets in the same order.
    """
    finest = max(grids, key=lambda hw: hw[0] * hw[1])
    references = len(refs.window) * voting + len(judge_ids)
    if references == 0:
        empty = torch.zeros(finest, dtype=torch.float64, device=refs.device)
        return FrameMaps(empty, None, 0, [], empty, None)
    musc = refs.settings.musc
    k = interval_size(references, musc.topmin_max, musc.topk_rounding)
    k_judges = interval_size(len(judge_rows), musc.topmin_max, musc.topk_rounding) if judge_rows else 0
    rows = to_device(judge_rows, torch.long, refs.device)
    blocks = reference_blocks(refs, judge_ids, len(sets), voting)
    total = torch.zeros(finest, dtype=torch.float64, device=refs.device)
    judged = torch.zeros_like(total)
    normal_best = []
    for query, grid, parts in zip(sets, grids, blocks, strict=False):
        similarity = torch.cat([query_similarity(query, refs, musc.block_elements) for refs in parts])
        normal_best.append(similarity.max(dim=0).values)
        distances = distances_from_similarity(similarity)
        total += upsample(interval_mean(distances, k, dim=0).view(1, *grid).double(), finest)[0]
        if judge_rows:
            by_judges = interval_mean(distances.index_select(0, rows), k_judges, dim=0)
            judged += upsample(by_judges.view(1, *grid).double(), finest)[0]
    patch_map = total / len(grids)
    judges_map = judged / len(grids) if judge_rows else None
    if len(sets) == len(grids):
        return FrameMaps(patch_map, judges_map, references, normal_best, patch_map, judges_map)
    tiles, tiles_judged = _tile_maps(refs, sets[len(grids) :], grids, blocks[len(grids) :], k, rows, k_judges)
    layout = refs.views.layout
    fused = fuse(patch_map, layout.stitch(tiles))
    fused_judges = fuse(judges_map, layout.stitch(tiles_judged)) if judges_map is not None else None
    return FrameMaps(patch_map, judges_map, references, normal_best, fused, fused_judges)


def _tile_maps(
    refs: References,
    sets: Sequence[torch.Tensor],
    grids: Sequence[tuple[int, int]],
    blocks: Sequence[list[torch.Tensor]],
    k: int,
    rows: torch.Tensor,
    k_judges: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, fh, fw) maps of each tile against all references and against the judges alone, averaged over sets."""
    layout = refs.views.layout
    tiles = refs.settings.tiles
    finest = max(grids, key=lambda hw: hw[0] * hw[1])
    total = torch.zeros((layout.count, *finest), dtype=torch.float64, device=refs.device)
    judged = torch.zeros_like(total)
    for query, grid, parts in zip(sets, grids, blocks, strict=True):
        columns = layout.reference_columns(grid, tiles.halo, tiles.mode, refs.device)
        distances = tile_distances(query, parts, layout.count, columns, refs.settings.musc.block_elements)
        total += tile_maps(distances, k, grid, finest)
        if len(rows):
            judged += tile_maps(distances.index_select(1, rows), k_judges, grid, finest)
    return total / len(grids), judged / len(grids)
