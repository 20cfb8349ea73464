"""``musc-online replay --stream NAME``: a stress stream staged from a category, through the online scorer,
reported as a plant counts: escapes, false alarms and unsure frames per 1,000 parts, time to learn, a timeline."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from musc_online.cli.options import write_json
from musc_online.streams import STREAMS

if TYPE_CHECKING:
    from musc_online.backbones import Backbone
    from musc_online.online.settings import OnlineSettings
    from musc_online.replay import StreamReplay
    from musc_online.roi import CareArea

STREAM_NAMES = tuple(STREAMS)


@dataclass(frozen=True)
class StreamRun:
    """What to stage and what to write: the stream, its length and seed, the operator, the outputs."""

    name: str
    length: int
    seed: int
    operator_corrects: float
    records: Path | None
    timeline: Path | None
    json_out: Path | None


def plant_table(title: str, rows: dict[str, dict]) -> Table:
    """The plant's figures of one or more replays: a row per figure, a column per replay (narrow enough for any
    terminal, however many figures)."""
    from musc_online.prequential import PLANT_TARGETS, ROLLING

    caption = (
        "hindsight: thresholds on the final scores chosen knowing the truth; one threshold sending on as many good "
        f"parts as the line did; a band within the targets, at most {PLANT_TARGETS['escapes_per_1000']:g} escapes "
        f"per 1,000 parts and {PLANT_TARGETS['false_alarms_per_1000_good']:g} false alarms per 1,000 good parts"
    )
    table = Table(title=title, caption=caption)
    table.add_column("after the warm-up")
    for name in rows:
        table.add_column(name, justify="right")

    def count(value: float, n: int) -> str:
        return f"{value:.1f} ({n})"

    def fixed(value: float | None, digits: int = 3) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    figures = {
        "escapes per 1,000 parts": lambda s: count(s["escapes_per_1000"], s["escapes"]),
        "  fewest any one threshold gives (hindsight)": lambda s: count(
            s["hindsight_escapes_per_1000"], s["hindsight_escapes"]
        ),
        "false alarms per 1,000 good parts": lambda s: count(s["false_alarms_per_1000_good"], s["false_alarms"]),
        "unsure per 1,000 parts (to a person)": lambda s: count(s["unsure_per_1000"], s["unsure"]),
        "  fewest any band gives within the targets (hindsight)": lambda s: fixed(
            s["hindsight_unsure_at_targets_per_1000"], 1
        ),
        "AUROC": lambda s: fixed(s["auroc"]),
        f"  lowest over {ROLLING} frames, whole stream": lambda s: fixed(s["rolling_auroc_min"]),
        "frames to learn a correction (median, whole stream)": lambda s: fixed(s["time_to_learn_median"], 0),
    }
    for figure, shown in figures.items():
        table.add_row(figure, *(shown(s) for s in rows.values()))
    return table


def replay_stress_stream(
    run: StreamRun,
    root: Path,
    category: str,
    layout: str,
    settings: OnlineSettings,
    model: Backbone,
    care: CareArea | None = None,
) -> None:
    """Stage the stream from a category in ``layout``, seed its judges (the train split's normal images; the
    folder layout has none), replay it and report (tables, records, timeline, JSON)."""
    from tqdm import tqdm

    from musc_online.online.judges import seed_judges
    from musc_online.online.scorer import OnlineScorer
    from musc_online.prequential import timeline_png, write_records
    from musc_online.replay import SimulatedOperator, replay_stream
    from musc_online.streams import build_stream

    stream = build_stream(run.name, root, category, length=run.length, seed=run.seed, layout=layout)
    scorer = OnlineScorer(model, settings, next(model.parameters()).device)
    scorer.care_area = care  # image scores over the care area only (--care-mask)
    if stream.judges:
        seed_judges(scorer, [load() for _, load in stream.judges], [judge_id for judge_id, _ in stream.judges])
    else:
        typer.echo(f"no judges: the {layout} layout has no train split; the stream starts from its window", err=True)
    operator = SimulatedOperator(run.operator_corrects, run.seed) if run.operator_corrects else None
    with tqdm(total=len(stream.frames), desc=f"{category}: {run.name}", unit="frame") as bar:
        result = replay_stream(scorer, stream, operator, progress=bar.update)
    Console().print(plant_table(f"{run.name}: {stream.description}", {"online": result.summary}))
    if run.records:
        typer.echo(f"wrote {write_records(result.outcomes, run.records)}", err=True)
    if run.timeline:
        title = f"{category}, {run.name}: {stream.description}"
        typer.echo(
            f"wrote {timeline_png(result.outcomes, run.timeline, title, stream.events, stream.warmup)}", err=True
        )
    if run.json_out:
        write_json(run.json_out, _report(run, category, layout, settings, model, result))


def _report(
    run: StreamRun, category: str, layout: str, settings: OnlineSettings, model: Backbone, result: StreamReplay
) -> dict:
    return {
        "stream": run.name,
        "description": result.stream.description,
        "category": category,
        "layout": layout,
        "settings": {
            "backbone": model.name,
            "image_size": model.image_size,
            "length": run.length,
            "seed": run.seed,
            "operator_corrects": run.operator_corrects,
            "online": json.loads(json.dumps(settings, default=lambda o: getattr(o, "__dict__", str(o)))),
        },
        "summary": result.summary,
        "corrections": result.corrections,
        "frames_per_second": result.frames_per_second,
    }
