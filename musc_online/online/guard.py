"""The known-defect guard: does this frame carry the flaw of a defect an operator confirmed?

Image features alone cannot say: on a uniform product every good part looks like every defective one at the
image level (on bottle, good frames sit at cosine 0.91 to 0.95 of a confirmed broken_large frame). So the
image feature only picks candidates (``defect_match``), and patches decide, as a nearest-neighbour vote with
two memories. The frame's focus is the patch its combined map scores highest, and the one its judges' map
scores highest; at a focus, for each scoring set, the frame's patch is compared with its best match among the
normal references it was just scored against (the voters and judges: already computed by MSM) and with its
best match among the candidate defect's patches. The flaw is the defect's when, at a focus, the defect's patch
is the closer one in at least half of the scoring sets. A good frame's most unusual patch is still matched
better by some of its many normal references than by the one defect; a recurring flaw is not.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from musc_online.online.bank import FeatureBank
from musc_online.online.decision import NearestDefect

CANDIDATES = 3  # defects most like the frame (image features) whose patches are compared


def nearest_known_defect(
    defects: FeatureBank | None,
    defect_match: float,
    image_feature: torch.Tensor,
    sets: Sequence[torch.Tensor],
    grids: Sequence[tuple[int, int]],
    normal_best: Sequence[torch.Tensor],
    focus_maps: Sequence[torch.Tensor | None],
) -> NearestDefect | None:
    """The confirmed defect whose flaw this frame carries, most similar first; None when there is none.

    ``sets`` are the frame's patch features per scoring set (P_s, C_s) on ``grids``, ``normal_best`` its best
    similarity per patch to any normal reference (P_s,), and ``focus_maps`` its anomaly maps on the finest grid
    (combined, judges' own; None where absent).
    """
    if defects is None or len(defects) == 0:
        return None
    foci = [_argmax_cell(m) for m in focus_maps if m is not None]
    for defect_id, similarity in defects.search(image_feature.cpu(), CANDIDATES)[0]:
        if similarity < defect_match:
            break
        stored = defects.patch_features([defect_id])[: len(sets)]  # a tiled frame's tile sets follow its own
        defect_sets = [p[0].to(s.device, s.dtype) for p, s in zip(stored, sets, strict=True)]
        if any(_flaw_matches(sets, grids, normal_best, defect_sets, focus) for focus in foci):
            return NearestDefect(defect_id, defects.label(defect_id), float(similarity))
    return None


def _argmax_cell(finest_map: torch.Tensor) -> tuple[float, float]:
    """The highest-scoring patch of a (H, W) map, as fractions (row, column) of the map's height and width."""
    height, width = finest_map.shape
    index = int(torch.argmax(finest_map))
    return (index // width + 0.5) / height, (index % width + 0.5) / width


def _flaw_matches(
    sets: Sequence[torch.Tensor],
    grids: Sequence[tuple[int, int]],
    normal_best: Sequence[torch.Tensor],
    defect_sets: Sequence[torch.Tensor],
    focus: tuple[float, float],
) -> bool:
    """True when, at ``focus``, the defect's patches match the frame's patch better than any normal reference
    does, in at least half of the scoring sets."""
    votes = 0
    for query, (height, width), best, defect in zip(sets, grids, normal_best, defect_sets, strict=True):
        cell = min(int(focus[0] * height), height - 1) * width + min(int(focus[1] * width), width - 1)
        to_defect = float((defect @ query[cell]).max())
        votes += to_defect > float(best[cell])
    return 2 * votes >= len(sets)
