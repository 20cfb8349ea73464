"""LNAMD: Local Neighbourhood Aggregation with Multiple Degrees (MuSc, section 3.2).

Each layer's patch grid is LayerNorm-ed over the whole (C, H, W) map of one image, averaged over an
r x r neighbourhood per channel (stride 1, zero padding counted, so border patches shrink toward 0 the
way the reference's unfold + mean does) and L2-normalised per patch, so inner products are cosines.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def lnamd(feature_map: torch.Tensor, r: int) -> torch.Tensor:
    """Aggregate one layer's (B, C, H, W) map at degree ``r``; returns unit patch vectors (B, H*W, C)."""
    if r < 1 or r % 2 == 0:
        raise ValueError(f"aggregation degree r must be a positive odd number, got {r}")
    x = F.layer_norm(feature_map.float(), feature_map.shape[1:])
    if r > 1:
        x = F.avg_pool2d(x, kernel_size=r, stride=1, padding=r // 2, count_include_pad=True)
    return F.normalize(x.flatten(2).transpose(1, 2), dim=-1)
