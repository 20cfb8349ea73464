"""The online scorer's knobs: window, judges, admission, RsCIN scale, history, calibration, defect naming."""

from __future__ import annotations

from dataclasses import dataclass, field

from musc_online.online.thresholds import ThresholdSettings
from musc_online.settings import MuscSettings

ADMISSION_POLICIES = ("ok", "all")
NORMALISATIONS = ("none", "minmax")


@dataclass(frozen=True)
class OnlineSettings:
    """Knobs of the online scorer; ``musc`` holds the method's own (degrees, interval, RsCIN windows)."""

    window: int = 64  # W: admitted frames that vote
    judges_per_frame: int = 16  # judges added to each frame's references once the window is full
    admission: str = "ok"  # "ok": only frames decided ok vote; "all": every frame votes (the paper)
    rscin_normalisation: str = "none"  # "none": scores keep their scale; "minmax": the reference's, per frame
    history: int = 64  # recent frames whose features are kept for corrections
    calibration_scores: int = 32  # normal scores after which the band is calibrated and frozen
    defect_match: float = 0.9  # image-feature similarity above which a known defect is named
    musc: MuscSettings = field(default_factory=MuscSettings)
    thresholds: ThresholdSettings = field(default_factory=ThresholdSettings)

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"window must be at least 1 frame, got {self.window}")
        if self.judges_per_frame < 0:
            raise ValueError(f"judges_per_frame must be >= 0, got {self.judges_per_frame}")
        if self.admission not in ADMISSION_POLICIES:
            raise ValueError(f"admission must be one of {ADMISSION_POLICIES}, got {self.admission!r}")
        if self.rscin_normalisation not in NORMALISATIONS:
            raise ValueError(f"rscin_normalisation must be one of {NORMALISATIONS}, got {self.rscin_normalisation!r}")
        if self.history < 0 or self.calibration_scores < self.thresholds.min_scores:
            raise ValueError("history must be >= 0 and calibration_scores >= thresholds.min_scores")
        if not -1.0 <= self.defect_match <= 1.0:
            raise ValueError(f"defect_match is a cosine similarity in [-1, 1], got {self.defect_match}")
