"""``musc-online eval``: batch MuSc over dataset categories, with metrics, a table, JSON and heatmaps."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from musc_online.cli.common import clean_errors, metrics_table, percent, pick_device
from musc_online.cli.options import (
    TILE_DEFAULTS,
    BackboneName,
    CareMask,
    Device,
    JsonOut,
    KList,
    Layers,
    Layout,
    RList,
    Root,
    Size,
    TileHalo,
    TileMode,
    TileOverlap,
    TileResolution,
    Tiles,
    TileSize,
    TopkRounding,
    TopminMax,
    Weights,
    build_backbone,
    care_area,
    musc_settings,
    tile_settings,
    write_json,
)
from musc_online.datasets import list_categories, list_samples

if TYPE_CHECKING:
    from musc_online.evaluation import CategoryResult
    from musc_online.regions import RegionRecall


def recall_table(fpr: float, rows: dict[str, RegionRecall | None]) -> Table:
    """Recall of defect regions by size third, one row per category; "n/a" for a category without masks."""
    from musc_online.regions import BIN_NAMES

    table = Table(
        title=f"Recall of defect regions by size (areas in native pixels; found: at least half of a region's "
        f"pixels above the threshold that {fpr:.1%} of normal pixels exceed)"
    )
    table.add_column("category")
    for name in BIN_NAMES:
        table.add_column(f"{name}: found/regions, recall %, areas", justify="right")
    for category, recall in rows.items():
        cells = ["n/a"] * len(BIN_NAMES)
        if recall is not None:
            cells = [f"{b.found}/{b.regions}, {percent(b.recall)}, {b.area_min}-{b.area_max} px" for b in recall.bins]
        table.add_row(category, *cells)
    return table


def mean_metrics(results: list[CategoryResult], keys: tuple[str, ...]) -> dict[str, float | None]:
    """Each figure's mean over the categories where it is available (None where it is in none)."""
    means: dict[str, float | None] = {}
    for key in keys:
        values = [r.metrics[key] for r in results if r.metrics[key] is not None]
        means[key] = sum(values) / len(values) if values else None
    return means


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
    region_fpr: Annotated[
        float, typer.Option(help="Recall by defect size: share of normal pixels above the pixel threshold.")
    ] = 0.01,
    care_mask: CareMask = None,
    tiles: Tiles = TILE_DEFAULTS.grid,
    tile_size: TileSize = TILE_DEFAULTS.tile_size,
    tile_mode: TileMode = TILE_DEFAULTS.mode,
    tile_overlap: TileOverlap = TILE_DEFAULTS.overlap,
    tile_halo: TileHalo = TILE_DEFAULTS.halo,
    tile_resolution: TileResolution = TILE_DEFAULTS.resolution,
    json_out: JsonOut = None,
) -> None:
    """Score a dataset's test images as one batch per category and report the seven MuSc metrics."""
    from tqdm import tqdm

    from musc_online.evaluation import evaluate_category, export_heatmaps
    from musc_online.metrics import METRIC_KEYS
    from musc_online.tiling.batch import tile_steps

    if not 0.0 < region_fpr < 1.0:
        raise typer.BadParameter("must be in (0, 1)", param_hint="--region-fpr")
    with clean_errors():
        settings = musc_settings(r_list, topmin_max, topk_rounding, k_list)
        tiling = tile_settings(tiles, tile_size, tile_mode, tile_overlap, tile_halo, tile_resolution)
        torch_device = pick_device(device)
        model = build_backbone(backbone, size, layers, weights, torch_device)
        categories = list_categories(root, layout) if category == "ALL" else [category]
        results = []
        for name in categories:
            samples = list_samples(root, layout, name, "test")
            steps = tile_steps(len(samples), len(model.layers), settings) if tiling.enabled else 0
            with (
                tqdm(total=len(samples), desc=f"{name}: features", unit="img") as bar,
                tqdm(total=steps, desc=f"{name}: tiles", unit="step", disable=not steps) as tile_bar,
            ):
                care = care_area(care_mask, samples[0].path) if care_mask else None
                result = evaluate_category(
                    samples,
                    model,
                    settings,
                    torch_device,
                    batch_size,
                    divide_num,
                    bar.update,
                    region_fpr,
                    care,
                    tiling,
                    tile_bar.update,
                )
            typer.echo(
                f"{name}: {len(samples)} images, features {result.seconds['features']:.1f} s, "
                f"scoring {result.seconds['scoring']:.1f} s, metrics {result.seconds['metrics']:.1f} s",
                err=True,
            )
            if heatmaps:
                export_heatmaps(result, heatmaps, heatmap_norm)
            results.append(result)

    mean = mean_metrics(results, (*METRIC_KEYS, "aupro_fpr30"))
    rows = {r.category: r.metrics for r in results} | ({"mean": mean} if len(results) > 1 else {})
    console = Console()
    title = "MuSc batch evaluation (%; I = image, P = pixel; n/a: no masks; mean: of the categories with the figure)"
    console.print(metrics_table(title, "category", rows))
    console.print(recall_table(region_fpr, {r.category: r.recall_by_size for r in results}))
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
                "region_fpr": region_fpr,
                "care_mask": str(care_mask) if care_mask else None,
                "tiles": asdict(tiling) if tiling.enabled else None,
                "device": str(torch_device),
            },
            "categories": {r.category: r.report() for r in results},
            "mean": mean,
        }
        write_json(json_out, report)
