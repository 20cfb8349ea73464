import numpy as np
import pytest
import torch

from musc_online.settings import SettingError, TileSettings
from musc_online.tiling.layout import TileLayout, scaled_to


def test_tiles_cover_the_frame_overlap_their_neighbours_and_share_one_size():
    layout = TileLayout(3, 3, 0.125)
    image = np.random.default_rng(0).integers(0, 255, (900, 1200, 3), dtype=np.uint8)
    tiles = layout.cut(image)
    assert len(tiles) == 9 and {t.shape for t in tiles} == {(375, 500, 3)}
    spans = layout.spans()
    downs = sorted({d for d, _ in spans})
    assert downs[0][0] == 0.0 and downs[-1][0] + downs[-1][1] == pytest.approx(1.0)
    assert downs[0][0] + downs[0][1] > downs[1][0]  # neighbours overlap
    np.testing.assert_array_equal(tiles[4], image[262:637, 350:850])  # the middle tile is centred


def test_tile_size_plans_as_many_tiles_as_cover_the_frame_at_the_tiling_resolution():
    assert TileLayout.plan(TileSettings(tile_size=320), (900, 900)) == TileLayout(3, 3, 0.125)
    assert TileLayout.plan(TileSettings(tile_size=320, resolution=640), (900, 1800)) == TileLayout(1, 2, 0.125)
    assert TileLayout.plan(TileSettings(grid=2, overlap=0.0), (10, 10000)) == TileLayout(2, 2, 0.0)
    assert scaled_to(np.zeros((900, 1800, 3), np.uint8), 640).shape == (320, 640, 3)


def test_grid_and_tile_size_together_are_refused_naming_both():
    with pytest.raises(SettingError, match="tile_size cannot be set together with grid"):
        TileSettings(grid=2, tile_size=256)


def test_every_point_of_the_stitched_map_comes_from_its_own_cell_at_its_place_in_that_tile():
    """Tile maps that sample one smooth function of the frame at their own patch centres stitch back into it."""
    layout = TileLayout(2, 3, 0.25)
    grid = (16, 16)

    def field(down, across):
        return np.sin(3 * down) + across**2

    maps = []
    for (top, tall), (left, wide) in layout.spans():
        down = top + (np.arange(grid[0]) + 0.5) / grid[0] * tall
        across = left + (np.arange(grid[1]) + 0.5) / grid[1] * wide
        maps.append(field(*np.meshgrid(down, across, indexing="ij")))
    stitched = layout.stitch(torch.tensor(np.stack(maps)))
    ch, cw = layout.canvas(grid)
    assert stitched.shape == (ch, cw) == (21, 32)
    down, across = np.meshgrid((np.arange(ch) + 0.5) / ch, (np.arange(cw) + 0.5) / cw, indexing="ij")
    inner = (slice(2, -2), slice(2, -2))  # bilinear sampling clamps within half a patch of a tile's border
    np.testing.assert_allclose(stitched.numpy()[inner], field(down, across)[inner], atol=0.02)

    marked = torch.stack([torch.full(grid, float(t)) for t in range(layout.count)])
    cells = layout.stitch(marked).numpy()
    assert cells[0, 0] == 0 and cells[0, -1] == 2 and cells[-1, 0] == 3 and cells[-1, -1] == 5
    assert set(np.unique(cells)) == set(range(6))


def test_position_mode_faces_the_same_tile_widened_by_the_halo_and_pooled_mode_faces_all():
    layout = TileLayout(2, 2, 0.0)
    grid = (4, 4)
    assert layout.reference_columns(grid, 0, "pooled") is None
    exact = layout.reference_columns(grid, 0, "position")
    assert [c.tolist() for c in exact] == [list(range(t * 16, (t + 1) * 16)) for t in range(4)]
    widened = layout.reference_columns(grid, 1, "position")[0].tolist()
    assert set(range(16)) < set(widened)
    assert 16 in widened and 16 + 1 not in widened  # one patch column of the right neighbour, not two
    assert 48 in widened and 63 not in widened  # the diagonal tile: only its corner patch
