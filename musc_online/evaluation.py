"""Batch evaluation of one dataset category: features, MuSc scores, metrics, optional heatmaps.

Shared by ``musc-online eval`` and the benchmarks; progress is reported through a callback so the
library stays free of terminal output.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from musc_online.backbones import Backbone
from musc_online.batch import BatchScores, assemble_scores, score_patches
from musc_online.datasets import Sample, load_image, load_mask, native_mask
from musc_online.heatmaps import normalise, save_png, side_by_side
from musc_online.metrics import compute_metrics
from musc_online.regions import RegionRecall, recall_by_size
from musc_online.roi import CareArea
from musc_online.settings import MuscSettings, TileSettings
from musc_online.tiling.batch import tiled_patch_maps
from musc_online.tiling.layout import TileLayout
from musc_online.tiling.views import FrameViews, ViewExtractor
from musc_online.timing import Stopwatch

Progress = Callable[[int], None]


@dataclass
class Features:
    """Backbone output for a whole set: per-layer (N, C, H, W) maps and (N, D) image features; with tiles, per-layer
    (N, T, C, H, W) tile maps and the layout they were cut by."""

    layer_maps: list[torch.Tensor]
    image_features: torch.Tensor
    tile_maps: list[torch.Tensor] | None = None
    layout: TileLayout | None = None

    def subset(self, index: Sequence[int]) -> Features:
        """The features of the images at ``index`` (in that order)."""
        idx = torch.as_tensor(list(index), dtype=torch.long, device=self.image_features.device)
        return Features([m.index_select(0, idx) for m in self.layer_maps], self.image_features.index_select(0, idx))


@dataclass
class CategoryResult:
    """Scores and figures of one evaluated category."""

    category: str
    samples: list[Sample]
    scores: BatchScores
    metrics: dict[str, float | None]  # pixel metrics None where the category has no masks
    seconds: dict[str, float] = field(default_factory=dict)
    recall_by_size: RegionRecall | None = None  # None where the category has no masks

    def report(self) -> dict[str, object]:
        """The figures for a JSON report: metrics (None: not available), recall by size, seconds, images."""
        recall = None if self.recall_by_size is None else self.recall_by_size.as_dict()
        return {**self.metrics, "recall_by_size": recall, "seconds": self.seconds, "images": len(self.samples)}


def extract_features(
    backbone: Backbone,
    paths: Sequence[Path],
    device: torch.device,
    batch_size: int = 8,
    progress: Progress | None = None,
    tiles: TileSettings = TileSettings(),
) -> Features:
    """Run the backbone over image files in batches, with their tiles when ``tiles`` are on; features stay on
    ``device`` (half precision on CUDA)."""
    keep = torch.float16 if device.type == "cuda" else torch.float32
    extractor = ViewExtractor(backbone, tiles)
    views: list[FrameViews] = []
    for start in range(0, len(paths), batch_size):
        batch = [load_image(p) for p in paths[start : start + batch_size]]
        views.extend(extractor.extract(batch, device))
        if progress:
            progress(len(batch))
    if not views:
        raise ValueError("no images to extract features from")
    layers = [torch.cat(parts).to(keep) for parts in zip(*(v.layer_maps for v in views), strict=True)]
    image_features = torch.stack([v.image_feature.float() for v in views])
    if extractor.layout is None:
        return Features(layers, image_features)
    tile_maps = [torch.stack(parts).to(keep) for parts in zip(*(v.tile_maps for v in views), strict=True)]
    return Features(layers, image_features, tile_maps, extractor.layout)


def split_subsets(count: int, divide_num: int, seed: int = 0) -> list[np.ndarray]:
    """Indices of ``divide_num`` shuffled, near-equal subsets (the reference's ``divide_num``); 1 = all."""
    if divide_num < 1 or divide_num > count // 2:
        raise ValueError(f"divide_num must be between 1 and {count // 2} for {count} images, got {divide_num}")
    if divide_num == 1:
        return [np.arange(count)]
    order = np.random.default_rng(seed).permutation(count)
    return [np.sort(part) for part in np.array_split(order, divide_num)]


def score_subsets(
    features: Features,
    image_size: int,
    settings: MuscSettings,
    divide_num: int = 1,
    care: CareArea | None = None,
    tiles: TileSettings = TileSettings(),
    progress: Progress | None = None,
) -> BatchScores:
    """MuSc with each image scored only against its own subset; RsCIN then runs over the whole set (image scores
    over the ``care`` area when one is given). With tile features, each image's tiles are scored against all the
    other images' (``tiling.batch``) and the maps are at least the stitched map's size.

    RsCIN is image-level and cheap, and sees the most neighbours over the whole set.
    """
    if features.tile_maps is not None and divide_num > 1:
        raise ValueError("tiles score every image against all the others: divide_num must be 1 with tiles")
    count = features.image_features.shape[0]
    patch_maps = None
    for index in split_subsets(count, divide_num):
        part = score_patches(features.subset(index).layer_maps, settings)
        if patch_maps is None:
            patch_maps = torch.empty((count, *part.shape[1:]), dtype=part.dtype)
        patch_maps[torch.from_numpy(index)] = part
    if features.tile_maps is not None:
        patch_maps = tiled_patch_maps(patch_maps, features.tile_maps, features.layout, settings, tiles, progress)
        image_size = max(image_size, *patch_maps.shape[1:])
    return assemble_scores(patch_maps, features.image_features, image_size, settings.k_list, care)


def evaluate_category(
    samples: Sequence[Sample],
    backbone: Backbone,
    settings: MuscSettings,
    device: torch.device,
    batch_size: int = 8,
    divide_num: int = 1,
    progress: Progress | None = None,
    region_fpr: float = 0.01,
    care: CareArea | None = None,
    tiles: TileSettings = TileSettings(),
    tile_progress: Progress | None = None,
) -> CategoryResult:
    """Score one category's test samples as a batch and compute the seven metrics and the recall of defect
    regions by size at the pixel false-alarm rate ``region_fpr`` (``regions``); times each stage.

    Pixel figures use the images whose pixel truth is known (normal ones, defective ones with a mask) and
    are None when no defective image has a mask. With a ``care`` area (``roi``), image scores come from it alone.
    With ``tiles`` on, the maps are the whole image's fused with its tiles' (``tiling``); ``tile_progress`` is told
    of the tiles' scoring steps (``tiling.batch.tile_steps``).
    """
    watch = Stopwatch(device)
    features = extract_features(backbone, [s.path for s in samples], device, batch_size, progress, tiles)
    watch.lap("features")
    scores = score_subsets(features, backbone.image_size, settings, divide_num, care, tiles, tile_progress)
    watch.lap("scoring")
    labels = np.array([s.label for s in samples])
    known = np.array([s.label == 0 or s.mask_path is not None for s in samples])
    masks = np.stack([load_mask(s.mask_path, scores.anomaly_maps.shape[-1]) for s in samples])
    maps = scores.anomaly_maps.numpy()
    metrics = compute_metrics(labels, scores.rscin_scores.numpy(), masks, maps, pixel_known=known)
    recall = None
    if metrics["pixel_auroc"] is not None:
        index = np.flatnonzero(known)
        recall = recall_by_size([native_mask(samples[i]) for i in index], maps[index], region_fpr)
    watch.lap("metrics")
    return CategoryResult(samples[0].category, list(samples), scores, metrics, watch.laps, recall)


def export_heatmaps(result: CategoryResult, out_dir: str | Path, normalisation: str = "image") -> list[Path]:
    """Save each image beside its heatmap overlay as PNG under ``out_dir/<category>/<defect type>/``.

    ``normalisation`` "image" stretches each map to its own range (shows where, in every image);
    "set" uses one range for the whole category (shows how strong, comparably across images).
    """
    if normalisation not in ("image", "set"):
        raise ValueError(f"heatmap normalisation must be 'image' or 'set', got {normalisation!r}")
    maps = result.scores.anomaly_maps.numpy()
    set_range = (float(maps.min()), float(maps.max()))
    written = []
    for sample, amap in zip(result.samples, maps, strict=True):
        low, high = (float(amap.min()), float(amap.max())) if normalisation == "image" else set_range
        picture = side_by_side(load_image(sample.path), normalise(amap, low, high))
        written.append(
            save_png(picture, Path(out_dir) / sample.category / sample.defect_type / f"{sample.path.stem}.png")
        )
    return written
