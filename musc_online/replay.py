"""Replay a labelled image set through the online scorer as if it came off a line, and measure it.

Frames go through ``OnlineScorer`` one by one (or in micro-batches) in dataset or shuffled order. An
optional simulated operator reviews a fraction of the flagged and unsure frames using the ground truth,
so the effect of corrections can be measured. The result holds the seven metrics on the online scores
(pixel metrics None where the frames have no masks), decision counts against the ground truth, latency per
stage and throughput.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from musc_online.backbones import BackboneOutput
from musc_online.datasets import Sample, load_image, load_mask
from musc_online.metrics import compute_metrics
from musc_online.online.corrections import confirm_defect, confirm_normal
from musc_online.online.decision import Decision, NearestDefect
from musc_online.online.judges import change_product
from musc_online.online.scorer import OnlineScorer
from musc_online.prequential import FrameOutcome, summarise
from musc_online.streams import Stream, StreamFrame

Progress = Callable[[int], None]


def frames_from_samples(samples: Sequence[Sample]) -> list[StreamFrame]:
    """Dataset samples as stream frames; images and masks are read only when the frame is replayed."""
    return [
        StreamFrame(
            frame_id=f"{s.defect_type}/{s.path.stem}",
            label=s.label,
            defect_type=s.defect_type,
            load=lambda path=s.path: load_image(path),
            mask=lambda size, path=s.mask_path: load_mask(path, size),
            mask_known=s.label == 0 or s.mask_path is not None,
        )
        for s in samples
    ]


def stream_order(frames: Sequence[StreamFrame], order: str = "dataset", seed: int = 0) -> list[StreamFrame]:
    """The frames in dataset order or shuffled with ``seed``."""
    if order == "dataset":
        return list(frames)
    if order == "shuffled":
        return [frames[i] for i in np.random.default_rng(seed).permutation(len(frames))]
    raise ValueError(f"order must be 'dataset' or 'shuffled', got {order!r}")


@dataclass
class ReplayResult:
    """What a replay measured."""

    frames: list[StreamFrame]
    decisions: list[Decision]
    metrics: dict[str, float | None]  # pixel metrics None (not available) without masks
    counts: dict[str, int]
    latency_ms: dict[str, dict[str, float]]
    frames_per_second: float
    corrections: dict[str, int] = field(default_factory=dict)


def decision_counts(frames: Sequence[StreamFrame], decisions: Sequence[Decision]) -> dict[str, int]:
    """Decisions against the ground truth: true/false ok and defect, unsure split by truth, provisional."""
    counts = dict.fromkeys(
        ("true_ok", "false_ok", "true_defect", "false_defect", "unsure_normal", "unsure_defect", "provisional"), 0
    )
    for frame, decision in zip(frames, decisions, strict=True):
        defective = frame.label == 1
        if decision.label == "ok":
            counts["false_ok" if defective else "true_ok"] += 1
        elif decision.label == "defect":
            counts["true_defect" if defective else "false_defect"] += 1
        else:
            counts["unsure_defect" if defective else "unsure_normal"] += 1
        counts["provisional"] += int(decision.provisional)
    return counts


def latency_summary(decisions: Sequence[Decision]) -> dict[str, dict[str, float]]:
    """p50 and p99 of each timed stage, in milliseconds."""
    stages = decisions[0].timings_ms.keys() if decisions else ()
    return {
        stage: {
            "p50": float(np.percentile([d.timings_ms[stage] for d in decisions], 50)),
            "p99": float(np.percentile([d.timings_ms[stage] for d in decisions], 99)),
        }
        for stage in stages
    }


class SimulatedOperator:
    """Reviews a fraction of flagged and unsure frames with the ground truth and corrects the scorer."""

    def __init__(self, fraction: float, seed: int = 0, limit: int | None = None) -> None:
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"operator review fraction must be in [0, 1], got {fraction}")
        self.fraction = fraction
        self.limit = limit  # stop after this many corrections (e.g. "the first false alarms")
        self.rng = np.random.default_rng(seed)
        self.made = {"confirmed_ok": 0, "confirmed_defect": 0}

    def review(self, scorer: OnlineScorer, frame: StreamFrame, decision: Decision) -> str | None:
        """Maybe correct one decision (only flagged or unsure ones reach an operator); the verdict given, if any."""
        if decision.label == "ok" or self.fraction == 0.0 or self.rng.random() >= self.fraction:
            return None
        if self.limit is not None and sum(self.made.values()) >= self.limit:
            return None
        if frame.label == 1:
            confirm_defect(scorer, decision.frame_id, label=frame.defect_type)
            self.made["confirmed_defect"] += 1
            return "defect"
        confirm_normal(scorer, decision.frame_id)
        self.made["confirmed_ok"] += 1
        return "ok"


def replay(
    scorer: OnlineScorer,
    frames: Sequence[StreamFrame],
    operator: SimulatedOperator | None = None,
    micro_batch: int = 1,
    progress: Progress | None = None,
) -> ReplayResult:
    """Stream ``frames`` through ``scorer`` and measure the online decisions."""
    size = scorer.backbone.image_size
    decisions: list[Decision] = []
    maps = np.empty((len(frames), size, size), dtype=np.float32)
    started = time.perf_counter()
    for start in range(0, len(frames), micro_batch):
        batch = frames[start : start + micro_batch]
        for frame, decision in zip(
            batch, scorer.score_many([f.load() for f in batch], [f.frame_id for f in batch]), strict=True
        ):
            maps[len(decisions)] = decision.heatmap((size, size))
            decisions.append(decision)
            if operator:
                operator.review(scorer, frame, decision)
        if progress:
            progress(len(batch))
    elapsed = time.perf_counter() - started
    labels = np.array([f.label for f in frames])
    masks = np.stack([f.mask(size) for f in frames])
    known = np.array([f.mask_known for f in frames])
    metrics = compute_metrics(labels, np.array([d.score for d in decisions]), masks, maps, pixel_known=known)
    return ReplayResult(
        frames=list(frames),
        decisions=decisions,
        metrics=metrics,
        counts=decision_counts(frames, decisions),
        latency_ms=latency_summary(decisions),
        frames_per_second=len(frames) / elapsed,
        corrections=dict(operator.made) if operator else {},
    )


@dataclass
class StreamReplay:
    """What a stress stream measured: each frame's outcome, the plant's figures, and the speed."""

    stream: Stream
    outcomes: list[FrameOutcome]
    summary: dict[str, object]
    frames_per_second: float
    corrections: dict[str, int] = field(default_factory=dict)


def replay_stream(
    scorer: OnlineScorer,
    stream: Stream,
    operator: SimulatedOperator | None = None,
    features: Sequence[BackboneOutput] | None = None,
    progress: Progress | None = None,
) -> StreamReplay:
    """Run a stress stream through a scorer (judges already seeded) frame by frame, as a line would see it.

    The stream's events happen on their frame: ``changeover`` changes the product (its judges, a fresh window,
    the bands calibrated again). ``features`` are the frames' backbone outputs when already extracted (a
    benchmark comparing scorers on one stream extracts them once).
    """
    outcomes = []
    started = time.perf_counter()
    for index, frame in enumerate(stream.frames):
        if stream.events.get(index) == "changeover":  # a line without judges just starts over
            judges = stream.changeover_judges if scorer.judges is not None and len(scorer.judges) else []
            change_product(scorer, [load() for _, load in judges], [judge_id for judge_id, _ in judges])
        if features is None:
            decision = scorer.score(frame.load(), frame.frame_id)
        else:
            out = features[index]
            maps, feature = out.patch_features, out.image_features[0]
            decision = scorer.score_features(frame.frame_id, maps, feature, (scorer.backbone.image_size,) * 2)
            scorer.score_due_seeds(1)
        judge_band = scorer.calibration.judge_band()  # as it stood when the frame was decided
        judged = judge_band.source != "unset"
        corrected = operator.review(scorer, frame, decision) if operator else None
        band = decision.band
        outcomes.append(
            FrameOutcome(
                index=index,
                frame_id=frame.frame_id,
                truth=frame.label,
                kind=frame.defect_type,
                label=decision.label,
                score=decision.score,
                judge_score=decision.judge_score,
                band_low=band.low,
                band_high=band.high,
                provisional=decision.provisional,
                nearest_defect=_named(decision.nearest_defect),
                corrected=corrected,
                judge_band_low=judge_band.low if judged else None,
                judge_band_high=judge_band.high if judged else None,
            )
        )
        if progress:
            progress(1)
    elapsed = time.perf_counter() - started
    return StreamReplay(
        stream,
        outcomes,
        summarise(outcomes, stream.warmup),
        len(outcomes) / elapsed,
        dict(operator.made) if operator else {},
    )


def _named(defect: NearestDefect | None) -> str | None:
    """A known defect's name for the records: its label, or its frame id when it was confirmed without one."""
    return None if defect is None else defect.label or defect.frame_id
