"""Operators' verdicts acting on a scorer: a frame confirmed good, a frame confirmed defective, an undo.

Feedback is immediate: a frame confirmed good becomes a judge (and votes again), one confirmed defective
stops voting and joins the known-defect bank that names look-alikes. Each verdict records exactly what it
changed, so that ``undo`` reverses it exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from musc_online.online.scorer import OnlineScorer


@dataclass
class Correction:
    """One operator verdict and exactly what it changed, so it can be undone."""

    correction_id: str
    frame_id: str
    verdict: str  # ok | defect
    defect_label: str | None
    previous_label: str
    score: float
    changes: dict[str, bool]
    band_before: tuple[float, float, str]
    band_after: tuple[float, float, str] = (math.nan, math.nan, "unset")
    undone: bool = False


def _start(
    scorer: OnlineScorer,
    correction_id: str | None,
    frame_id: str,
    verdict: str,
    defect_label: str | None,
    score: float,
    previous_label: str,
) -> Correction:
    correction_id = correction_id or f"c{len(scorer.corrections) + 1}"
    if correction_id in scorer.corrections:
        raise ValueError(f"correction id {correction_id!r} is already used")
    band = scorer.thresholds.band
    return Correction(
        correction_id, frame_id, verdict, defect_label, previous_label, score, {}, (band.low, band.high, band.source)
    )


def _finish(scorer: OnlineScorer, correction: Correction) -> Correction:
    band = scorer.thresholds.band
    correction.band_after = (band.low, band.high, band.source)
    scorer.corrections[correction.correction_id] = correction
    return correction


def confirm_normal(scorer: OnlineScorer, frame_id: str, correction_id: str | None = None) -> Correction:
    """An operator says the frame is good: it becomes a judge, votes again, and the band moves if needed."""
    frame = scorer.frame_data(frame_id)
    if scorer.judges is not None and frame_id in scorer.judges:
        raise ValueError(f"frame {frame_id!r} is already a judge (confirmed ok)")
    correction = _start(scorer, correction_id, frame_id, "ok", None, frame.score, frame.label)
    changes = correction.changes
    if scorer.defects is not None and frame_id in scorer.defects:
        correction.defect_label = scorer.defects.label(frame_id)
        scorer.defects.remove(frame_id)
        changes["defect_removed"] = True
    scorer.ensure_banks(frame.image_feature)
    scorer.judges.add(frame_id, frame.image_feature, frame.features, score=frame.score)
    changes["judge_added"] = True
    if frame_id not in scorer.window:
        scorer.admit_to_window(frame_id, frame.features, frame.image_feature, frame.score)
        changes["readmitted"] = True
    scorer.thresholds.add_label(correction.correction_id, frame.score, is_defect=False)
    return _finish(scorer, correction)


def confirm_defect(
    scorer: OnlineScorer, frame_id: str, label: str | None = None, correction_id: str | None = None
) -> Correction:
    """An operator says the frame is defective: it stops voting now and names its look-alikes from then on."""
    frame = scorer.frame_data(frame_id)
    if scorer.defects is not None and frame_id in scorer.defects:
        raise ValueError(f"frame {frame_id!r} is already a known defect")
    correction = _start(scorer, correction_id, frame_id, "defect", label, frame.score, frame.label)
    changes = correction.changes
    if scorer.window.evict(frame_id):
        changes["evicted"] = True
    if scorer.judges is not None and frame_id in scorer.judges:
        scorer.judges.remove(frame_id)
        changes["judge_removed"] = True
    scorer.ensure_banks(frame.image_feature)
    scorer.defects.add(
        frame_id, frame.image_feature.cpu(), [f.cpu() for f in frame.features], label=label, score=frame.score
    )
    changes["defect_added"] = True
    scorer.thresholds.add_label(correction.correction_id, frame.score, is_defect=True)
    return _finish(scorer, correction)


def undo(scorer: OnlineScorer, correction_id: str) -> Correction:
    """Reverse one correction exactly (banks, window membership and band)."""
    correction = scorer.corrections.get(correction_id)
    if correction is None:
        raise KeyError(f"no correction {correction_id!r}")
    if correction.undone:
        raise ValueError(f"correction {correction_id!r} was already undone")
    frame_id, changes = correction.frame_id, correction.changes
    frame = scorer.frame_data(frame_id)
    if changes.get("readmitted"):
        scorer.window.evict(frame_id)
    if changes.get("judge_added"):
        scorer.judges.remove(frame_id)
    if changes.get("defect_added"):
        scorer.defects.remove(frame_id)
    if changes.get("judge_removed"):
        scorer.judges.add(frame_id, frame.image_feature, frame.features, score=frame.score)
    if changes.get("evicted") and frame_id not in scorer.window:
        scorer.admit_to_window(frame_id, frame.features, frame.image_feature, frame.score)
    if changes.get("defect_removed"):
        scorer.defects.add(
            frame_id,
            frame.image_feature.cpu(),
            [f.cpu() for f in frame.features],
            label=correction.defect_label,
            score=frame.score,
        )
    scorer.thresholds.remove_label(correction_id)
    correction.undone = True
    return correction
