"""``musc-online eval``: batch MuSc over dataset categories, with metrics, a table, JSON and heatmaps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from musc_online.backbones import available_backbones, create_backbone, default_settings
from musc_online.batch import MuscSettings
from musc_online.cli.common import clean_errors, int_list, pick_device
from musc_online.datasets import LAYOUTS, list_categories, list_samples
from musc_online.evaluation import CategoryResult, evaluate_category, export_heatmaps
from musc_online.metrics import METRIC_KEYS

HEADERS = ("I-AUROC", "I-F1", "I-AP", "P-AUROC", "P-F1", "P-AP", "PRO")


def _table(results: list[CategoryResult], mean: dict[str, float]) -> Table:
    table = Table(title="MuSc batch evaluation (%; I = image, P = pixel)")
    table.add_column("category")
    for header in HEADERS:
        table.add_column(header, justify="right")
    rows = [(r.category, r.metrics) for r in results]
    if len(results) > 1:
        rows.append(("mean", mean))
    for name, metrics in rows:
        table.add_row(name, *(f"{100 * metrics[key]:.1f}" for key in METRIC_KEYS))
    return table


def eval_command(
    root: Annotated[Path, typer.Option(help="Dataset root folder.")],
    category: Annotated[str, typer.Option(help="Category name, or ALL for every category under the root.")] = "ALL",
    layout: Annotated[str, typer.Option(help=f"Dataset layout: {', '.join(LAYOUTS)}.")] = "mvtec",
    backbone: Annotated[str, typer.Option(help=f"Feature extractor: {', '.join(available_backbones())}.")] = (
        "efficientnet_lite0"
    ),
    size: Annotated[int | None, typer.Option(help="Square input size in pixels (default: the backbone's).")] = None,
    layers: Annotated[
        str | None, typer.Option(help="Feature layers, e.g. 6,12,18,24 (default: the backbone's).")
    ] = None,
    weights: Annotated[Path | None, typer.Option(help="Local weight file instead of the library cache.")] = None,
    r_list: Annotated[str, typer.Option(help="LNAMD aggregation degrees.")] = "1,3,5",
    topmin_max: Annotated[float, typer.Option(help="MSM interval: fraction of the other images averaged.")] = 0.3,
    topk_rounding: Annotated[str, typer.Option(help="Interval size rounding: ceil, or floor (reference parity).")] = (
        "ceil"
    ),
    k_list: Annotated[str, typer.Option(help="RsCIN window sizes (VisA: 1,8,9; 0 disables).")] = "1,2,3",
    divide_num: Annotated[int, typer.Option(help="Split each category's test set into this many subsets.")] = 1,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")] = "auto",
    batch_size: Annotated[int, typer.Option(help="Images per backbone batch.")] = 8,
    heatmaps: Annotated[Path | None, typer.Option(help="Folder to save image + heatmap overlays (PNG).")] = None,
    heatmap_norm: Annotated[str, typer.Option(help="Heatmap colour range: image (each its own) or set.")] = "image",
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the figures (fractions) to this file.")] = None,
) -> None:
    """Score a dataset's test images as one batch per category and report the seven MuSc metrics."""
    with clean_errors():
        settings = MuscSettings(
            r_list=int_list(r_list, "--r-list"),
            topmin_max=topmin_max,
            topk_rounding=topk_rounding,  # type: ignore[arg-type]
            k_list=int_list(k_list, "--k-list"),
        )
        if topk_rounding not in ("ceil", "floor"):
            raise typer.BadParameter("choose ceil or floor", param_hint="--topk-rounding")
        torch_device = pick_device(device)
        default_size, default_layers = default_settings(backbone)
        model = create_backbone(
            backbone,
            image_size=size or default_size,
            layers=int_list(layers, "--layers") if layers else default_layers,
            weights=weights,
        ).to(torch_device)
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
    Console().print(_table(results, mean))
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
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=2))
        typer.echo(f"wrote {json_out}", err=True)
