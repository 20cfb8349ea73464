"""The backbone's features of a frame's views: the whole frame (as without tiles) and, with tiles on, each tile.

One backbone pass takes every view of every frame of a batch. The whole frame is given to the backbone exactly as
without tiles (same resize), so an untiled line and the global pass of a tiled one score alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from musc_online.backbones import Backbone
from musc_online.settings import TileSettings
from musc_online.tiling.layout import TileLayout, scaled_to


@dataclass
class FrameViews:
    """One frame's features: per layer its (1, C, h, w) whole-frame map and, with tiles, its (T, C, h, w) tile
    maps; its (D,) image feature (of the whole frame: judges are picked and RsCIN compares by it)."""

    layer_maps: list[torch.Tensor]
    tile_maps: list[torch.Tensor] | None
    image_feature: torch.Tensor


class ViewExtractor:
    """Cuts frames into views and runs the backbone over all of them; remembers the line's tile layout."""

    def __init__(self, backbone: Backbone, tiles: TileSettings) -> None:
        self.backbone = backbone
        self.tiles = tiles
        self.layout: TileLayout | None = None  # a grid's is known now, a tile size's from the first frame's size
        if tiles.grid:
            self.layout = TileLayout(tiles.grid, tiles.grid, tiles.overlap)

    def fit(self, image: np.ndarray) -> np.ndarray:
        """What a caller may keep of a frame instead of the frame itself and still score it the same: the model's
        input without tiles; with tiles the frame at the tiling resolution (the native frame for ``resolution`` 0).
        ValueError (``layout_for``) for a frame that cannot be cut like the line's references."""
        if not self.tiles.enabled:
            return self.backbone.fit(image)
        scaled = scaled_to(image, self.tiles.resolution)
        self.layout_for(scaled.shape[:2])
        return scaled

    def layout_for(self, shape: tuple[int, int]) -> TileLayout:
        """The layout for a frame of ``shape``; every frame of a line must get the first one's (tile t of a frame
        faces tile t of its references)."""
        layout = TileLayout.plan(self.tiles, shape)
        if self.layout is None:
            self.layout = layout
        elif layout != self.layout:
            raise ValueError(
                f"a frame of {shape[1]} x {shape[0]} pixels gives {layout.rows} x {layout.cols} tiles, but this line's "
                f"references were cut into {self.layout.rows} x {self.layout.cols}: send frames of one size, or set "
                "tiles.grid instead of tiles.tile_size"
            )
        return layout

    def extract(self, images: Sequence[np.ndarray], device: torch.device) -> list[FrameViews]:
        """Every frame's views, from one backbone pass."""
        views: list[np.ndarray] = list(images)
        counts = []
        if self.tiles.enabled:
            for image in images:
                scaled = scaled_to(image, self.tiles.resolution)
                tiles = self.layout_for(scaled.shape[:2]).cut(scaled)
                views.extend(tiles)
                counts.append(len(tiles))
        out = self.backbone.extract(views, device)
        frames, start = [], len(images)
        for i in range(len(images)):
            tile_maps = None
            if counts:
                tile_maps = [m[start : start + counts[i]] for m in out.patch_features]
                start += counts[i]
            frames.append(FrameViews([m[i : i + 1] for m in out.patch_features], tile_maps, out.image_features[i]))
        return frames
