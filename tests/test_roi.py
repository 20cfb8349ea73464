"""The care area (``musc_online.roi``): from a mask PNG of any size or from polygons, laid over the squared frame, its
maximum, fingerprint and review veil, and the errors that say what is wrong and where."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from musc_online.batch import assemble_scores
from musc_online.roi import CareArea, care_fingerprint, care_only, care_text


def _png(path, array: np.ndarray):
    Image.fromarray(array).save(path)
    return path


def test_a_mask_png_of_any_size_lies_over_the_squared_frame_and_its_non_black_pixels_are_cared_for(tmp_path):
    mask = np.zeros((200, 400), np.uint8)  # a 2:1 frame, drawn at half its size
    mask[:, 200:] = 7  # the right half: any non-black value counts
    care = CareArea.from_png(_png(tmp_path / "care.png", mask), frame_size=(800, 400))
    square = care.at(8)
    assert square.shape == (8, 8)
    assert not square[:, :4].any() and square[:, 4:].all()  # squared as the backbone squares the whole frame
    assert care.share == pytest.approx(0.5)
    assert care_text(care.describe()) == f"care mask {tmp_path / 'care.png'}: 50.0 % of the frame"
    assert care_text(None) == "the whole frame"


def test_polygons_are_drawn_in_frame_pixels_and_their_union_is_the_care_area():
    left = [[0, 0], [50, 0], [50, 100], [0, 100]]
    bottom_right = [[150, 50], [200, 50], [200, 100], [150, 100]]
    care = CareArea.from_polygons([left, bottom_right], (200, 100))
    square = care.at(4)
    assert square.tolist() == [
        [True, False, False, False],
        [True, False, False, False],
        [True, False, False, True],
        [True, False, False, True],
    ]
    assert care.at(2, 8).shape == (2, 8)  # any map of the whole frame, not only squares


def test_the_maximum_counts_only_the_care_area_of_batch_scores():
    care = CareArea.from_polygons([[[0, 0], [50, 0], [50, 100], [0, 100]]], (100, 100))  # the left half
    pixels = np.zeros((4, 4))
    pixels[0, 3] = 9.0  # outside
    pixels[2, 1] = 2.0  # inside
    patch_maps = torch.from_numpy(np.stack([pixels, pixels * 0.5]))
    scores = assemble_scores(patch_maps, torch.eye(2), 4, care=care)
    assert scores.image_scores.tolist() == [2.0, 1.0]
    assert assemble_scores(patch_maps, torch.eye(2), 4).image_scores.tolist() == [9.0, 4.5]


def test_care_only_keeps_the_highest_cell_of_a_coarse_map_inside_even_a_small_care_area():
    care = CareArea.from_polygons([[[90, 90], [99, 90], [99, 99]]], (100, 100))  # a corner speck
    pixels = np.arange(16, dtype=float)[::-1].reshape(4, 4).copy()  # highest at the top left
    kept = care_only(pixels, care)
    assert np.unravel_index(np.argmax(kept), kept.shape) == (3, 3) and np.isinf(kept[0, 0])
    assert pixels[0, 0] == 15.0  # the map itself is left alone
    as_torch = care_only(torch.from_numpy(pixels), care)
    assert int(as_torch.argmax()) == 15 and care_only(None, care) is None and care_only(pixels, None) is pixels


def test_the_fingerprint_tells_care_areas_apart_and_the_whole_frame_has_none(tmp_path):
    left = [[[0, 0], [49, 0], [49, 99], [0, 99]]]  # PIL draws both edges: columns 0 to 49
    same = CareArea.from_polygons(left, (100, 100))
    mask = np.zeros((300, 300), np.uint8)
    mask[:, :150] = 255
    assert care_fingerprint(same) == care_fingerprint(CareArea.from_png(_png(tmp_path / "m.png", mask)))
    other = CareArea.from_polygons([[[50, 0], [100, 0], [100, 100], [50, 100]]], (100, 100))
    assert care_fingerprint(other) != care_fingerprint(same)
    assert care_fingerprint(None) is None


def test_the_veil_is_clear_over_the_care_area_dark_outside_with_an_edge(tmp_path):
    care = CareArea.from_polygons([[[20, 20], [80, 20], [80, 60], [20, 60]]], (100, 80))
    veil = care.veil()
    assert veil.shape == (80, 100, 4)
    assert veil[40, 50, 3] == 0  # inside: clear
    assert veil[5, 5, 3] > 100  # outside: dark
    assert tuple(veil[40, 20]) == (255, 220, 0, 255)  # the edge
    big = CareArea.from_polygons([[[0, 0], [3000, 0], [3000, 1000]]], (4000, 2000)).veil()
    assert big.shape == (512, 1024, 4)  # the page needs no more than this


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: CareArea.from_png(tmp / "missing.png"), r"care mask .*missing\.png does not exist"),
        (lambda tmp: CareArea.from_png(_text(tmp / "not.png")), r"care mask .*not\.png cannot be read as an image"),
        (lambda tmp: CareArea.from_png(_png(tmp / "black.png", np.zeros((8, 8), np.uint8))), r"black\.png.*empty"),
        (
            lambda tmp: CareArea.from_png(_png(tmp / "square.png", np.full((8, 8), 255, np.uint8)), (640, 480)),
            r"square\.png is 8 x 8 px, the frames 640 x 480 px: their aspects differ",
        ),
        (lambda tmp: CareArea.from_polygons([[[0, 0], [5, 5]]], (10, 10)), "polygon 0 has 2 point.s.: .* at least 3"),
        (
            lambda tmp: CareArea.from_polygons([[[0, 0], [5, 0], [5, 5]], [[0, 0], [11, 0], [5, 5]]], (10, 10)),
            r"polygon 1: point \[11, 0\] lies outside the 10 x 10 frame",
        ),
        (lambda tmp: CareArea.from_polygons([[[0, 0], [5, 0], [5, 5]]], (0, 10)), "frame size must be positive"),
        (
            lambda tmp: CareArea.from_polygons([[[0, 0], [1, 0], [1, 1]]], (1000, 1000)).at(8),
            "too small to keep any pixel at 8 x 8",
        ),
    ],
)
def test_bad_care_areas_are_refused_saying_what_and_where(tmp_path, make, message):
    with pytest.raises(ValueError, match=message):
        make(tmp_path)


def _text(path):
    path.write_text("not a picture")
    return path
