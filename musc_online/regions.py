"""Recall of defect regions by size: which share of small, middle and large defects a map finds.

Pixel AUROC and PRO are dominated by the large defects; a change that helps only the small ones (tiling at
native resolution) hardly moves them. Here every connected component of the ground-truth masks (8-connected,
as PRO labels them) is one region, measured at the mask's native resolution: the anomaly maps, at the
model's input size, are upsampled bilinearly (Pillow, pixel centres aligned) to each mask's own size, never
the masks shrunk, so a defect a few pixels wide keeps its true area. The regions of a category are sorted by
area and split into thirds by rank (smallest, middle, largest; ties may straddle a border, so each bin states
its area range). A region is found when at least half of its pixels score above one pixel threshold for the
whole test set: the score above which a share ``fpr`` of its normal pixels lie (pixels outside every mask,
good images included).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image
from skimage import measure

BIN_NAMES: tuple[str, ...] = ("smallest third", "middle third", "largest third")
FOUND_SHARE = 0.5  # a region is found when at least this share of its pixels is above the threshold


@dataclass(frozen=True)
class SizeBin:
    """One third of the regions by area: its area range in native pixels, how many there are and were found."""

    name: str
    area_min: int | None
    area_max: int | None
    regions: int
    found: int

    @property
    def recall(self) -> float | None:
        """found / regions; None for an empty bin (fewer than three regions in the category)."""
        return self.found / self.regions if self.regions else None


@dataclass(frozen=True)
class RegionRecall:
    """Recall by size at one pixel threshold, and the false-alarm rate that threshold gives."""

    fpr: float  # asked for
    observed_fpr: float  # share of normal pixels strictly above the threshold
    threshold: float
    normal_pixels: int
    bins: tuple[SizeBin, ...]

    def as_dict(self) -> dict[str, object]:
        """For the JSON reports: the figures plus each bin's recall."""
        figures = asdict(self)
        figures["bins"] = [{**asdict(b), "recall": b.recall} for b in self.bins]
        figures["resolution"] = "native mask size (maps upsampled bilinearly)"
        return figures


def upsample_map(amap: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A float map resized bilinearly to (H, W) = ``shape``, float32."""
    amap = np.asarray(amap, dtype=np.float32)
    if amap.shape == shape:
        return amap
    return np.asarray(Image.fromarray(amap, mode="F").resize(shape[::-1], Image.Resampling.BILINEAR))


def threshold_at_fpr(normal_scores: np.ndarray, fpr: float) -> float:
    """The lowest score t with at most a share ``fpr`` of ``normal_scores`` strictly above t."""
    if not 0.0 <= fpr < 1.0:
        raise ValueError(f"the false-alarm rate must be in [0, 1), got {fpr}")
    scores = np.asarray(normal_scores).ravel()
    if scores.size == 0:
        raise ValueError("no normal pixels to set a threshold on")
    rank = int(np.ceil((1.0 - fpr) * scores.size)) - 1  # 0-based: at least (1 - fpr) * n scores are <= t
    rank = min(max(rank, 0), scores.size - 1)
    return float(np.partition(scores, rank)[rank])


def recall_by_size(masks: Sequence[np.ndarray], maps: Sequence[np.ndarray], fpr: float = 0.01) -> RegionRecall | None:
    """Recall of the masks' regions in size thirds at the threshold giving ``fpr`` on the normal pixels.

    ``masks``: bool (H_i, W_i) per image at native resolution (all False for a good image); ``maps``: the
    anomaly maps at any size, upsampled to each mask. None (not available) when no mask has a region.
    """
    if len(masks) != len(maps):
        raise ValueError(f"{len(masks)} masks but {len(maps)} maps")
    normal, areas, above = [], [], []
    for mask, amap in zip(masks, maps, strict=True):
        mask = np.asarray(mask, dtype=bool)
        scores = upsample_map(amap, mask.shape)
        normal.append(scores[~mask])
        labelled, count = measure.label(mask, return_num=True)
        if count:  # keep only the regions' own pixels: their ids and scores
            ids = labelled[mask]
            areas.append(np.bincount(ids, minlength=count + 1)[1:])
            above.append((ids, scores[mask], count))
    if not areas:
        return None
    normal_scores = np.concatenate(normal)
    threshold = threshold_at_fpr(normal_scores, fpr)
    found = np.concatenate(
        [np.bincount(ids, weights=scores > threshold, minlength=count + 1)[1:] for ids, scores, count in above]
    )
    area = np.concatenate(areas)
    is_found = found >= FOUND_SHARE * area
    order = np.argsort(area, kind="stable")
    bins = []
    for name, part in zip(BIN_NAMES, np.array_split(order, len(BIN_NAMES)), strict=True):
        sizes = area[part]
        bins.append(
            SizeBin(
                name,
                int(sizes.min()) if part.size else None,
                int(sizes.max()) if part.size else None,
                int(part.size),
                int(is_found[part].sum()),
            )
        )
    return RegionRecall(fpr, float((normal_scores > threshold).mean()), threshold, int(normal_scores.size), tuple(bins))
