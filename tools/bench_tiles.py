#!/usr/bin/env python3
"""High-resolution tiles against the untiled default, on bottle, metal_plate and screw (batch MuSc, ``eval``'s code).

Per category the untiled pass at the backbone's size is compared with tiled runs at the images' native
resolution: bottle (900 px) and metal_plate (512 px) with 2 x 2 and 3 x 3 tiles in position mode, screw (1024 px,
parts at any angle) with 2 x 2 tiles in pooled mode. Reported: image AUROC, pixel AUROC and PRO where masks exist,
recall of defect regions by size third at the same share of normal pixels flagged (``regions``), seconds per
image and the cost as a multiple of the untiled run. Results are written after every run (a long benchmark that is
stopped keeps what it measured).

    nice -n 5 .venv/bin/python tools/bench_tiles.py --data ../shared/data
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
from bench_categories import figures
from bench_common import machine

from musc_online.backbones import create_backbone, default_settings
from musc_online.cli.common import percent
from musc_online.datasets import list_samples
from musc_online.evaluation import evaluate_category
from musc_online.settings import MuscSettings, TileSettings

RUNS: dict[str, tuple[str, tuple[tuple[str, TileSettings], ...]]] = {
    "bottle": ("mvtec_ad", (("2x2 position", TileSettings(grid=2)), ("3x3 position", TileSettings(grid=3)))),
    "metal_plate": ("mpdd", (("2x2 position", TileSettings(grid=2)), ("3x3 position", TileSettings(grid=3)))),
    "screw": ("mvtec_ad", (("2x2 pooled", TileSettings(grid=2, mode="pooled")),)),
}
HEADER = (
    "| category | tiles | image AUROC | pixel AUROC | PRO | recall smallest third | recall middle third "
    "| recall largest third | s / image | cost x untiled |"
)


def row(category: str, tiles: str, entry: dict, untiled: dict) -> str:
    """One Markdown row: figures (n/a without masks), recall by size third, seconds and the cost multiple."""
    recall = entry["recall_by_size"]
    cells = ["n/a"] * 3
    if recall is not None:
        cells = [f"{b['found']}/{b['regions']} = {percent(b['recall'])} %" for b in recall["bins"]]
    metrics = (percent(entry[key]) for key in ("image_auroc", "pixel_auroc", "pro"))
    cost = entry["s_per_image"] / untiled["s_per_image"]
    seconds = f"{entry['s_per_image']:.2f} | {cost:.1f}"
    return f"| {category} | {tiles} | {' | '.join(metrics)} | {' | '.join(cells)} | {seconds} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"), help="folder holding mvtec_ad/ and mpdd/")
    parser.add_argument("--categories", default=",".join(RUNS), help="which of bottle, metal_plate, screw")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--size", type=int, help="input size in pixels (default: the backbone's)")
    parser.add_argument("--region-fpr", type=float, default=0.01, help="recall by size: normal pixels above")
    parser.add_argument("--json", type=Path, default=Path("docs/benchmarks/tiles_cpu2_effnet.json"))
    args = parser.parse_args(argv)

    size, layers = default_settings(args.backbone)
    size = args.size or size
    device = torch.device("cpu")
    backbone = create_backbone(args.backbone, image_size=size, layers=layers)
    settings = MuscSettings()
    results: dict[str, dict[str, dict]] = {}
    summary = {
        "machine": machine(device),
        "settings": {"backbone": args.backbone, "image_size": size, "layers": list(layers), "fpr": args.region_fpr},
        "categories": results,
    }
    for category in args.categories.split(","):
        dataset, tiled = RUNS[category]
        samples = list_samples(args.data / dataset, "mvtec", category)
        results[category] = {}
        for name, tiles in (("untiled", TileSettings()), *tiled):
            started = time.perf_counter()
            result = evaluate_category(samples, backbone, settings, device, region_fpr=args.region_fpr, tiles=tiles)
            results[category][name] = {**figures(result), "tiles": asdict(tiles) if tiles.enabled else None}
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(summary, indent=2) + "\n")
            print(f"{category} {name}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    print(f"\n{args.backbone} at {size} px, layers {layers}; recall at {args.region_fpr:.0%} of normal pixels\n")
    print(HEADER)
    print("|" + " --- |" * 10)
    for category, runs in results.items():
        for name, entry in runs.items():
            print(row(category, name, entry, runs["untiled"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
