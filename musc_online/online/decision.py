"""What the online scorer says about a frame: its score and label, the band it was judged by, its patch map."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from musc_online.batch import upsample
from musc_online.online.thresholds import ThresholdBand


@dataclass(frozen=True)
class NearestDefect:
    """The confirmed defect a frame looks most like, when it is close enough to name."""

    frame_id: str
    label: str | None
    similarity: float


@dataclass
class Decision:
    """What the scorer says about one frame."""

    frame_id: str
    score: float  # final image score (after RsCIN), what the band judges
    raw_score: float  # maximum of the anomaly map, before RsCIN
    label: str  # ok | unsure | defect
    band: ThresholdBand
    provisional: bool  # the reference set has not reached its steady size, or the band is not calibrated
    patch_scores: np.ndarray  # (H, W) float32 on the finest patch grid
    image_size: tuple[int, int]  # (height, width) of the frame as received
    references: dict[str, int]  # voters and judges this frame was scored against
    nearest_defect: NearestDefect | None
    admitted: bool
    timings_ms: dict[str, float]
    judge_score: float | None = None  # the judges' own opinion: the frame's MSM against its judges alone
    opinions: dict[str, str | None] = field(default_factory=dict)  # combined, judges, known_defect: what said what

    def heatmap(self, size: tuple[int, int] | None = None) -> np.ndarray:
        """Anomaly map at the frame's size (or ``size``), bilinear with align_corners=True like the batch maps."""
        target = size or self.image_size
        grid = torch.from_numpy(self.patch_scores.astype(np.float32))[None]
        return upsample(grid, target)[0].numpy()


def combine_opinions(
    combined: str, judged: str | None, known_defect: str | None, anchor: str
) -> tuple[str, dict[str, str | None]]:
    """The label from the combined opinion, the judges' own (``anchor = "judges"``) and the nearest confirmed
    defect: a frame the combined opinion finds ok is unsure when its judges alone do not, or when it looks like
    a confirmed defect. A defect stays a defect whatever the judges say (they may not cover this variant)."""
    label = combined
    if label == "ok" and anchor == "judges" and judged not in (None, "ok"):
        label = "unsure"
    if label == "ok" and known_defect is not None:
        label = "unsure"
    return label, {"combined": combined, "judges": judged, "known_defect": known_defect}
