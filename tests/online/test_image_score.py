"""A frame's image score on the scorer's device: the map's maximum over the care area, and the one copy to the host."""

import numpy as np
import torch

from musc_online.online.image_score import map_score, to_host
from musc_online.roi import CareArea


def test_the_image_score_is_the_maximum_over_the_care_area_only():
    care = CareArea.from_polygons([[[0, 0], [50, 0], [50, 100], [0, 100]]], (100, 100))  # the left half
    pixels = torch.zeros((4, 4), dtype=torch.float64)
    pixels[0, 3] = 9.0  # outside
    pixels[2, 1] = 2.0  # inside
    assert float(map_score(pixels, 4, care)) == 2.0 and float(map_score(pixels, 4, None)) == 9.0


def test_scores_and_map_come_to_the_host_together_none_kept():
    patch_map = torch.arange(6, dtype=torch.float64).reshape(2, 3) / 7
    scalars, host_map = to_host([torch.tensor(0.25, dtype=torch.float64), None, torch.tensor(1 / 3)], patch_map)
    assert scalars == [0.25, None, float(torch.tensor(1 / 3))]
    assert host_map.dtype == np.float32 and np.array_equal(host_map, patch_map.float().numpy())
