import numpy as np
import pytest
import torch

from musc_online.batch import score_patches
from musc_online.evaluation import Features, score_subsets, split_subsets
from musc_online.settings import MuscSettings


def test_subsets_cover_every_image_once():
    parts = split_subsets(11, 3, seed=4)
    assert len(parts) == 3
    assert sorted(np.concatenate(parts).tolist()) == list(range(11))
    assert [len(p) for p in parts] in ([4, 4, 3], [4, 3, 4], [3, 4, 4])


@pytest.mark.parametrize("divide_num", [0, 6])
def test_subset_count_must_leave_pairs(divide_num):
    with pytest.raises(ValueError, match="divide_num"):
        split_subsets(11, divide_num)


def test_each_subset_is_scored_on_its_own():
    torch.manual_seed(0)
    features = Features([torch.randn(10, 8, 4, 4)], torch.nn.functional.normalize(torch.randn(10, 6), dim=1))
    settings = MuscSettings(r_list=(1,))
    scores = score_subsets(features, 16, settings, divide_num=2)
    for index in split_subsets(10, 2):
        expected = score_patches(features.subset(index).layer_maps, settings)
        torch.testing.assert_close(scores.patch_maps[torch.from_numpy(index)], expected)
