#!/usr/bin/env python3
"""Time batch MuSc: backbone, then LNAMD + MSM + map assembly ("features to maps"), per image.

Two ways to run it:
- real images: ``--root ../shared/data/mvtec_ad --category bottle --backbone efficientnet_lite0 --size 320``
  scores the category's test set (the CPU target: features to maps within 60 s on 2 cores);
- paper settings on a GPU: ``--backbone ViT-L-14-336 --random-weights --size 518 --images 200``
  uses synthetic images and a random-init ViT-L (timing only: the scores mean nothing).
Prints a summary and, with ``--json``, writes the figures with the machine and settings.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from bench_common import add_model_arguments, machine, model_from_arguments, report

from musc_online.batch import score_patches
from musc_online.datasets import list_samples, load_image
from musc_online.evaluation import Features, extract_features
from musc_online.settings import MuscSettings


def synthetic_features(backbone, count: int, batch_size: int, device: torch.device) -> Features:
    """Backbone features of ``count`` random-noise images (shapes and timing are what matters here)."""
    rng = np.random.default_rng(0)
    pool = [rng.integers(0, 256, size=(backbone.image_size, backbone.image_size, 3), dtype=np.uint8) for _ in range(8)]
    layers, image_features = None, []
    keep = torch.float16 if device.type == "cuda" else torch.float32
    for start in range(0, count, batch_size):
        out = backbone.extract([pool[i % len(pool)] for i in range(start, min(start + batch_size, count))], device)
        layers = [[] for _ in out.patch_features] if layers is None else layers
        for store, grid in zip(layers, out.patch_features, strict=True):
            store.append(grid.to(keep))
        image_features.append(out.image_features.float())
    return Features([torch.cat(s) for s in layers], torch.cat(image_features))


def timed(device: torch.device, work):
    """Run ``work()`` and return (result, seconds), synchronising CUDA around it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    result = work()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return result, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    parser.add_argument("--root", type=Path, help="dataset root with real images (else synthetic images)")
    parser.add_argument("--layout", default="mvtec")
    parser.add_argument("--category", default="bottle")
    parser.add_argument("--images", type=int, default=200, help="set size N for synthetic images")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args(argv)

    backbone, device, r_list = model_from_arguments(args)
    size = backbone.image_size
    settings = MuscSettings(r_list=r_list)

    if args.root:
        paths = [s.path for s in list_samples(args.root, args.layout, args.category)]
        load_image(paths[0])  # warm the decoder outside the timing
        features, backbone_s = timed(device, lambda: extract_features(backbone, paths, device, args.batch_size))
    else:
        synthetic_features(backbone, args.batch_size, args.batch_size, device)  # warm-up (cuDNN, allocator)
        features, backbone_s = timed(device, lambda: synthetic_features(backbone, args.images, args.batch_size, device))
    count = features.image_features.shape[0]
    score_patches([m[:4] for m in features.layer_maps], settings)  # warm-up
    _, scoring_s = timed(device, lambda: score_patches(features.layer_maps, settings))

    figures = {
        "machine": machine(device),
        "settings": {
            "backbone": backbone.name,
            "image_size": size,
            "layers": list(backbone.layers),
            "r_list": list(settings.r_list),
            "images": count,
            "source": f"{args.root}/{args.category}" if args.root else "synthetic",
            "grids": [list(m.shape[1:]) for m in features.layer_maps],
        },
        "seconds": {"backbone": backbone_s, "features_to_maps": scoring_s},
        "ms_per_image": {
            "backbone": 1e3 * backbone_s / count,
            "features_to_maps": 1e3 * scoring_s / count,
            "total": 1e3 * (backbone_s + scoring_s) / count,
        },
    }
    report(figures, device, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
