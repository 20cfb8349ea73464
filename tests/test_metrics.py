"""Metrics: parity with the MuSc reference (golden figures, scikit-learn, a port of its PRO loop)."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import measure
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_auc_score

from musc_online.metrics import (
    METRIC_KEYS,
    PIXEL_KEYS,
    aupro,
    compute_metrics,
    pixel_metrics,
    pro_score,
    ranking_metrics,
)


def reference_pro(masks: np.ndarray, amaps: np.ndarray, max_step: int = 200, expect_fpr: float = 0.3) -> float:
    """``cal_pro_score`` of the MuSc reference, line for line: the slow oracle for the fast version."""
    binary_amaps = np.zeros_like(amaps, dtype=bool)
    min_th, max_th = amaps.min(), amaps.max()
    delta = (max_th - min_th) / max_step
    pros, fprs = [], []
    for th in np.arange(min_th, max_th, delta):
        binary_amaps[amaps <= th], binary_amaps[amaps > th] = 0, 1
        pro = []
        for binary_amap, mask in zip(binary_amaps, masks, strict=True):
            for region in measure.regionprops(measure.label(mask)):
                tp_pixels = binary_amap[region.coords[:, 0], region.coords[:, 1]].sum()
                pro.append(tp_pixels / region.area)
        inverse_masks = 1 - masks
        fp_pixels = np.logical_and(inverse_masks, binary_amaps).sum()
        pros.append(np.array(pro).mean())
        fprs.append(fp_pixels / inverse_masks.sum())
    pros_arr, fprs_arr = np.array(pros), np.array(fprs)
    idxes = fprs_arr < expect_fpr
    kept = fprs_arr[idxes]
    kept = (kept - kept.min()) / (kept.max() - kept.min())
    return auc(kept, pros_arr[idxes])


def reference_ranking(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float, float]:
    """The reference's AUROC, F1-max and AP through scikit-learn."""
    precisions, recalls, _ = precision_recall_curve(labels, scores)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = 2 * precisions * recalls / (precisions + recalls)
    return roc_auc_score(labels, scores), np.max(f1[np.isfinite(f1)]), average_precision_score(labels, scores)


def random_maps(seed: int, n: int = 4, size: int = 24, dtype: type = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Blobby masks (several regions, some images clean) and maps correlated with them, with many ties."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), dtype=np.int32)
    for index in range(n - 1):
        for _ in range(rng.integers(1, 4)):
            y, x, h, w = rng.integers(0, size - 4, 2).tolist() + rng.integers(1, 6, 2).tolist()
            masks[index, y : y + h, x : x + w] = 1
    noise = np.round(rng.random(masks.shape) * 20) / 20  # 21 levels: many ties
    amaps = (noise + 0.6 * masks * rng.random(masks.shape)).astype(dtype)
    return masks, amaps


def test_golden_parity(golden: dict[str, np.ndarray]) -> None:
    result = compute_metrics(golden["gt_sp"], golden["rscin"], golden["gt_px"], golden["anomaly_map_upsampled"])
    assert tuple(result)[: len(METRIC_KEYS)] == METRIC_KEYS
    np.testing.assert_allclose([result[key] for key in METRIC_KEYS], golden["metrics"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("seed", range(6))
def test_ranking_equals_sklearn_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.random(5000) < 0.1
    scores = np.round(rng.random(5000) + 0.3 * labels, 2 if seed % 2 else 6).astype(np.float32)
    np.testing.assert_allclose(ranking_metrics(labels, scores), reference_ranking(labels, scores), rtol=0, atol=1e-9)


@pytest.mark.parametrize(("seed", "dtype"), [(0, np.float32), (1, np.float32), (2, np.float64), (3, np.float32)])
def test_pro_equals_reference_loop(seed: int, dtype: type) -> None:
    masks, amaps = random_maps(seed, dtype=dtype)
    assert pro_score(masks, amaps) == pytest.approx(reference_pro(masks, amaps), abs=1e-12)
    assert pro_score(masks, amaps, max_step=37, expect_fpr=0.5) == pytest.approx(
        reference_pro(masks, amaps, max_step=37, expect_fpr=0.5), abs=1e-12
    )


def test_pixel_metrics_agree_with_single_functions() -> None:
    masks, amaps = random_maps(7)
    combined = pixel_metrics(masks, amaps[:, None])
    ranking = (combined["pixel_auroc"], combined["pixel_f1"], combined["pixel_ap"])
    assert ranking == ranking_metrics(masks, amaps)
    assert combined["pro"] == pro_score(masks, amaps)
    assert combined["aupro_fpr30"] == aupro(masks, amaps)


def test_degenerate_inputs_give_zeros_like_reference() -> None:
    masks, amaps = random_maps(1)
    all_normal = compute_metrics(np.zeros(4), np.arange(4.0), masks, amaps)
    assert (all_normal["image_auroc"], all_normal["image_f1"], all_normal["image_ap"]) == (0.0, 0.0, 0.0)
    assert all_normal["pixel_auroc"] > 0.5
    no_defect_pixels = compute_metrics(np.array([0, 1, 0, 1]), np.arange(4.0), np.zeros_like(masks), amaps)
    assert no_defect_pixels["image_auroc"] == 0.75
    assert all(no_defect_pixels[key] == 0.0 for key in ("pixel_auroc", "pixel_f1", "pixel_ap", "pro", "aupro_fpr30"))


def test_pixel_metrics_without_masks_are_not_available_and_unknown_images_are_left_out() -> None:
    masks, amaps = random_maps(2)  # images 0..2 have regions, image 3 is clean
    labels, scores = np.array([1, 1, 1, 0]), np.array([0.9, 0.8, 0.7, 0.1])
    none_known = compute_metrics(labels, scores, np.zeros_like(masks), amaps, pixel_known=np.array([0, 0, 0, 1]))
    assert all(none_known[key] is None for key in PIXEL_KEYS)
    assert none_known["image_auroc"] == 1.0
    known = np.array([1, 0, 1, 1], dtype=bool)  # image 1's mask is unknown: its pixels are no evidence
    partly = compute_metrics(labels, scores, masks * known[:, None, None], amaps, pixel_known=known)
    assert {key: partly[key] for key in PIXEL_KEYS} == pixel_metrics(masks[known], amaps[known])


def test_nan_scores_are_refused() -> None:
    with pytest.raises(ValueError, match="NaN"):
        ranking_metrics(np.array([0, 1]), np.array([0.1, np.nan]))


def test_aupro_hand_checked_cases() -> None:
    masks = np.zeros((1, 10, 10), dtype=bool)
    masks[0, 2:4, 2:4] = True  # region A, 4 pixels
    masks[0, 6:9, 6:9] = True  # region B, 9 pixels
    perfect = masks.astype(np.float32)
    assert aupro(masks, perfect) == pytest.approx(1.0)
    assert aupro(masks, 1.0 - perfect) == pytest.approx(0.0)
    # Region A found perfectly, region B scored with the normal pixels: overlap 0.5 until B's pixels
    # turn positive together with the normal ones (FPR 0 -> 1, overlap 0.5 -> 1 linearly), so the area
    # over FPR [0, 0.3] is 0.3 * 0.5 + 0.3 * 0.3 * 0.5 / 2 and AUPRO = 0.5 + 0.075.
    half = np.zeros_like(perfect)
    half[0, 2:4, 2:4] = 1.0
    assert aupro(masks, half) == pytest.approx(0.575)
    # The reference PRO rescales the kept FPRs and uses 200 thresholds: 1.0 for a perfect map as well.
    assert pro_score(masks, perfect) == pytest.approx(1.0)
