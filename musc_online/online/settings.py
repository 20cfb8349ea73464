"""The online scorer's settings: window, judges, admission, RsCIN scale, history, calibration, defect naming,
and how the decision band is calibrated. See ``musc_online.settings`` for how settings are declared."""

from __future__ import annotations

from dataclasses import dataclass, field

from musc_online.settings import (
    MuscSettings,
    SettingError,
    TileSettings,
    at_least,
    between,
    check_fields,
    knob,
    one_of,
)

ADMISSION_POLICIES = ("ok", "all")
NORMALISATIONS = ("none", "minmax")


@dataclass(frozen=True)
class ThresholdSettings:
    """How the decision band is calibrated from normal scores (see ``thresholds``)."""

    quantile: float = knob(
        0.95, "Quantile of the normal scores where the margins start, in [0.5, 1).", between(0.5, 0.99999)
    )
    low_margin: float = knob(
        1.0, "Robust standard deviations above the quantile where the unsure band starts.", at_least(0.0)
    )
    high_margin: float = knob(
        3.0, "Robust standard deviations above the quantile where defects start (at least low_margin).", at_least(0.0)
    )
    min_scores: int = knob(8, "Normal scores needed for any band; with fewer every decision is unsure.", at_least(2))
    method: str = knob(
        "target",
        '"target": the band from stated rates of good parts flagged and decided defect (an extreme-value tail '
        'fitted to the known-good scores\' median and spread); "quantile": the quantile plus margins above.',
        one_of("target", "quantile"),
    )
    false_alarms_per_1000: float = knob(
        2.0,
        "target: good parts per 1,000 expected at or above the band's high end (decided defect).",
        between(0.01, 500),
    )
    flagged_per_1000: float = knob(
        20.0,
        "target: good parts per 1,000 expected at or above the band's low end (unsure or defect: an operator looks).",
        between(0.01, 500),
    )

    def __post_init__(self) -> None:
        check_fields(self)
        if self.high_margin < self.low_margin:
            raise SettingError(("high_margin", "low_margin"), "must be at least low_margin")
        if self.flagged_per_1000 < self.false_alarms_per_1000:
            raise SettingError(("flagged_per_1000", "false_alarms_per_1000"), "must be at least false_alarms_per_1000")


@dataclass(frozen=True)
class OnlineSettings:
    """Knobs of the online scorer; ``musc`` holds the method's own (degrees, interval, RsCIN windows)."""

    window: int = knob(64, "Admitted frames that vote (the rolling window W).", at_least(1))
    judges_per_frame: int = knob(16, "Judges added to each frame's references once the window is full.", at_least(0))
    judge_turns: int = knob(
        1,
        "Copies of each seed judge in the bank, turned in equal steps round the circle (1: the seed alone). For "
        "parts that lie at any angle: 12 (30 degree steps) took screw's stream AUROC from 0.63 to 0.85.",
        at_least(1),
    )
    admission: str = knob(
        "ok",
        'Which frames join the window: "ok" (only frames decided ok) or "all" (every frame, as the paper).',
        one_of(*ADMISSION_POLICIES),
    )
    rscin_normalisation: str = knob(
        "none",
        'RsCIN score scale: "none" (scores keep their scale) or "minmax" (normalised per frame over its references).',
        one_of(*NORMALISATIONS),
    )
    history: int = knob(
        64, "Recent frames whose features are kept so that operators' corrections can act on them.", at_least(0)
    )
    calibration_scores: int = knob(
        32,
        "Normal scores after which the threshold band is calibrated and frozen (at least thresholds.min_scores).",
        at_least(2),
    )
    anchor: str = knob(
        "judges",
        '"judges": a frame is decided ok only when its judges alone also find it normal, so frames in the window '
        'cannot vouch for their look-alikes on their own; "none": the window and judges together decide (the paper).',
        one_of("judges", "none"),
    )
    defect_guard: bool = knob(
        True, "A frame that carries the flaw of a defect an operator confirmed (see defect_match) is never decided ok."
    )
    defect_match: float = knob(
        0.9,
        "Image-feature cosine similarity from which a confirmed defect's patches are compared with a frame's (the"
        " frame is named after it when its flaw matches), in [-1, 1].",
        between(-1.0, 1.0),
    )
    musc: MuscSettings = field(default_factory=MuscSettings)
    thresholds: ThresholdSettings = field(default_factory=ThresholdSettings)
    tiles: TileSettings = field(default_factory=TileSettings)

    def __post_init__(self) -> None:
        check_fields(self)
        if self.calibration_scores < self.thresholds.min_scores:
            raise SettingError(
                ("calibration_scores", "thresholds.min_scores"), "must be at least thresholds.min_scores"
            )
