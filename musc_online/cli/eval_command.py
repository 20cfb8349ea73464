"""``musc-online eval``: batch MuSc over dataset categories, with metrics, a table, JSON and heatmaps."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from musc_online.cli.common import clean_errors, metrics_table, pick_device
from musc_online.cli.options import (
    BackboneName,
    Device,
    JsonOut,
    KList,
    Layers,
    Layout,
    RList,
    Root,
    Size,
    TopkRounding,
    TopminMax,
    Weights,
    build_backbone,
    musc_settings,
    write_json,
)
from musc_online.datasets import list_categories, list_samples


def eval_command(
    root: Root,
    category: Annotated[str, typer.Option(help="Category name, or ALL for every category under the root.")] = "ALL",
    layout: Layout = "mvtec",
    backbone: BackboneName = "efficientnet_lite0",
    size: Size = None,
    layers: Layers = None,
    weights: Weights = None,
    r_list: RList = "1,3,5",
    topmin_max: TopminMax = 0.3,
    topk_rounding: TopkRounding = "ceil",
    k_list: KList = "1,2,3",
    divide_num: Annotated[int, typer.Option(help="Split each category's test set into this many subsets.")] = 1,
    device: Device = "auto",
    batch_size: Annotated[int, typer.Option(help="Images per backbone batch.")] = 8,
    heatmaps: Annotated[Path | None, typer.Option(help="Folder to save image + heatmap overlays (PNG).")] = None,
    heatmap_norm: Annotated[str, typer.Option(help="Heatmap colour range: image (each its own) or set.")] = "image",
    json_out: JsonOut = None,
) -> None:
    """Score a dataset's test images as one batch per category and report the seven MuSc metrics."""
    from tqdm import tqdm

    from musc_online.evaluation import evaluate_category, export_heatmaps
    from musc_online.metrics import METRIC_KEYS

    with clean_errors():
        settings = musc_settings(r_list, topmin_max, topk_rounding, k_list)
        torch_device = pick_device(device)
        model = build_backbone(backbone, size, layers, weights, torch_device)
        categories = list_categories(root, layout) if category == "ALL" else [category]
        results = []
        for name in categories:
            samples = list_samples(root, layout, name, "test")
            with tqdm(total=len(samples), desc=f"{name}: features", unit="img") as bar:
                result = evaluate_category(
                    samples, model, settings, torch_device, batch_size, divide_num, progress=bar.update
                )
            typer.echo(
                f"{name}: {len(samples)} images, features {result.seconds['features']:.1f} s, "
                f"scoring {result.seconds['scoring']:.1f} s, metrics {result.seconds['metrics']:.1f} s",
                err=True,
            )
            if heatmaps:
                export_heatmaps(result, heatmaps, heatmap_norm)
            results.append(result)

    mean = {key: sum(r.metrics[key] for r in results) / len(results) for key in (*METRIC_KEYS, "aupro_fpr30")}
    rows = {r.category: r.metrics for r in results} | ({"mean": mean} if len(results) > 1 else {})
    Console().print(metrics_table("MuSc batch evaluation (%; I = image, P = pixel)", "category", rows))
    if json_out:
        report = {
            "settings": {
                "backbone": backbone,
                "image_size": model.image_size,
                "layers": list(model.layers),
                "r_list": list(settings.r_list),
                "topmin_max": settings.topmin_max,
                "topk_rounding": settings.topk_rounding,
                "k_list": list(settings.k_list),
                "divide_num": divide_num,
                "device": str(torch_device),
            },
            "categories": {r.category: {**r.metrics, "seconds": r.seconds, "images": len(r.samples)} for r in results},
            "mean": mean,
        }
        write_json(json_out, report)
