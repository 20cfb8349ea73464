"""The rolling window: LNAMD features of the last W admitted frames, the voters every new frame is scored by.

Features live in one preallocated buffer per scoring set (W, P, C) on the scorer's device, so scoring a
frame multiplies against the buffer in place; a slot is reused when its frame leaves. Frames leave when
W newer ones have been admitted, or at once when an operator confirms them defective.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Container, Iterator, Sequence

import torch

from musc_online.device import to_device


class RollingWindow:
    """Ring of at most ``capacity`` admitted frames, oldest first."""

    def __init__(self, capacity: int, device: torch.device, dtype: torch.dtype) -> None:
        if capacity < 1:
            raise ValueError(f"window size must be at least 1, got {capacity}")
        self.capacity = capacity
        self.device = device
        self.dtype = dtype
        self.buffers: list[torch.Tensor] = []  # per scoring set (capacity, P_s, C_s), allocated on first admit
        self.image_features: torch.Tensor | None = None  # (capacity, D), float32
        self.scores = torch.zeros(capacity, dtype=torch.float64)
        self._slots: OrderedDict[str, int] = OrderedDict()  # frame id -> slot, in admission order
        self._free = list(range(capacity - 1, -1, -1))

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, frame_id: object) -> bool:
        return frame_id in self._slots

    def __iter__(self) -> Iterator[str]:
        """Frame ids, oldest first."""
        return iter(self._slots)

    @property
    def ids(self) -> list[str]:
        """Frame ids, oldest first."""
        return list(self._slots)

    @property
    def full(self) -> bool:
        return len(self._slots) == self.capacity

    def slots(self) -> torch.Tensor:
        """Occupied slot indices, oldest first (on the device, for index_select; copied there without a wait)."""
        return to_device(list(self._slots.values()), torch.long, self.device)

    def block_rows(self, wanted: Container[str]) -> list[int]:
        """The rows of the voters in ``wanted`` within the voters' block a frame is scored against
        (``maps.reference_blocks``): their slots when the window is full (the buffer is used as it is), else their
        places among the voters, oldest first."""
        rows = enumerate(self._slots.items())
        return [slot if self.full else i for i, (frame_id, slot) in rows if frame_id in wanted]

    def _allocate(self, features: Sequence[torch.Tensor], image_feature: torch.Tensor) -> None:
        self.buffers = [torch.zeros((self.capacity, *f.shape), dtype=self.dtype, device=self.device) for f in features]
        self.image_features = torch.zeros((self.capacity, image_feature.numel()), device=self.device)

    def admit(
        self, frame_id: str, features: Sequence[torch.Tensor], image_feature: torch.Tensor, score: float
    ) -> str | None:
        """Add a frame as the newest voter; returns the id of the oldest frame it pushed out, if any."""
        if frame_id in self._slots:
            raise ValueError(f"frame {frame_id!r} is already in the window")
        if not self.buffers:
            self._allocate(features, image_feature)
        pushed_out = None
        if not self._free:
            pushed_out, slot = self._slots.popitem(last=False)
            self._free.append(slot)
        slot = self._free.pop()
        for buffer, f in zip(self.buffers, features, strict=True):
            buffer[slot].copy_(f)
        self.image_features[slot].copy_(image_feature.reshape(-1))
        self.scores[slot] = score
        self._slots[frame_id] = slot
        return pushed_out

    def evict(self, frame_id: str) -> bool:
        """Remove a frame's vote now (confirmed defect); False if it was not in the window."""
        slot = self._slots.pop(frame_id, None)
        if slot is None:
            return False
        self._free.append(slot)
        return True

    def features_of(self, frame_id: str) -> list[torch.Tensor]:
        """A window frame's stored features per scoring set."""
        slot = self._slots[frame_id]
        return [buffer[slot] for buffer in self.buffers]

    def voter(self, frame_id: str) -> tuple[torch.Tensor, float]:
        """A window frame's image feature and score."""
        slot = self._slots[frame_id]
        return self.image_features[slot].clone(), float(self.scores[slot])

    def voter_scores(self) -> torch.Tensor:
        """Image scores of the voters, oldest first."""
        return self.scores[list(self._slots.values())]

    def voter_image_features(self) -> torch.Tensor:
        """Image features (n, D) of the voters, oldest first."""
        if self.image_features is None:
            return torch.zeros((0, 0), device=self.device)
        return self.image_features.index_select(0, self.slots())
