#!/usr/bin/env python3
"""Batch MuSc on three real categories side by side: bottle, screw (no masks) and metal_plate.

Bottle is saturated, so accuracy work is judged on all three: MVTec AD ``bottle`` (masks), MVTec AD ``screw``
(image-level truth only: pixel figures are n/a) and MPDD ``metal_plate`` (masks). Each is scored as one batch
by ``evaluation.evaluate_category``, the code ``musc-online eval`` runs, with the given --size/--layers (default:
the backbone's). Writes one JSON (default under docs/benchmarks/) and prints one Markdown table: image AUROC,
pixel AUROC, pixel AP, PRO, recall of defect regions by size third (at --region-fpr of normal pixels, areas in
native pixels) and seconds per image (backbone + scoring).

    nice -n 10 .venv/bin/python tools/bench_categories.py --data ../shared/data
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from bench_common import machine, report

from musc_online.backbones import create_backbone, default_settings
from musc_online.cli.common import percent
from musc_online.datasets import list_samples
from musc_online.evaluation import CategoryResult, evaluate_category
from musc_online.settings import MuscSettings

CATEGORIES: tuple[tuple[str, str], ...] = (("mvtec_ad", "bottle"), ("mvtec_ad", "screw"), ("mpdd", "metal_plate"))
HEADER = (
    "| category | images | image AUROC | pixel AUROC | pixel AP | PRO | recall smallest third | recall middle third "
    "| recall largest third | s / image |"
)


def figures(result: CategoryResult) -> dict[str, object]:
    """One category's figures for the JSON, plus seconds per image (backbone + scoring)."""
    per_image = (result.seconds["features"] + result.seconds["scoring"]) / len(result.samples)
    return {**result.report(), "s_per_image": per_image}


def markdown_row(category: str, entry: dict) -> str:
    """One table row; a recall cell reads 'found/regions = recall % (areas min-max px)'."""
    recall = entry["recall_by_size"]
    cells = ["n/a"] * 3
    if recall is not None:
        cells = [
            f"{b['found']}/{b['regions']} = {percent(b['recall'])} % ({b['area_min']}-{b['area_max']} px)"
            for b in recall["bins"]
        ]
    metrics = (percent(entry[key]) for key in ("image_auroc", "pixel_auroc", "pixel_ap", "pro"))
    return (
        f"| {category} | {entry['images']} | {' | '.join(metrics)} | {' | '.join(cells)} | {entry['s_per_image']:.2f} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"), help="folder holding mvtec_ad/ and mpdd/")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--size", type=int, help="input size in pixels (default: the backbone's)")
    parser.add_argument("--layers", help="feature layers, e.g. 2,4,6 (default: the backbone's)")
    parser.add_argument("--region-fpr", type=float, default=0.01, help="recall by size: normal pixels above")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="where to write (default: docs/benchmarks/categories_...json)")
    args = parser.parse_args(argv)

    size, layers = default_settings(args.backbone)
    size = args.size or size
    layers = tuple(int(part) for part in args.layers.split(",")) if args.layers else layers
    device = torch.device(args.device)
    backbone = create_backbone(args.backbone, image_size=size, layers=layers).to(device)
    settings = MuscSettings()
    results = {}
    for dataset, category in CATEGORIES:
        samples = list_samples(args.data / dataset, "mvtec", category)
        started = time.perf_counter()
        result = evaluate_category(samples, backbone, settings, device, region_fpr=args.region_fpr)
        results[category] = {"dataset": dataset, **figures(result)}
        print(f"{category}: {len(samples)} images in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    layer_text = "-".join(str(layer) for layer in layers)
    out = args.json or Path("docs/benchmarks") / f"categories_{args.device}_{args.backbone}_{size}_l{layer_text}.json"
    summary = {
        "machine": machine(device),
        "settings": {
            "backbone": args.backbone,
            "image_size": size,
            "layers": list(layers),
            "r_list": list(settings.r_list),
            "k_list": list(settings.k_list),
            "region_fpr": args.region_fpr,
            "mode": "batch: each category's whole test set as one set",
        },
        "categories": results,
    }
    report(summary, device, out)
    print(f"\n{args.backbone} at {size} px, layers {layers}; recall at {args.region_fpr:.0%} of normal pixels\n")
    print(HEADER)
    print("|" + " --- |" * 10)
    for category, entry in results.items():
        print(markdown_row(category, entry))
    return 0


if __name__ == "__main__":
    sys.exit(main())
