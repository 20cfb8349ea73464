#!/usr/bin/env python3
"""Time the online scorer per frame: latency p50/p99 per stage and frames per second, with a full window.

The window is filled first (W frames, admission "all"), then ``--frames`` more are timed, singly or in
micro-batches. Examples:
- 2 CPU cores: ``--backbone efficientnet_lite0 --size 256 --window 64 --device cpu --threads 2``
  (real bottle images with ``--root ../shared/data/mvtec_ad``, else synthetic images);
- tiles: ``--tiles 3`` (3 x 3 at the images' native size, position mode) or ``--tiles 2 --tile-mode pooled``;
- a GPU at paper settings: ``--backbone ViT-L-14-336 --random-weights --size 518 --window 200 --micro-batch 8``
  (random-init ViT-L: timing only).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np
from bench_common import add_model_arguments, machine, model_from_arguments, report

from musc_online.datasets import list_samples, load_image
from musc_online.online.scorer import OnlineScorer
from musc_online.online.settings import OnlineSettings
from musc_online.replay import latency_summary
from musc_online.settings import MuscSettings, TileSettings


def image_source(root: Path | None, category: str, size: int) -> itertools.cycle:
    """Endless frames: a category's test images, or random-noise images of the model's size."""
    if root:
        images = [load_image(s.path) for s in list_samples(root, "mvtec", category)]
    else:
        rng = np.random.default_rng(0)
        images = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(16)]
    return itertools.cycle(images)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    parser.add_argument("--root", type=Path, help="MVTec-layout root for real frames (else synthetic)")
    parser.add_argument("--category", default="bottle")
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--judges-per-frame", type=int, default=0)
    parser.add_argument("--frames", type=int, default=64, help="frames timed after the window is full")
    parser.add_argument("--micro-batch", type=int, default=1)
    parser.add_argument("--tiles", type=int, default=0, help="tiles per side besides the whole frame (0: none)")
    parser.add_argument("--tile-mode", default="position", help="position or pooled")
    args = parser.parse_args(argv)

    backbone, device, r_list = model_from_arguments(args)
    size = backbone.image_size
    settings = OnlineSettings(
        window=args.window,
        judges_per_frame=args.judges_per_frame,
        admission="all",
        musc=MuscSettings(r_list=r_list),
        history=max(args.micro_batch, 4),
        tiles=TileSettings(grid=args.tiles, mode=args.tile_mode),
    )
    scorer = OnlineScorer(backbone, settings, device)
    frames = image_source(args.root, args.category, size)

    fill_start = time.perf_counter()
    for start in range(0, args.window, args.micro_batch):
        count = min(args.micro_batch, args.window - start)
        scorer.score_many([next(frames) for _ in range(count)], [None] * count)
    fill_s = time.perf_counter() - fill_start

    decisions = []
    started = time.perf_counter()
    while len(decisions) < args.frames:
        decisions += scorer.score_many([next(frames) for _ in range(args.micro_batch)], [None] * args.micro_batch)
    elapsed = time.perf_counter() - started

    figures = {
        "machine": machine(device),
        "settings": {
            "backbone": backbone.name,
            "image_size": size,
            "layers": list(backbone.layers),
            "r_list": list(settings.musc.r_list),
            "window": args.window,
            "judges_per_frame": args.judges_per_frame,
            "micro_batch": args.micro_batch,
            "tiles": f"{args.tiles} x {args.tiles} {args.tile_mode}" if args.tiles else None,
            "frames_timed": len(decisions),
            "source": f"{args.root}/{args.category}" if args.root else "synthetic",
        },
        "references_per_frame": decisions[-1].references,
        "window_fill_seconds": fill_s,
        "latency_ms": latency_summary(decisions),
        "frames_per_second": len(decisions) / elapsed,
    }
    report(figures, device, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
