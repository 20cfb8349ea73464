#!/usr/bin/env python3
"""Decisions on hard streams: every stress stream of bottle, screw and metal_plate through the paper's scorer, the
earlier scorer and today's.

For each category and stream (``musc_online.streams``), the frames' backbone features are extracted once, then
each scorer replays the same stream, with and without a simulated operator who reviews every flagged and unsure
frame. The plant's figures (escapes beside the hindsight bound, false alarms and unsure frames per 1,000 parts
after warm-up, AUROC, time to learn) go to a JSON file and one Markdown table of all categories; timelines of
today's scorer with the operator go to PNG files. Example (2 CPU cores):
``nice -n 5 python tools/bench_streams.py --streams rate10 bad_batch --json docs/benchmarks/streams/all.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
from bench_categories import CATEGORIES
from bench_common import cpu_name

from musc_online.backbones import Backbone, BackboneOutput, create_backbone
from musc_online.online.judges import seed_judges
from musc_online.online.scorer import OnlineScorer
from musc_online.online.settings import OnlineSettings, ThresholdSettings
from musc_online.prequential import timeline_png
from musc_online.replay import SimulatedOperator, replay_stream
from musc_online.streams import STREAMS, Stream, build_stream

SCORERS = ("paper", "earlier", "earlier + operator", "today", "today + operator")
FIGURES = (
    "escapes_per_1000",
    "hindsight_escapes_per_1000",
    "false_alarms_per_1000_good",
    "unsure_per_1000",
    "hindsight_unsure_at_targets_per_1000",
    "auroc",
    "time_to_learn_median",
)


def scorers(window: int, judge_turns: int = 1) -> dict[str, tuple[OnlineSettings, bool]]:
    """The scorers compared: settings, and whether the stream's judges are seeded."""
    today = OnlineSettings(window=window, judge_turns=judge_turns)
    earlier = replace(
        today,
        anchor="none",
        defect_guard=False,
        thresholds=ThresholdSettings(method="quantile"),
    )
    paper = replace(earlier, admission="all", judges_per_frame=0)
    return {"paper": (paper, False), "earlier": (earlier, True), "today": (today, True)}


def run(
    args: argparse.Namespace, backbone: Backbone, root: Path, category: str, results: dict, save: Callable[[], None]
) -> None:
    """Every chosen stream of one category through every chosen scorer, into ``results`` ({stream: {scorer:
    figures}}); ``save`` is called after each stream, so an interrupted run keeps what it measured."""
    for name in args.streams:
        stream = build_stream(name, root, category, length=args.length, seed=args.seed)
        features = extract(backbone, stream, category, args)
        judges = [load() for _, load in stream.judges]
        results[name] = {"description": stream.description}
        for label, (settings, seeded) in scorers(args.window, args.judge_turns).items():
            for with_operator in (False, True) if label != "paper" else (False,):
                key = f"{label}{' + operator' if with_operator else ''}"
                if key not in args.scorers:
                    continue
                scorer = OnlineScorer(backbone, settings)
                if seeded:
                    seed_judges(scorer, judges, [judge_id for judge_id, _ in stream.judges])
                operator = SimulatedOperator(1.0, args.seed) if with_operator else None
                replayed = replay_stream(scorer, stream, operator, features)
                summary = {k: v for k, v in replayed.summary.items() if k != "rolling_auroc"}
                results[name][key] = {**summary, "frames_per_second": replayed.frames_per_second}
                print(f"  {category} {name} {key}: " + ", ".join(f"{f} {summary[f]}" for f in FIGURES), file=sys.stderr)
                if args.timelines and label == "today" and with_operator:
                    title = f"{category}, {name}, today's scorer with an operator: {stream.description}"
                    path = args.timelines / f"{category}_{name}.png"
                    timeline_png(replayed.outcomes, path, title, stream.events, stream.warmup)
        save()


def extract(backbone: Backbone, stream: Stream, category: str, args: argparse.Namespace) -> list[BackboneOutput]:
    """The stream's backbone features, extracted once (and kept in ``--cache`` for reruns of other scorers)."""
    layers = "" if args.layers is None else "_l" + "-".join(str(layer) for layer in args.layers)
    key = f"{category}_{stream.name}_n{args.length}_s{args.seed}_{args.backbone}_{backbone.image_size}{layers}.pt"
    cached = args.cache / key if args.cache else None
    if cached is not None and cached.exists():
        return torch.load(cached, weights_only=False)
    started = time.perf_counter()
    features = [backbone.extract([frame.load()], "cpu") for frame in stream.frames]
    elapsed = time.perf_counter() - started
    print(f"{category} {stream.name}: {len(features)} frames extracted in {elapsed:.0f} s", file=sys.stderr)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.save(features, cached)
    return features


def markdown(results: dict) -> str:
    """One table row per category, stream and scorer: escapes and the hindsight bound, false alarms and unsure per
    1,000, the fewest unsure any band gives within the plant's targets (hindsight), AUROC, time to learn."""
    lines = [
        "| category | stream | scorer | escapes /1000 | hindsight /1000 | false alarms /1000 good | unsure /1000 "
        "| fewest unsure /1000 at the targets (hindsight) | AUROC | learn (frames) | last provisional frame |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for category, streams in results.items():
        for stream, runs in streams.items():
            for key, s in runs.items():
                if key == "description":
                    continue
                auroc = "-" if s["auroc"] is None else f"{s['auroc']:.3f}"
                learn = "-" if s["time_to_learn_median"] is None else f"{s['time_to_learn_median']:.0f}"
                lines.append(
                    f"| {category} | {stream} | {key} | {s['escapes_per_1000']:.1f} | "
                    f"{s['hindsight_escapes_per_1000']:.1f} | {s['false_alarms_per_1000_good']:.1f} | "
                    f"{s['unsure_per_1000']:.1f} | {s['hindsight_unsure_at_targets_per_1000']:.1f} | {auroc} | "
                    f"{learn} | {s['last_provisional']} |"
                )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"), help="folder holding mvtec_ad/ and mpdd/")
    parser.add_argument(
        "--categories", nargs="+", default=[c for _, c in CATEGORIES], choices=[c for _, c in CATEGORIES]
    )
    parser.add_argument("--streams", nargs="+", default=list(STREAMS), choices=list(STREAMS))
    parser.add_argument("--length", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--size", type=int, help="input size in pixels (default: the backbone's)")
    parser.add_argument("--layers", type=int, nargs="+", help="feature layers (default: the backbone's)")
    parser.add_argument("--window", type=int, default=OnlineSettings().window)
    parser.add_argument(
        "--judge-turns", type=int, default=OnlineSettings().judge_turns, help="copies of each seed judge, turned"
    )
    parser.add_argument(
        "--scorers", nargs="+", default=list(SCORERS), choices=SCORERS, help="which to run (all by default)"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--json", type=Path, help="write the figures here (and a Markdown table beside it)")
    parser.add_argument("--timelines", type=Path, help="folder for today's scorer's timelines (PNG)")
    parser.add_argument("--cache", type=Path, help="folder keeping each stream's backbone features between runs")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    backbone = create_backbone(args.backbone, image_size=args.size, layers=args.layers)
    datasets = {category: dataset for dataset, category in CATEGORIES}
    results: dict = {}
    report = {
        "machine": {"cpu": cpu_name(), "threads": args.threads, "torch": torch.__version__},
        "settings": {k: str(v) for k, v in vars(args).items() if k not in ("json", "timelines", "cache")}
        | {"size": str(backbone.image_size), "layers": str(list(backbone.layers))},
        "categories": results,
    }

    def save() -> None:
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=2) + "\n")
            args.json.with_suffix(".md").write_text(markdown(results))

    for category in args.categories:
        run(args, backbone, args.data / datasets[category], category, results.setdefault(category, {}), save)
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
