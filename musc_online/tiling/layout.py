"""Where the tiles of a frame lie, which patches of a reference each tile is scored against, and how the tiles'
maps are stitched back into one map of the frame.

Geometry is kept in fractions of the frame's sides, so every frame of a line, whatever its pixel size, is cut the
same way and tile t of one frame always faces tile t of another. The frame is split into rows x cols equal cells;
each tile is its cell widened by ``overlap`` of a cell on each side (shifted inwards at the frame's border, so all
tiles have one size and are resized to the backbone's input alike). A tile's map is used only over its own cell
(the most central tile of every point), and its overlap gives the cell's border patches real context.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from musc_online.settings import TileSettings

Grid = tuple[int, int]


def _spans(count: int, overlap: float) -> tuple[tuple[float, float], ...]:
    """(start, size) of each tile along one side, in fractions of it."""
    cell = 1.0 / count
    size = min(1.0, cell * (1.0 + 2.0 * overlap))
    return tuple((min(max((i + 0.5) * cell - size / 2, 0.0), 1.0 - size), size) for i in range(count))


def scaled_to(image: np.ndarray, resolution: int) -> np.ndarray:
    """The frame with its longer side ``resolution`` pixels (aspect kept); unchanged for 0 or when it already is."""
    height, width = image.shape[:2]
    if not resolution or max(height, width) == resolution:
        return image
    scale = resolution / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0))


@dataclass(frozen=True)
class TileLayout:
    """rows x cols overlapping tiles over a frame, in fractions of its sides."""

    rows: int
    cols: int
    overlap: float

    @classmethod
    def plan(cls, settings: TileSettings, shape: tuple[int, int]) -> TileLayout:
        """The layout ``settings`` give a frame of ``shape`` (height, width) after its resize to ``resolution``."""
        if settings.grid:
            return cls(settings.grid, settings.grid, settings.overlap)
        height, width = shape
        if settings.resolution:
            scale = settings.resolution / max(height, width)
            height, width = height * scale, width * scale
        rows, cols = (max(1, math.ceil(side / settings.tile_size - 1e-9)) for side in (height, width))
        return cls(rows, cols, settings.overlap)

    @property
    def count(self) -> int:
        """Tiles per frame."""
        return self.rows * self.cols

    def spans(self) -> list[tuple[tuple[float, float], tuple[float, float]]]:
        """Per tile, row-major: its (start, size) down and its (start, size) across, in fractions."""
        down, across = _spans(self.rows, self.overlap), _spans(self.cols, self.overlap)
        return [(d, a) for d in down for a in across]

    def cut(self, image: np.ndarray) -> list[np.ndarray]:
        """The tiles of an (H, W, 3) frame, row-major, each (h, w, 3) of the same size."""
        height, width = image.shape[:2]
        tiles = []
        for (top, tall), (left, wide) in self.spans():
            h, w = max(1, round(tall * height)), max(1, round(wide * width))
            y, x = min(round(top * height), height - h), min(round(left * width), width - w)
            tiles.append(image[y : y + h, x : x + w])
        return tiles

    def reference_columns(
        self, grid: Grid, halo: int, mode: str, device: torch.device | str = "cpu"
    ) -> list[torch.Tensor] | None:
        """Per tile, the patches of a reference (indices into its tiles' patches, tile-major, ``grid`` each, on
        ``device``) that the frame's tile is scored against: in "position" mode the same tile's and, around it, a ring
        ``halo`` patches wide taken from the tiles that reach there (what lies inside the tile is not taken twice from
        its overlapping neighbours); None in "pooled" mode (all of them)."""
        return None if mode == "pooled" else list(_position_columns(self, grid, halo, torch.device(device)))

    def canvas(self, grid: Grid) -> Grid:
        """The stitched map's size when every tile's map is ``grid``: the tiles' resolution over the whole frame."""
        (_, tall), (_, wide) = self.spans()[0]
        return max(1, round(grid[0] / tall)), max(1, round(grid[1] / wide))

    def stitch(self, tile_maps: torch.Tensor) -> torch.Tensor:
        """One map of the frame from (T, h, w) tile maps: every point takes the value of its own cell's tile (the
        most central one), sampled bilinearly at its place in that tile."""
        count, h, w = tile_maps.shape
        if count != self.count:
            raise ValueError(f"{count} tile maps for a {self.rows} x {self.cols} layout")
        out = torch.empty(self.canvas((h, w)), dtype=tile_maps.dtype, device=tile_maps.device)
        for t, (rows, cols, where) in enumerate(_stitch_plan(self, (h, w), tile_maps.device, tile_maps.dtype)):
            sampled = F.grid_sample(tile_maps[t][None, None], where, mode="bilinear", align_corners=False)
            out[rows, cols] = sampled[0, 0]
        return out


@cache
def _stitch_plan(
    layout: TileLayout, grid: Grid, device: torch.device, dtype: torch.dtype
) -> tuple[tuple[slice, slice, torch.Tensor], ...]:
    """Per tile, the rows and columns of the stitched map it fills and where they lie in the tile's ``grid`` map, as
    ``grid_sample`` takes them (cached per layout, grid and device: stitching on a GPU copies nothing to it)."""
    ch, cw = layout.canvas(grid)
    centres_down = (torch.arange(ch, dtype=torch.float64) + 0.5) / ch
    centres_across = (torch.arange(cw, dtype=torch.float64) + 0.5) / cw
    cell_down = (centres_down * layout.rows).long().clamp_max(layout.rows - 1)
    cell_across = (centres_across * layout.cols).long().clamp_max(layout.cols - 1)
    plan = []
    for t, ((top, tall), (left, wide)) in enumerate(layout.spans()):
        rows = (cell_down == t // layout.cols).nonzero().flatten()
        cols = (cell_across == t % layout.cols).nonzero().flatten()
        ys = 2 * (centres_down[rows] - top) / tall - 1
        xs = 2 * (centres_across[cols] - left) / wide - 1
        where = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)[None].to(device, dtype)
        plan.append((slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1), where))
    return tuple(plan)


@cache
def _position_columns(layout: TileLayout, grid: Grid, halo: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """``reference_columns`` for position mode (cached: one computation and copy per layout, grid and device)."""
    h, w = grid
    spans = layout.spans()
    centres = []  # per tile's patches (tile-major, row-major): centre down, centre across, in frame fractions
    for (top, tall), (left, wide) in spans:
        down = top + (np.arange(h) + 0.5) / h * tall
        across = left + (np.arange(w) + 0.5) / w * wide
        centres.append(np.stack(np.meshgrid(down, across, indexing="ij"), axis=-1).reshape(-1, 2))
    every = np.concatenate(centres)
    owner = np.repeat(np.arange(len(spans)), h * w)
    columns = []
    for t, ((top, tall), (left, wide)) in enumerate(spans):
        inside = _within(every, top, tall, left, wide, halo * tall / h, halo * wide / w)
        ring = inside & ~_within(every, top, tall, left, wide, 0.0, 0.0)  # the halo beyond the tile's own patches
        columns.append(torch.from_numpy(np.flatnonzero((owner == t) | ring)).to(device))
    return tuple(columns)


def _within(
    centres: np.ndarray, top: float, tall: float, left: float, wide: float, margin_down: float, margin_across: float
) -> np.ndarray:
    """Which (down, across) ``centres`` lie in the box widened by the margins."""
    down, across = centres[:, 0], centres[:, 1]
    return (
        (down >= top - margin_down)
        & (down <= top + tall + margin_down)
        & (across >= left - margin_across)
        & (across <= left + wide + margin_across)
    )
