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
    """The plant's figures of one or more replays, one row each."""
    table = Table(title=title)
    columns = ("run", "escapes /1000", "hindsight /1000", "false alarms /1000 good", "unsure /1000")
    columns += ("fewest unsure /1000 at targets", "AUROC", "rolling min", "learn")
    for column in columns:
        table.add_column(column, justify="right")
    for name, s in rows.items():
        auroc, rolling = s["auroc"], s["rolling_auroc_min"]
        learn = "-" if s["time_to_learn_median"] is None else f"{s['time_to_learn_median']:.0f} frames"
        table.add_row(
            name,
            f"{s['escapes_per_1000']:.1f} ({s['escapes']})",
            f"{s['hindsight_escapes_per_1000']:.1f} ({s['hindsight_escapes']})",
            f"{s['false_alarms_per_1000_good']:.1f} ({s['false_alarms']})",
            f"{s['unsure_per_1000']:.1f} ({s['unsure']})",
            f"{s['hindsight_unsure_at_targets_per_1000']:.1f}",
            "-" if auroc is None else f"{auroc:.3f}",
            "-" if rolling is None else f"{rolling:.3f}",
            learn,
        )
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
