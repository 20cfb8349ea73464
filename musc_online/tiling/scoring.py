"""MSM for tiles: each of a frame's tiles against the matching patches of every reference, as one map per tile.

Shared by the online scorer (references: the window's voters and the frame's judges) and tiled batch MuSc
(references: every other image of the set). A scoring set of a tiled frame holds all its tiles' patches, tile-major
((T * P, C)); ``columns`` (``TileLayout.reference_columns``) says which of a reference's patches each tile faces.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from musc_online.batch import upsample
from musc_online.lnamd import lnamd
from musc_online.msm import distances_from_similarity, interval_mean, query_similarity


def tile_sets(tile_maps: torch.Tensor, r: int) -> torch.Tensor:
    """One scoring set of a frame's tiles: LNAMD of its (T, C, h, w) tile maps, as (T * h * w, C)."""
    features = lnamd(tile_maps, r)
    return features.reshape(-1, features.shape[-1])


def tile_distances(
    query: torch.Tensor,
    blocks: Sequence[torch.Tensor],
    tiles: int,
    columns: Sequence[torch.Tensor] | None,
    block_elements: int | None = None,
) -> torch.Tensor:
    """(T, R, P) distances from each patch of each of the frame's tiles (``query`` (T * P, C)) to its nearest
    facing patch in each reference; ``blocks`` are references (R_i, T * P, C), concatenated in order."""
    patches = query.shape[0] // tiles
    out = []
    for t in range(tiles):
        rows = query[t * patches : (t + 1) * patches]
        parts = []
        for references in blocks:
            if columns is not None:
                references = references.index_select(1, columns[t].to(references.device))
            parts.append(query_similarity(rows, references, block_elements))
        out.append(torch.cat(parts))
    return distances_from_similarity(torch.stack(out))


def tile_maps(distances: torch.Tensor, k: int, grid: tuple[int, int], finest: tuple[int, int]) -> torch.Tensor:
    """(T, fh, fw) float64 maps: the interval mean of the ``k`` nearest references of every tile patch, on
    ``grid``, resized to the ``finest`` grid (as the whole frame's layers are)."""
    means = interval_mean(distances, k, dim=1)
    return upsample(means.view(-1, *grid).double(), finest)


def fuse(global_map: torch.Tensor, stitched: torch.Tensor) -> torch.Tensor:
    """The frame's map: the stitched tiles' map and the whole frame's map resized to it, whichever is higher."""
    return torch.maximum(upsample(global_map[None].to(stitched), tuple(stitched.shape))[0], stitched)
