"""``musc-online replay``: stream a dataset through the online scorer and report what a line would see."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from musc_online.cli.common import clean_errors, metrics_table, pick_device
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
from musc_online.cli.stream_replay import STREAM_NAMES, StreamRun, replay_stress_stream
from musc_online.datasets import images_in, list_samples, load_image

if TYPE_CHECKING:
    from musc_online.replay import ReplayResult


def _decisions_table(result: ReplayResult) -> Table:
    c = result.counts
    table = Table(title="Decisions against the ground truth")
    for column in ("truth", "ok", "unsure", "defect"):
        table.add_column(column, justify="right")
    table.add_row("normal", str(c["true_ok"]), str(c["unsure_normal"]), str(c["false_defect"]))
    table.add_row("defective", str(c["false_ok"]), str(c["unsure_defect"]), str(c["true_defect"]))
    return table


def _latency_table(result: ReplayResult) -> Table:
    table = Table(title=f"Latency per frame (ms); {result.frames_per_second:.1f} frames/s")
    for column in ("stage", "p50", "p99"):
        table.add_column(column, justify="right")
    for stage, figures in result.latency_ms.items():
        table.add_row(stage, f"{figures['p50']:.1f}", f"{figures['p99']:.1f}")
    return table


def replay_command(
    root: Root,
    category: Annotated[str, typer.Option(help="Category to stream.")],
    layout: Layout = "mvtec",
    backbone: BackboneName = "efficientnet_lite0",
    size: Size = None,
    layers: Layers = None,
    weights: Weights = None,
    window: Annotated[int, typer.Option(help="W: admitted frames that vote.")] = 64,
    judges: Annotated[Path | None, typer.Option(help="Folder of known-good images to seed the judges.")] = None,
    judges_per_frame: Annotated[int, typer.Option(help="Judges added to each frame's references.")] = 16,
    admit: Annotated[str, typer.Option(help="Window admission: ok (decided-ok frames vote) or all (paper).")] = "ok",
    anchor: Annotated[str, typer.Option(help="judges (a frame is ok only if its judges agree) or none (paper).")] = (
        "judges"
    ),
    stream: Annotated[
        str | None, typer.Option(help=f"A stress stream staged from the category: {', '.join(STREAM_NAMES)}.")
    ] = None,
    length: Annotated[int, typer.Option(help="--stream: frames in the stream.")] = 400,
    records: Annotated[
        Path | None, typer.Option(help="--stream: write each frame's outcome here (JSON lines).")
    ] = None,
    timeline: Annotated[Path | None, typer.Option(help="--stream: draw the stream's timeline here (PNG).")] = None,
    order: Annotated[str, typer.Option(help="Stream order: dataset or shuffled.")] = "shuffled",
    seed: Annotated[int, typer.Option(help="Seed of the shuffle and of the simulated operator.")] = 0,
    operator_corrects: Annotated[
        float, typer.Option(help="Fraction of flagged/unsure frames a simulated operator corrects (ground truth).")
    ] = 0.0,
    compare_batch: Annotated[bool, typer.Option(help="Also score the set as one batch, for comparison.")] = False,
    micro_batch: Annotated[int, typer.Option(help="Frames per backbone pass.")] = 1,
    care_mask: CareMask = None,
    tiles: Tiles = TILE_DEFAULTS.grid,
    tile_size: TileSize = TILE_DEFAULTS.tile_size,
    tile_mode: TileMode = TILE_DEFAULTS.mode,
    tile_overlap: TileOverlap = TILE_DEFAULTS.overlap,
    tile_halo: TileHalo = TILE_DEFAULTS.halo,
    tile_resolution: TileResolution = TILE_DEFAULTS.resolution,
    r_list: RList = "1,3,5",
    topmin_max: TopminMax = 0.3,
    topk_rounding: TopkRounding = "ceil",
    k_list: KList = "1,2,3",
    device: Device = "auto",
    json_out: JsonOut = None,
) -> None:
    """Stream a dataset's test images (or, with --stream, a stress stream staged from them) through the online
    scorer and report what a line would see: metrics, decisions and latency; for a stress stream the plant's
    figures (escapes, false alarms and unsure frames per 1,000 parts, time to learn) and a timeline picture."""
    from tqdm import tqdm

    from musc_online.evaluation import evaluate_category
    from musc_online.online.judges import seed_judges
    from musc_online.online.scorer import OnlineScorer
    from musc_online.online.settings import OnlineSettings
    from musc_online.replay import SimulatedOperator, frames_from_samples, replay, stream_order

    with clean_errors():
        musc = musc_settings(r_list, topmin_max, topk_rounding, k_list)
        settings = OnlineSettings(
            window=window,
            judges_per_frame=judges_per_frame,
            admission=admit,
            anchor=anchor,
            musc=musc,
            tiles=tile_settings(tiles, tile_size, tile_mode, tile_overlap, tile_halo, tile_resolution),
        )
        care = care_area(care_mask, list_samples(root, layout, category, "test")[0].path) if care_mask else None
        if stream:
            stream_run = StreamRun(stream, length, seed, operator_corrects, records, timeline, json_out)
            replay_stress_stream(
                stream_run,
                root,
                category,
                layout,
                settings,
                build_backbone(backbone, size, layers, weights, pick_device(device)),
                care,
            )
            return
        torch_device = pick_device(device)
        model = build_backbone(backbone, size, layers, weights, torch_device)
        samples = list_samples(root, layout, category, "test")
        scorer = OnlineScorer(model, settings, torch_device)
        scorer.care_area = care
        if judges:
            paths = images_in(judges)
            with tqdm(total=len(paths), desc="judges", unit="img") as bar:
                seed_judges(
                    scorer, [load_image(p) for p in paths], [f"judge/{p.stem}" for p in paths], progress=bar.update
                )
        frames = stream_order(frames_from_samples(samples), order, seed)
        operator = SimulatedOperator(operator_corrects, seed) if operator_corrects else None
        with tqdm(total=len(frames), desc=f"{category}: stream", unit="frame") as bar:
            result = replay(scorer, frames, operator, micro_batch, progress=bar.update)
        rows = {"online": result.metrics}
        if compare_batch:
            batch = evaluate_category(samples, model, musc, torch_device, care=care, tiles=settings.tiles)
            rows["batch"] = batch.metrics

    console = Console()
    console.print(metrics_table("MuSc on the stream (%; I = image, P = pixel)", "scores", rows))
    console.print(_decisions_table(result))
    console.print(_latency_table(result))
    if operator:
        typer.echo(f"simulated operator corrections: {result.corrections}")
    if json_out:
        write_json(
            json_out,
            {
                "settings": {
                    "category": category,
                    "backbone": model.name,
                    "image_size": model.image_size,
                    "window": window,
                    "judges": str(judges) if judges else None,
                    "judges_per_frame": judges_per_frame,
                    "admit": admit,
                    "order": order,
                    "seed": seed,
                    "operator_corrects": operator_corrects,
                    "micro_batch": micro_batch,
                    "care_mask": str(care_mask) if care_mask else None,
                    "tiles": asdict(settings.tiles) if settings.tiles.enabled else None,
                    "device": str(torch_device),
                },
                **rows,
                "decisions": result.counts,
                "corrections": result.corrections,
                "latency_ms": result.latency_ms,
                "frames_per_second": result.frames_per_second,
                "final_band": scorer.stats()["band"],
            },
        )
