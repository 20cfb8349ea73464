"""The seven MuSc evaluation metrics, equal to the reference's to 1e-6 but fast on millions of pixels.

The reference (``utils/metrics.py`` of github.com/xrli-U/MuSc) calls scikit-learn on the raveled pixel
arrays and loops over 200 thresholds and every ground-truth region for PRO. Here one descending sort of
the scores serves AUROC, AP, F1-max and AUPRO, and PRO counts, per region and for the negative pixels,
how many scores exceed each threshold with one ``searchsorted`` and one ``bincount``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage import measure
from sklearn.metrics import auc

METRIC_KEYS: tuple[str, ...] = (
    "image_auroc",
    "image_f1",
    "image_ap",
    "pixel_auroc",
    "pixel_f1",
    "pixel_ap",
    "pro",
)
PIXEL_KEYS: tuple[str, ...] = ("pixel_auroc", "pixel_f1", "pixel_ap", "pro", "aupro_fpr30")  # None without masks


@dataclass(frozen=True)
class _SortedScores:
    """Scores in descending order, with the labels (or any per-item values) permuted alike."""

    order: np.ndarray  # indices that sort the raveled scores in descending order
    group_ends: np.ndarray  # index of the last item of each run of equal scores, ascending


def _sort_descending(scores: np.ndarray) -> _SortedScores:
    # The order inside a run of ties does not matter: every curve is read only at the runs' ends.
    order = np.argsort(scores)[::-1]
    sorted_scores = scores[order]
    group_ends = np.r_[np.flatnonzero(np.diff(sorted_scores)), sorted_scores.size - 1]
    return _SortedScores(order=order, group_ends=group_ends)


def _as_scores(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores).ravel()
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float64)
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinite values")
    return scores


def _ranking_from_sorted(labels: np.ndarray, ranked: _SortedScores) -> tuple[float, float, float]:
    """AUROC, F1-max and AP of boolean labels, reading the curves at each distinct score."""
    # tps/fps: positives/negatives scoring at least each distinct threshold, highest threshold first.
    tps = np.cumsum(labels[ranked.order], dtype=np.int64)[ranked.group_ends]
    fps = ranked.group_ends + 1 - tps
    n_pos, n_neg = int(tps[-1]), int(fps[-1])
    # Trapezoids over the ROC staircase, in exact integer arithmetic until the final division.
    d_fps = np.diff(fps, prepend=0)
    roc_area = int(np.sum(d_fps * (tps + np.r_[0, tps[:-1]])))
    auroc = roc_area / (2 * n_pos * n_neg)
    precision = tps / (tps + fps)
    recall = tps / n_pos
    ap = float(np.sum(np.diff(recall, prepend=0.0) * precision))
    with np.errstate(invalid="ignore"):
        f1 = 2 * precision * recall / (precision + recall)
    # scikit-learn's curve ends at (recall 0, precision 1), where F1 is 0: the max is never below 0.
    f1_max = float(np.max(f1[np.isfinite(f1)], initial=0.0))
    return float(auroc), f1_max, ap


def ranking_metrics(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float, float]:
    """(AUROC, F1-max, AP) of scores against binary labels, equal to scikit-learn's to 1e-9.

    Returns zeros when only one class is present, as the reference does for image labels.
    """
    labels = np.asarray(labels).ravel() != 0
    scores = _as_scores(scores)
    if labels.size != scores.size:
        raise ValueError(f"{labels.size} labels but {scores.size} scores")
    if labels.all() or not labels.any():
        return 0.0, 0.0, 0.0
    return _ranking_from_sorted(labels, _sort_descending(scores))


def _as_maps(masks: np.ndarray, amaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Masks as booleans (N, H, W) and maps as (N, H, W), dropping a channel axis of size 1."""
    masks, amaps = np.asarray(masks), np.asarray(amaps)
    if amaps.ndim == 4 and amaps.shape[1] == 1:
        amaps = amaps[:, 0]
    if masks.ndim == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if masks.ndim == 2:
        masks, amaps = masks[None], amaps[None]
    if masks.ndim != 3 or masks.shape != amaps.shape:
        raise ValueError(f"masks {masks.shape} and maps {amaps.shape} must both be (N, H, W)")
    if not np.isfinite(amaps).all():
        raise ValueError("anomaly maps contain NaN or infinite values")
    return masks != 0, amaps


def _label_regions(masks: np.ndarray) -> tuple[np.ndarray, int]:
    """Raveled region ids over all images (0 = normal pixel, 1..R = regions), and R.

    Regions are skimage's default labelling (8-connectivity in 2-D), as in the reference.
    """
    region_ids = np.zeros(masks.shape, dtype=np.int64)
    n_regions = 0
    for index, mask in enumerate(masks):
        labelled, count = measure.label(mask, return_num=True)
        region_ids[index] = np.where(labelled > 0, labelled + n_regions, 0)
        n_regions += count
    return region_ids.ravel(), n_regions


def _pro_from_regions(
    region_ids: np.ndarray, n_regions: int, scores: np.ndarray, max_step: int, expect_fpr: float
) -> float:
    min_th, max_th = scores.min(), scores.max()
    if n_regions == 0 or min_th == max_th or not (region_ids == 0).any():
        return 0.0
    # The reference's thresholds, bit for bit (np.arange of float32 scalars gives float64).
    thresholds = np.arange(min_th, max_th, (max_th - min_th) / max_step)
    common = np.result_type(thresholds.dtype, scores.dtype)
    # A pixel is above threshold j exactly when j < (number of thresholds below its score).
    n_below = np.searchsorted(thresholds.astype(common), scores.astype(common, copy=False), side="left")
    n_bins = thresholds.size + 1
    counts = np.bincount(region_ids * n_bins + n_below, minlength=(n_regions + 1) * n_bins)
    # above[r, j]: pixels of region r (row 0: normal pixels) scoring above threshold j.
    above = np.cumsum(counts.reshape(n_regions + 1, n_bins)[:, ::-1], axis=1)[:, ::-1][:, 1:]
    sizes = np.bincount(region_ids, minlength=n_regions + 1)
    pros = (above[1:] / sizes[1:, None]).mean(axis=0)
    fprs = above[0] / sizes[0]
    keep = fprs < expect_fpr
    kept_fprs, kept_pros = fprs[keep], pros[keep]
    if kept_fprs.size == 0:
        return 0.0
    if kept_fprs.min() == kept_fprs.max():  # no FPR range to rescale (e.g. a perfect map)
        return float(kept_pros.mean())
    kept_fprs = (kept_fprs - kept_fprs.min()) / (kept_fprs.max() - kept_fprs.min())
    return float(auc(kept_fprs, kept_pros))


def pro_score(masks: np.ndarray, amaps: np.ndarray, max_step: int = 200, expect_fpr: float = 0.3) -> float:
    """MuSc's PRO: mean region overlap over ``max_step`` equally spaced thresholds, FPR < ``expect_fpr``.

    The kept FPRs are min-max rescaled to [0, 1] before the trapezoid, exactly as ``cal_pro_score`` of
    the reference; see ``aupro`` for the MVTec AD definition. Where the reference fails or gives NaN:
    0 with no region, no normal pixel, a constant map or no threshold under the FPR limit, and the mean
    overlap when all kept thresholds share one FPR (a perfect map gives 1).
    """
    masks, amaps = _as_maps(masks, amaps)
    region_ids, n_regions = _label_regions(masks)
    return _pro_from_regions(region_ids, n_regions, amaps.ravel(), max_step, expect_fpr)


def _aupro_from_sorted(region_ids: np.ndarray, n_regions: int, ranked: _SortedScores, fpr_limit: float) -> float:
    if n_regions == 0 or not (region_ids == 0).any():
        return 0.0
    sizes = np.bincount(region_ids, minlength=n_regions + 1)
    # Lowering the threshold past a pixel adds 1/#normal to the FPR, or 1/(area * R) to the mean overlap.
    fpr_steps = np.r_[1.0 / sizes[0], np.zeros(n_regions)]
    pro_steps = np.r_[0.0, 1.0 / (sizes[1:] * n_regions)]
    ranked_ids = region_ids[ranked.order]
    fprs = np.r_[0.0, np.cumsum(fpr_steps[ranked_ids])[ranked.group_ends]]
    pros = np.r_[0.0, np.cumsum(pro_steps[ranked_ids])[ranked.group_ends]]
    # Integrate up to the limit exactly, interpolating the segment that crosses it.
    end = int(np.searchsorted(fprs, fpr_limit, side="right"))
    if end < fprs.size:
        x0, x1, y0, y1 = fprs[end - 1], fprs[end], pros[end - 1], pros[end]
        fprs = np.r_[fprs[:end], fpr_limit]
        pros = np.r_[pros[:end], y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)]
    return float(np.trapezoid(pros, fprs) / fpr_limit)


def aupro(masks: np.ndarray, amaps: np.ndarray, fpr_limit: float = 0.3) -> float:
    """Standard AUPRO (MVTec AD): area under the per-region-overlap curve for FPR in [0, limit], / limit.

    Unlike the reference ``pro``, the curve is exact (every distinct score is a threshold, not 200 of
    them), it starts at (0, 0), and the FPR axis is not rescaled, so a map that reaches FPR 0.3 only with
    low overlap scores lower here. A perfect map gives 1.0.
    """
    masks, amaps = _as_maps(masks, amaps)
    region_ids, n_regions = _label_regions(masks)
    return _aupro_from_sorted(region_ids, n_regions, _sort_descending(amaps.ravel()), fpr_limit)


def pixel_metrics(gt_px: np.ndarray, pr_px: np.ndarray) -> dict[str, float]:
    """Pixel AUROC, F1-max, AP, PRO and AUPRO (FPR 0.3) (``PIXEL_KEYS``), sharing one sort and one labelling."""
    masks, amaps = _as_maps(gt_px, pr_px)
    labels, scores = masks.ravel(), amaps.ravel()
    if labels.all() or not labels.any():
        return {"pixel_auroc": 0.0, "pixel_f1": 0.0, "pixel_ap": 0.0, "pro": 0.0, "aupro_fpr30": 0.0}
    ranked = _sort_descending(scores)
    region_ids, n_regions = _label_regions(masks)
    auroc_px, f1_px, ap_px = _ranking_from_sorted(labels, ranked)
    return {
        "pixel_auroc": auroc_px,
        "pixel_f1": f1_px,
        "pixel_ap": ap_px,
        "pro": _pro_from_regions(region_ids, n_regions, scores, max_step=200, expect_fpr=0.3),
        "aupro_fpr30": _aupro_from_sorted(region_ids, n_regions, ranked, fpr_limit=0.3),
    }


def compute_metrics(
    gt_sp: np.ndarray,
    pr_sp: np.ndarray,
    gt_px: np.ndarray,
    pr_px: np.ndarray,
    pixel_known: np.ndarray | None = None,
) -> dict[str, float | None]:
    """The reference's seven metrics (as fractions) plus ``aupro_fpr30``; keys ``METRIC_KEYS`` first.

    Image metrics are 0 when all labels are equal and pixel metrics 0 when no pixel is anomalous, as in
    the reference. ``pr_px`` may carry a channel axis of size 1, (N, 1, H, W). ``pixel_known`` says per
    image whether its pixel truth is known (normal images, defective ones with a mask; None: all): pixel
    metrics use only those images, and are None (not available, never 0) when no defective image has a mask.
    """
    image_auroc, image_f1, image_ap = ranking_metrics(gt_sp, pr_sp)
    image = {"image_auroc": image_auroc, "image_f1": image_f1, "image_ap": image_ap}
    if pixel_known is None:
        return {**image, **pixel_metrics(gt_px, pr_px)}
    known = np.asarray(pixel_known, dtype=bool)
    if not (known & (np.asarray(gt_sp).ravel() != 0)).any():
        return {**image, **dict.fromkeys(PIXEL_KEYS)}
    return {**image, **pixel_metrics(np.asarray(gt_px)[known], np.asarray(pr_px)[known])}
