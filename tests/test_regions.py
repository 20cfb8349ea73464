"""Recall of defect regions by size: the threshold at a false-alarm rate, the half-the-pixels rule, the thirds,
the native resolution, and the real metal_plate masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from musc_online.datasets import list_samples, native_mask
from musc_online.regions import recall_by_size, threshold_at_fpr


def test_threshold_leaves_the_asked_share_of_normal_pixels_above_it() -> None:
    scores = np.random.default_rng(0).permutation(100).astype(float)
    assert threshold_at_fpr(scores, 0.05) == 94.0  # 95..99 lie above: 5 %
    assert threshold_at_fpr(scores, 0.0) == 99.0
    ties = np.r_[np.zeros(90), np.ones(10)]
    assert threshold_at_fpr(ties, 0.05) == 1.0  # no threshold splits the tie: nothing above rather than 10 %
    with pytest.raises(ValueError, match="in \\[0, 1\\)"):
        threshold_at_fpr(scores, 1.0)


def _square(mask: np.ndarray, y: int, x: int, side: int) -> tuple[slice, slice]:
    where = (slice(y, y + side), slice(x, x + side))
    mask[where] = True
    return where


def test_regions_are_binned_in_thirds_by_area_and_found_by_half_their_pixels() -> None:
    mask = np.zeros((40, 40), bool)
    amap = np.zeros((40, 40), np.float32)
    _square(mask, 1, 1, 1)  # two of area 1, scored like the background: missed
    _square(mask, 1, 5, 1)
    middle = [_square(mask, 10, 1, 2), _square(mask, 10, 10, 3)]  # areas 4 and 9
    large = [_square(mask, 20, 1, 4), _square(mask, 20, 20, 5)]  # areas 16 and 25
    amap[middle[0]] = 1.0  # all 4 pixels above
    amap[10, 10:13] = 1.0  # 3 of 9 pixels above: less than half, missed
    amap[large[0]] = 1.0
    amap[20:23, 20:25] = 1.0  # 15 of 25 pixels above
    amap[39, 39] = 0.5  # one normal pixel above 0: the threshold at 1 % of the 1,544 normal pixels stays 0
    recall = recall_by_size([mask], [amap], fpr=0.01)
    assert recall is not None and recall.threshold == 0.0
    assert recall.normal_pixels == 1600 - 56 and recall.observed_fpr == pytest.approx(1 / 1544)
    assert [(b.area_min, b.area_max, b.regions, b.found) for b in recall.bins] == [
        (1, 1, 2, 0),
        (4, 9, 2, 1),
        (16, 25, 2, 2),
    ]
    assert [b.recall for b in recall.bins] == [0.0, 0.5, 1.0]
    figures = recall.as_dict()
    assert figures["bins"][1]["recall"] == 0.5 and "native" in figures["resolution"]


def test_maps_are_upsampled_to_the_native_mask_and_areas_stay_native() -> None:
    mask = np.zeros((8, 8), bool)
    mask[0:2, 0:2] = True  # one 4-pixel region, one cell of a 4 x 4 map
    amap = np.zeros((4, 4), np.float32)
    amap[0, 0] = 1.0
    good_mask, good_map = np.zeros((8, 8), bool), np.zeros((4, 4), np.float32)
    recall = recall_by_size([mask, good_mask], [amap, good_map], fpr=0.05)
    assert recall is not None and recall.normal_pixels == 124
    assert [(b.area_min, b.regions, b.found) for b in recall.bins if b.regions] == [(4, 1, 1)]
    assert [b.recall for b in recall.bins] == [1.0, None, None]  # one region: the other thirds are empty


def test_no_region_means_not_available() -> None:
    assert recall_by_size([np.zeros((4, 4), bool)], [np.ones((4, 4))]) is None
    with pytest.raises(ValueError, match="1 masks but 2 maps"):
        recall_by_size([np.zeros((4, 4), bool)], [np.ones((4, 4))] * 2)


def _coarse(mask: np.ndarray, size: int) -> np.ndarray:
    """A perfect map seen at ``size`` px: the mask averaged down (as a low input resolution would)."""
    return np.asarray(Image.fromarray(mask.astype(np.float32), mode="F").resize((size, size), Image.Resampling.BOX))


@pytest.mark.realdata
def test_metal_plate_small_defects_vanish_from_a_coarse_map(mpdd_root: Path) -> None:
    masks = [native_mask(s) for s in list_samples(mpdd_root, "mvtec", "metal_plate")]
    native = recall_by_size(masks, [m.astype(np.float32) for m in masks])
    assert native is not None and [b.recall for b in native.bins] == [1.0, 1.0, 1.0]
    assert sum(b.regions for b in native.bins) == 123 and native.bins[0].area_min == 1
    assert native.bins[2].area_max <= 512 * 512
    coarse = recall_by_size(masks, [_coarse(m, 16) for m in masks])
    assert coarse is not None and abs(coarse.observed_fpr - 0.01) < 1e-3
    smallest, _, largest = (b.recall for b in coarse.bins)
    assert largest == 1.0 and smallest < 0.5
