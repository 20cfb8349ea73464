"""Operators' verdicts acting on a scorer: a frame confirmed good, a frame confirmed defective, an undo.

Feedback is immediate: a frame confirmed good becomes a judge (and votes again), one confirmed defective
stops voting and joins the known-defect bank that names look-alikes. Each verdict records exactly what it
changed, so that ``undo`` reverses it exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from musc_online.online.history import FrameRecord
from musc_online.online.scorer import OnlineScorer


class UnknownFrameError(KeyError):
    """A correction names a frame the scorer no longer (or never) held."""

    def __str__(self) -> str:
        return str(self.args[0])


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
    judge_score: float | None = None  # the judges' own opinion of the frame when it was decided


def frame_data(scorer: OnlineScorer, frame_id: str) -> FrameRecord:
    """A frame's features, score and decided label, wherever the scorer still holds them."""
    if frame_id in scorer.history:
        return scorer.history[frame_id]
    if frame_id in scorer.window:
        image_feature, score = scorer.window.voter(frame_id)
        return FrameRecord(scorer.window.features_of(frame_id), image_feature, score, "ok")
    for bank, label in ((scorer.judges, "ok"), (scorer.defects, "defect")):
        if bank is not None and frame_id in bank:
            features = [f.to(scorer.device, scorer.dtype) for f in bank.patch_features([frame_id])]
            image_feature = bank.image_features([frame_id])[0].to(scorer.device)
            return FrameRecord([f[0] for f in features], image_feature, float(bank.score(frame_id)), label)
    raise UnknownFrameError(
        f"frame {frame_id!r} is not among the last {scorer.settings.history} frames, the voters, the judges or "
        "the known defects: it is too old (or unknown) to correct; add its image as a judge instead"
    )


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
    band = scorer.calibration.band()
    return Correction(
        correction_id, frame_id, verdict, defect_label, previous_label, score, {}, (band.low, band.high, band.source)
    )


def _finish(scorer: OnlineScorer, correction: Correction) -> Correction:
    band = scorer.calibration.band()
    correction.band_after = (band.low, band.high, band.source)
    scorer.corrections[correction.correction_id] = correction
    return correction


def confirm_normal(scorer: OnlineScorer, frame_id: str, correction_id: str | None = None) -> Correction:
    """An operator says the frame is good: it becomes a judge, votes again, and the band moves if needed."""
    frame = frame_data(scorer, frame_id)
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
    correction.judge_score = frame.judge_score
    scorer.calibration.add_label(correction.correction_id, frame.score, frame.judge_score, is_defect=False)
    scorer.calibration.add_known_good(frame.score, frame.judge_score)  # a part known to be good from now on
    return _finish(scorer, correction)


def confirm_defect(
    scorer: OnlineScorer, frame_id: str, label: str | None = None, correction_id: str | None = None
) -> Correction:
    """An operator says the frame is defective: it stops voting now and names its look-alikes from then on."""
    frame = frame_data(scorer, frame_id)
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
    correction.judge_score = frame.judge_score
    scorer.calibration.add_label(correction.correction_id, frame.score, frame.judge_score, is_defect=True)
    return _finish(scorer, correction)


def undo(scorer: OnlineScorer, correction_id: str) -> Correction:
    """Reverse one correction exactly (banks, window membership and band)."""
    correction = scorer.corrections.get(correction_id)
    if correction is None:
        raise KeyError(f"no correction {correction_id!r}")
    if correction.undone:
        raise ValueError(f"correction {correction_id!r} was already undone")
    frame_id, changes = correction.frame_id, correction.changes
    frame = frame_data(scorer, frame_id)
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
    scorer.calibration.remove_label(correction_id)
    if correction.verdict == "ok":
        scorer.calibration.remove_known_good(correction.score, correction.judge_score)
    correction.undone = True
    return correction
