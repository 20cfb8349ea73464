"""Which torch device a setting names (``auto`` takes the GPU when CUDA is present, else the CPU), and small host
values put on it without a wait."""

from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` as a torch device; ValueError for a GPU that torch cannot see."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("a GPU was asked for, but no GPU is visible to torch")
    return device


def to_device(values: list, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Small host values (row indices, scores) as a tensor on ``device`` without waiting for the device's queued
    work: a non-blocking copy (from pageable memory the driver stages the values at once, so nothing need outlive
    the call), where ``torch.tensor(values, device=...)`` would wait for the GPU to finish everything queued."""
    return torch.tensor(values, dtype=dtype).to(device, non_blocking=True)
