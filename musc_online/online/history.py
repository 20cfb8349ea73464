"""The scorer's memory of recent frames: each frame's features and verdict, kept so that an operator's correction
can act on it. Bounded: the oldest beyond its size are forgotten (the daemon can recall them from their pictures).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch


@dataclass
class FrameRecord:
    """A frame's features and verdict, kept so an operator's correction can act on it."""

    features: list[torch.Tensor]
    image_feature: torch.Tensor
    score: float
    label: str
    judge_score: float | None = None


class FrameHistory:
    """The last ``size`` frames' records by frame id, oldest first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._records: OrderedDict[str, FrameRecord] = OrderedDict()

    def __contains__(self, frame_id: object) -> bool:
        return frame_id in self._records

    def __getitem__(self, frame_id: str) -> FrameRecord:
        return self._records[frame_id]

    def __len__(self) -> int:
        return len(self._records)

    def remember(self, frame_id: str, record: FrameRecord) -> None:
        """Keep a frame's record as the newest, forgetting the oldest beyond ``size``; a recalled frame does not
        vote, and nothing is re-scored."""
        self._records[frame_id] = record
        self._records.move_to_end(frame_id)
        while len(self._records) > self.size:
            self._records.popitem(last=False)
