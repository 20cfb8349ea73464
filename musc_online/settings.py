"""The method's own settings (LNAMD degrees, MSM interval, RsCIN windows), free of heavy imports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Rounding = Literal["ceil", "floor"]


@dataclass(frozen=True)
class MuscSettings:
    """The method's knobs; defaults are the paper's MVTec AD settings (ceil interval rounding)."""

    r_list: tuple[int, ...] = (1, 3, 5)
    topmin_max: float = 0.3
    topk_rounding: Rounding = "ceil"
    k_list: tuple[int, ...] = (1, 2, 3)
    block_elements: int | None = None  # similarity block size; None picks one per device
