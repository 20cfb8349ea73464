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
from musc_online.datasets import Sample, load_image, load_mask
from musc_online.heatmaps import normalise, save_png, side_by_side
from musc_online.metrics import compute_metrics
from musc_online.settings import MuscSettings
from musc_online.timing import Stopwatch

Progress = Callable[[int], None]


@dataclass
class Features:
    """Backbone output for a whole set: per-layer (N, C, H, W) maps and (N, D) image features."""

    layer_maps: list[torch.Tensor]
    image_features: torch.Tensor

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
    metrics: dict[str, float]
    seconds: dict[str, float] = field(default_factory=dict)


def extract_features(
    backbone: Backbone,
    paths: Sequence[Path],
    device: torch.device,
    batch_size: int = 8,
    progress: Progress | None = None,
) -> Features:
    """Run the backbone over image files in batches; features stay on ``device`` (half precision on CUDA)."""
    keep = torch.float16 if device.type == "cuda" else torch.float32
    layers: list[list[torch.Tensor]] | None = None
    image_features = []
    for start in range(0, len(paths), batch_size):
        batch = [load_image(p) for p in paths[start : start + batch_size]]
        out = backbone.extract(batch, device)
        if layers is None:
            layers = [[] for _ in out.patch_features]
        for store, grid in zip(layers, out.patch_features, strict=True):
            store.append(grid.to(keep))
        image_features.append(out.image_features.float())
        if progress:
            progress(len(batch))
    assert layers is not None, "no images to extract features from"
    return Features([torch.cat(store) for store in layers], torch.cat(image_features))


def split_subsets(count: int, divide_num: int, seed: int = 0) -> list[np.ndarray]:
    """Indices of ``divide_num`` shuffled, near-equal subsets (the reference's ``divide_num``); 1 = all."""
    if divide_num < 1 or divide_num > count // 2:
        raise ValueError(f"divide_num must be between 1 and {count // 2} for {count} images, got {divide_num}")
    if divide_num == 1:
        return [np.arange(count)]
    order = np.random.default_rng(seed).permutation(count)
    return [np.sort(part) for part in np.array_split(order, divide_num)]


def score_subsets(features: Features, image_size: int, settings: MuscSettings, divide_num: int = 1) -> BatchScores:
    """MuSc with each image scored only against its own subset; RsCIN then runs over the whole set.

    RsCIN is image-level and cheap, and sees the most neighbours over the whole set.
    """
    count = features.image_features.shape[0]
    patch_maps = None
    for index in split_subsets(count, divide_num):
        part = score_patches(features.subset(index).layer_maps, settings)
        if patch_maps is None:
            patch_maps = torch.empty((count, *part.shape[1:]), dtype=part.dtype)
        patch_maps[torch.from_numpy(index)] = part
    return assemble_scores(patch_maps, features.image_features, image_size, settings.k_list)


def evaluate_category(
    samples: Sequence[Sample],
    backbone: Backbone,
    settings: MuscSettings,
    device: torch.device,
    batch_size: int = 8,
    divide_num: int = 1,
    progress: Progress | None = None,
) -> CategoryResult:
    """Score one category's test samples as a batch and compute the seven metrics; times each stage."""
    watch = Stopwatch(device)
    features = extract_features(backbone, [s.path for s in samples], device, batch_size, progress)
    watch.lap("features")
    scores = score_subsets(features, backbone.image_size, settings, divide_num)
    watch.lap("scoring")
    labels = np.array([s.label for s in samples])
    masks = np.stack([load_mask(s.mask_path, backbone.image_size) for s in samples])
    metrics = compute_metrics(labels, scores.rscin_scores.numpy(), masks, scores.anomaly_maps.numpy())
    watch.lap("metrics")
    return CategoryResult(samples[0].category, list(samples), scores, metrics, watch.laps)


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
