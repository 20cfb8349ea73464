"""Turned copies of seed judges: their angles, their ids, their pixels."""

import numpy as np

from musc_online.online.turns import part_of, turn_angles, turn_image, turned_id


def test_a_seed_turns_in_equal_steps_round_the_circle_and_once_means_not_at_all():
    assert turn_angles(1) == []
    assert turn_angles(4) == [90.0, 180.0, 270.0]
    assert len(turn_angles(12)) == 11 and turn_angles(12)[0] == 30.0


def test_a_turned_copy_is_named_after_its_seed():
    copy_id = turned_id("seed/part-3", 30.0)
    assert copy_id != "seed/part-3" and part_of(copy_id) == "seed/part-3"
    assert part_of("seed/part-3") == "seed/part-3"  # a seed is its own part


def test_quarter_turns_are_exact_and_uncovered_corners_take_the_background():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    np.testing.assert_array_equal(turn_image(image, 90.0), np.rot90(image))  # counter-clockwise
    part = np.full((64, 64, 3), (20, 30, 40), dtype=np.uint8)
    part[24:40, 24:40] = 255
    turned = turn_image(part, 45.0)
    assert turned.shape == part.shape
    np.testing.assert_array_equal(turned[0, 0], (20, 30, 40))  # a corner the turn uncovered
    assert turned[32, 32].tolist() == [255, 255, 255]  # the part stays centred
