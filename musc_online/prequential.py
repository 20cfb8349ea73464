"""What a plant counts on a replayed stream, frame by frame as the line decided (prequential evaluation).

AUROC says little to a plant. A line is judged by its escapes (defective parts passed as ok) and false alarms
(good parts rejected as defect) per 1,000 parts, by how many frames an operator must look at (unsure), and by
how fast a correction takes effect: the frames from a correction to the next look-alike decided correctly.
Every figure is counted after the stream's warm-up, when the line is expected to be running for real.
The timeline picture shows the score, the band, the decisions and the corrections over the stream.
"""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from musc_online.metrics import ranking_metrics

ROLLING = 100  # frames in the rolling AUROC
# What a plant can live with (issue 16): escapes per 1,000 parts, false alarms per 1,000 good parts, unsure per 1,000
PLANT_TARGETS = {"escapes_per_1000": 5.0, "false_alarms_per_1000_good": 20.0, "unsure_per_1000": 50.0}


@dataclass(frozen=True)
class FrameOutcome:
    """One frame of a replayed stream: the truth, what the line decided, and what the operator did."""

    index: int
    frame_id: str
    truth: int  # 1 = defective
    kind: str  # "good" or the defect type
    label: str  # ok | unsure | defect
    score: float
    judge_score: float | None
    band_low: float
    band_high: float
    provisional: bool
    nearest_defect: str | None
    corrected: str | None  # the simulated operator's verdict on it, if any
    judge_band_low: float | None = None  # the judges' own band when the frame was decided (None: not calibrated)
    judge_band_high: float | None = None


def write_records(outcomes: Sequence[FrameOutcome], path: str | Path) -> Path:
    """One JSON object per frame (JSON lines), for anyone who wants to count differently."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as file:
        for outcome in outcomes:
            file.write(json.dumps(asdict(outcome)) + "\n")
    return path


def _per_1000(count: int, total: int) -> float:
    return 1000.0 * count / total if total else 0.0


def _auroc(outcomes: Sequence[FrameOutcome]) -> float | None:
    truths = np.array([o.truth for o in outcomes])
    if truths.min(initial=1) == truths.max(initial=0):  # one class only (or none): undefined
        return None
    return ranking_metrics(truths, np.array([o.score for o in outcomes]))[0]


def time_to_learn(outcomes: Sequence[FrameOutcome]) -> list[int]:
    """For each correction, frames until the next frame of the same kind that was decided correctly.

    A look-alike is the next frame of the same kind (the same defect type, or a good part after an ok);
    decided correctly means ``defect`` for a defect and ``ok`` for a good part. Corrections whose kind never
    comes back are left out.
    """
    delays = []
    for i, outcome in enumerate(outcomes):
        if outcome.corrected is None:
            continue
        for later in outcomes[i + 1 :]:
            if later.kind == outcome.kind:
                right = later.label == ("defect" if later.truth else "ok")
                if right:
                    delays.append(later.index - outcome.index)
                    break
    return delays


def hindsight_bound(outcomes: Sequence[FrameOutcome]) -> dict[str, int | float | None]:
    """The fewest escapes any one threshold on the final image scores could have given, known in hindsight, while
    sending on no more good parts than the line did.

    A single threshold t has two outcomes: a part scoring below t passes as ok, a part at or above it is sent on
    (rejected, or to a person: one threshold cannot tell the two apart). The line's escapes are its defective
    parts decided ok; an unsure defect was sent to a person and is no escape. Mirroring that, the budget is the
    good parts the line did not pass (decided unsure or defect, ``good_sent_on``), and the bound is the fewest
    defective parts below t over every t with at most that many good parts at or above it (the lowest such t).
    ``ratio`` is the line's escapes over the bound's (1.0 when both are 0, None when only the bound is 0).
    """
    goods = np.sort([o.score for o in outcomes if not o.truth])[::-1]
    defects = np.array([o.score for o in outcomes if o.truth])
    line_escapes = sum(o.truth == 1 and o.label == "ok" for o in outcomes)
    budget = sum(o.truth == 0 and o.label != "ok" for o in outcomes)
    # Every good part may be sent on: nothing needs to pass. Otherwise t lies just above the (budget + 1)-th
    # highest good score, and the defects at or below that score pass.
    escapes = 0 if budget >= len(goods) else int(np.sum(defects <= goods[budget]))
    ratio = (1.0 if line_escapes == 0 else None) if escapes == 0 else line_escapes / escapes
    return {"escapes": escapes, "good_sent_on": budget, "ratio": ratio}


def _allowed(per_1000: float, total: int) -> int:
    """The most parts of ``total`` that stay within ``per_1000`` (the floor, kept from rounding one short)."""
    return math.floor(per_1000 * total / 1000.0 + 1e-9)


def hindsight_band(
    outcomes: Sequence[FrameOutcome],
    escapes_per_1000: float = PLANT_TARGETS["escapes_per_1000"],
    false_alarms_per_1000_good: float = PLANT_TARGETS["false_alarms_per_1000_good"],
) -> dict[str, float | int]:
    """The band (ok below ``low``, defect from ``high``) with the fewest unsure parts that any two thresholds on the
    final image scores could have given, known in hindsight, within the targets for escapes and false alarms.

    It tells the features from the calibration: when even this band sends more parts to a person than a plant can
    live with, no band calibrated without labels will do better on these scores. The two targets constrain one
    threshold each, so the optimum is closed-form: ``high`` the lowest score with at most the allowed good parts at
    or above it, ``low`` the highest with at most the allowed defective parts below it (and at most ``high``).
    """
    goods = np.sort([o.score for o in outcomes if not o.truth])[::-1]
    defects = np.sort([o.score for o in outcomes if o.truth])
    scores = np.array([o.score for o in outcomes])
    false_alarms = _allowed(false_alarms_per_1000_good, len(goods))
    escapes = _allowed(escapes_per_1000, len(outcomes))
    high = -np.inf if false_alarms >= len(goods) else float(np.nextafter(goods[false_alarms], np.inf))
    low = min(high, np.inf if escapes >= len(defects) else float(defects[escapes]))
    unsure = int(np.sum((scores >= low) & (scores < high)))
    return {"low": low, "high": high, "unsure": unsure, "unsure_per_1000": _per_1000(unsure, len(outcomes))}


def summarise(outcomes: Sequence[FrameOutcome], warmup: int) -> dict[str, object]:
    """The plant's figures after the first ``warmup`` frames, and the rolling AUROC over the whole stream."""
    live = [o for o in outcomes if o.index >= warmup]
    defects = [o for o in live if o.truth]
    goods = [o for o in live if not o.truth]
    escapes = sum(o.label == "ok" for o in defects)
    false_alarms = sum(o.label == "defect" for o in goods)
    bound = hindsight_bound(live)
    unsure = sum(o.label == "unsure" for o in live)
    delays = time_to_learn(outcomes)
    rolling = [
        (outcomes[end - 1].index, _auroc(outcomes[max(0, end - ROLLING) : end]))
        for end in range(ROLLING, len(outcomes) + 1, ROLLING // 4)
    ]
    rolling_values = [value for _, value in rolling if value is not None]
    return {
        "frames": len(live),
        "good": len(goods),
        "defective": len(defects),
        "escapes": escapes,
        "escapes_per_1000": _per_1000(escapes, len(live)),
        "hindsight_escapes": bound["escapes"],
        "hindsight_escapes_per_1000": _per_1000(bound["escapes"], len(live)),
        "hindsight_ratio": bound["ratio"],
        "good_sent_on_per_1000_good": _per_1000(bound["good_sent_on"], len(goods)),
        # the fewest unsure parts any band could have given within the plant's targets (PLANT_TARGETS)
        "hindsight_unsure_at_targets_per_1000": hindsight_band(live)["unsure_per_1000"],
        "false_alarms": false_alarms,
        "false_alarms_per_1000_good": _per_1000(false_alarms, len(goods)),
        "unsure": unsure,
        "unsure_per_1000": _per_1000(unsure, len(live)),
        "unsure_good_per_1000_good": _per_1000(sum(o.label == "unsure" for o in goods), len(goods)),
        "known_defect_on_good_per_1000_good": _per_1000(sum(o.nearest_defect is not None for o in goods), len(goods)),
        "auroc": _auroc(live),
        "rolling_auroc_min": min(rolling_values) if rolling_values else None,
        "rolling_auroc": rolling,
        "corrections": sum(o.corrected is not None for o in outcomes),
        # the last frame decided on a provisional band or reference set (None: none was): past the calibration
        # point a line that stays provisional never calibrated
        "last_provisional": max((o.index for o in outcomes if o.provisional), default=None),
        "time_to_learn_median": float(np.median(delays)) if delays else None,
        "time_to_learn_max": max(delays) if delays else None,
    }


def timeline_png(
    outcomes: Sequence[FrameOutcome],
    path: str | Path,
    title: str,
    events: Mapping[int, str] | None = None,
    warmup: int = 0,
) -> Path:
    """The stream at a glance: each frame's score (coloured by decision, shaped by truth), the band, the
    corrections and the stream's events; below it, when the line has judges, their own opinion and its band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    judged = any(o.judge_score is not None for o in outcomes)
    figure, rows = plt.subplots(2 if judged else 1, 1, figsize=(12, 8 if judged else 4.5), dpi=100, squeeze=False)
    top = rows[0][0]
    _opinion_panel(top, outcomes, lambda o: o.score, lambda o: (o.band_low, o.band_high), events, warmup)
    top.set(ylabel="score (window and judges)", title=textwrap.fill(title, 110))  # descriptions are long
    if judged:
        bottom = rows[1][0]
        _opinion_panel(
            bottom, outcomes, lambda o: o.judge_score, lambda o: (o.judge_band_low, o.judge_band_high), events, warmup
        )
        bottom.set(ylabel="the judges' own opinion")
    rows[-1][0].set(xlabel="frame")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def _opinion_panel(
    axes: Any,
    outcomes: Sequence[FrameOutcome],
    score_of: Callable[[FrameOutcome], float | None],
    band_of: Callable[[FrameOutcome], tuple[float | None, float | None]],
    events: Mapping[int, str] | None,
    warmup: int,
) -> None:
    """One opinion over the stream: its score per frame (coloured by the line's decision, shaped by truth), its
    band, the corrected frames, the warm-up and the stream's events."""
    index = np.array([o.index for o in outcomes])
    score = np.array([score_of(o) for o in outcomes], dtype=float)  # None (no opinion) becomes NaN: not drawn
    band = np.array([band_of(o) for o in outcomes], dtype=float).reshape(-1, 2)
    axes.plot(index, band[:, 0], color="#e90", lw=1, label="band low (unsure from here)")
    axes.plot(index, band[:, 1], color="#c22", lw=1, label="band high (defect from here)")
    colours = {"ok": "#2a7", "unsure": "#e90", "defect": "#c22"}
    for label, colour in colours.items():
        for truth, marker in ((0, "o"), (1, "x")):
            chosen = [i for i, o in enumerate(outcomes) if o.label == label and o.truth == truth]
            if chosen:
                kind = "defective" if truth else "good"
                axes.scatter(index[chosen], score[chosen], s=14, c=colour, marker=marker, label=f"{kind}, {label}")
    corrected = [i for i, o in enumerate(outcomes) if o.corrected]
    if corrected:
        axes.scatter(index[corrected], score[corrected], s=70, facecolors="none", edgecolors="#33c", label="corrected")
    if warmup:
        axes.axvspan(index.min(initial=0), warmup, color="#ddd", alpha=0.5, label="warm-up")
    for at, name in (events or {}).items():
        axes.axvline(at, color="#555", ls="--", lw=1)
        axes.text(at, axes.get_ylim()[1], f" {name}", va="top", fontsize=8)
    axes.legend(fontsize=7, ncol=3, loc="upper left")
