"""The known-defect guard: patches decide, the image feature only picks candidates."""

import torch
import torch.nn.functional as F

from musc_online.online.bank import FeatureBank
from musc_online.online.guard import nearest_known_defect

GRIDS = [(4, 4), (2, 2)]
DIM, CHANNELS = 8, 16


def _unit(*shape: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


def _setup(flaw: torch.Tensor, flaw_at: int):
    """A defect whose patch ``flaw_at`` (finest grid) carries ``flaw``, and normal parts that do not."""
    defect_sets = [_unit(h * w, CHANNELS, seed=10 + s) for s, (h, w) in enumerate(GRIDS)]
    defect_sets[0][flaw_at] = flaw
    defect_sets[1][0] = flaw  # the coarse grid's cell over the same place (top left)
    bank = FeatureBank(DIM)
    image_feature = _unit(DIM, seed=1)
    bank.add("d1", image_feature, defect_sets, label="crack")
    return bank, image_feature


def _frame(flaw: torch.Tensor | None):
    """A frame whose top-left patch is the flaw (or a normal patch), with its best match to normal parts."""
    sets = [_unit(h * w, CHANNELS, seed=20 + s) for s, (h, w) in enumerate(GRIDS)]
    normal_best = [torch.full((h * w,), 0.8) for h, w in GRIDS]  # every patch has a close normal look-alike...
    focus = torch.zeros(4, 4)
    focus[0, 0] = 1.0  # ... and the top-left one scores highest
    if flaw is not None:
        sets[0][0], sets[1][0] = flaw, flaw
        normal_best[0][0], normal_best[1][0] = 0.3, 0.3  # the flaw's nearest normal patch is far
    return sets, normal_best, [focus, None]


def test_a_frame_carrying_the_flaw_is_named_and_a_good_look_alike_is_not():
    flaw = _unit(CHANNELS, seed=99)
    bank, image_feature = _setup(flaw, flaw_at=0)
    sets, normal_best, maps = _frame(flaw)
    found = nearest_known_defect(bank, 0.9, image_feature, sets, GRIDS, normal_best, maps)
    assert found is not None and (found.frame_id, found.label) == ("d1", "crack")
    assert found.similarity > 0.99
    good_sets, good_best, good_maps = _frame(None)  # the same image feature: image similarity alone would name it
    assert nearest_known_defect(bank, 0.9, image_feature, good_sets, GRIDS, good_best, good_maps) is None


def test_candidates_need_image_similarity_and_a_bank():
    flaw = _unit(CHANNELS, seed=99)
    bank, _ = _setup(flaw, flaw_at=0)
    sets, normal_best, maps = _frame(flaw)
    unlike = _unit(DIM, seed=2)
    assert nearest_known_defect(bank, 0.9, unlike, sets, GRIDS, normal_best, maps) is None
    assert nearest_known_defect(None, 0.9, unlike, sets, GRIDS, normal_best, maps) is None
    assert nearest_known_defect(FeatureBank(DIM), 0.9, unlike, sets, GRIDS, normal_best, maps) is None
