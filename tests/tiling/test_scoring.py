import numpy as np
import pytest
import torch

from musc_online.batch import score_patches
from musc_online.settings import MuscSettings, TileSettings
from musc_online.tiling.batch import tiled_patch_maps
from musc_online.tiling.layout import TileLayout
from musc_online.tiling.scoring import fuse, tile_distances


def _one_hot(tiles: list[int], patches: int, dim: int = 8) -> torch.Tensor:
    """(T * P, dim) features: every patch of tile t is the unit vector of axis tiles[t]."""
    return torch.cat([torch.eye(dim)[axis].expand(patches, dim) for axis in tiles])


def test_position_mode_sees_parts_in_the_wrong_tile_and_pooled_mode_does_not():
    layout = TileLayout(1, 2, 0.0)  # two tiles side by side, 2 x 2 patches each
    reference = _one_hot([0, 1], 4)[None]  # part A on the left, part B on the right
    swapped = _one_hot([1, 0], 4)  # the frame has them the other way round
    position = tile_distances(swapped, [reference], 2, layout.reference_columns((2, 2), 0, "position"))
    pooled = tile_distances(swapped, [reference], 2, layout.reference_columns((2, 2), 0, "pooled"))
    assert position.shape == pooled.shape == (2, 1, 4)
    torch.testing.assert_close(position, torch.full((2, 1, 4), 2**0.5))
    torch.testing.assert_close(pooled, torch.zeros(2, 1, 4))


def test_a_single_tile_is_the_whole_image_so_tiled_batch_musc_equals_batch_musc():
    gen = torch.Generator().manual_seed(0)
    layers = [torch.randn(6, 16, 8, 8, generator=gen), torch.randn(6, 24, 4, 4, generator=gen)]
    settings = MuscSettings(r_list=(1, 3))
    plain = score_patches(layers, settings)
    tiled = tiled_patch_maps(
        plain, [layer[:, None] for layer in layers], TileLayout(1, 1, 0.125), settings, TileSettings(grid=1)
    )
    torch.testing.assert_close(tiled, plain, rtol=1e-5, atol=1e-6)


def test_the_fused_map_is_the_higher_of_the_stitched_tiles_and_the_whole_frame():
    whole = torch.tensor([[0.0, 1.0], [2.0, 3.0]], dtype=torch.float64)
    stitched = torch.full((4, 4), 1.5, dtype=torch.float64)
    fused = fuse(whole, stitched)
    assert fused.shape == (4, 4)
    assert fused[0, 0] == 1.5 and fused[-1, -1] == 3.0


@pytest.mark.parametrize("mode", ["position", "pooled"])
def test_tiled_batch_musc_puts_a_one_patch_flaw_of_one_tile_at_its_place_in_the_frame(mode):
    """Image 0 has a flaw of one patch in its bottom-right tile: the stitched map peaks there, well above the rest."""
    gen = torch.Generator().manual_seed(1)
    pattern = torch.randn(1, 1, 8, 8, 8, generator=gen)
    tiles = pattern.expand(5, 4, 8, 8, 8).clone() + 0.05 * torch.randn(5, 4, 8, 8, 8, generator=gen)
    tiles[0, 3, :, 6, 6] += 6.0  # image 0, bottom-right tile, one patch
    whole = torch.zeros(5, 4, 4, dtype=torch.float64)
    maps = tiled_patch_maps(
        whole, [tiles], TileLayout(2, 2, 0.0), MuscSettings(r_list=(1,)), TileSettings(grid=2, mode=mode)
    )
    assert maps.shape == (5, 16, 16)
    peak = np.unravel_index(int(maps[0].argmax()), (16, 16))
    assert peak == (14, 14)
    assert float(maps[0].max()) > 2 * float(maps[1:].max())
