"""A frame's image-level score, kept on the scorer's device until its decision is made: the maximum of its map, the
online RsCIN over its voters and judges, and the one copy that brings the scalars and the map to the host.

On a GPU every step here is queued without a wait (masks, scores and indices go to the device with non-blocking
copies); ``to_host`` is the frame's only copy back.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch

from musc_online.batch import upsample
from musc_online.device import to_device
from musc_online.online.maps import References
from musc_online.online.settings import OnlineSettings
from musc_online.roi import CareArea
from musc_online.rscin import min_max_normalise, neighbourhood_average


def map_score(patch_map: torch.Tensor, image_size: int, care: CareArea | None) -> torch.Tensor:
    """The maximum of a (H, W) map upsampled to the input size (or to the stitched map's own size where tiles make
    it larger), over the care area if any: a 0-d tensor on the map's device."""
    size = tuple(max(image_size, side) for side in patch_map.shape)
    pixels = upsample(patch_map[None], size)[0]
    if care is None:
        return pixels.max()
    cared = _care_on(care, size, pixels.device)
    return torch.where(cared, pixels, -torch.inf).max()  # the area is never empty (``CareArea.at``)


@lru_cache(maxsize=8)
def _care_on(care: CareArea, size: tuple[int, int], device: torch.device) -> torch.Tensor:
    """The care area at ``size`` on ``device``: copied there once per area, size and device, not twice a frame."""
    return torch.from_numpy(care.at(*size)).to(device)


def rscin_rows(
    settings: OnlineSettings, own: torch.Tensor, similarity: torch.Tensor, scores: torch.Tensor
) -> torch.Tensor:
    """RsCIN for query rows: ``similarity`` (Q, R) to references with ``scores`` (R,) (queries included)."""
    if 0 in settings.musc.k_list:
        return own
    if settings.rscin_normalisation == "minmax":
        scores = min_max_normalise(scores)
    return neighbourhood_average(similarity, scores, settings.musc.k_list)


def rescore(
    scorer: References, raw: torch.Tensor | float, image_feature: torch.Tensor, judge_ids: Sequence[str] = ()
) -> torch.Tensor:
    """Online RsCIN of one frame's raw score over itself, the window's voters and the given judges: a 0-d float32
    tensor on the image feature's device."""
    device = image_feature.device
    raw = torch.as_tensor(raw, dtype=torch.float64, device=device).reshape(1)
    features = [image_feature[None], scorer.window.voter_image_features()]
    scores = [raw, scorer.window.voter_scores().to(device, non_blocking=True)]
    if judge_ids:
        features.append(scorer.judges.image_features(judge_ids).to(device))
        scores.append(to_device([scorer.judges.score(j) for j in judge_ids], torch.float64, device))
    features = torch.cat([f for f in features if f.numel()]).float()
    similarity = image_feature[None] @ features.T
    return rscin_rows(scorer.settings, raw.float(), similarity, torch.cat(scores).float())[0]


def to_host(scalars: Sequence[torch.Tensor | None], patch_map: torch.Tensor) -> tuple[list[float | None], np.ndarray]:
    """0-d ``scalars`` as floats (None stays None) and the map as float32, in one copy from the device."""
    present = [s.reshape(1).double() for s in scalars if s is not None]
    values = torch.cat([*present, patch_map.double().flatten()]).cpu()
    floats = iter(values[: len(present)].tolist())
    host_map = values[len(present) :].view(patch_map.shape).float().numpy()
    return [None if s is None else next(floats) for s in scalars], host_map
