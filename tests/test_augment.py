"""Seeded augmentations of good parts (what lets a stream reuse a category's few good images): ranges,
reproducibility, masks that follow the picture, the drifts and the changeover's variant."""

from __future__ import annotations

import numpy as np
import pytest

from musc_online.augment import (
    JPEG_QUALITY,
    MAX_ANGLE,
    MAX_SHIFT,
    Augmentation,
    augment,
    draw_augmentation,
    lighting_gain,
    position_shift,
    variant,
    variant_mask,
)

from .made_pictures import flat_disc, textured

SIZE = 48
FLAT_SIZE = 64


def _textured(rng: np.random.Generator) -> np.ndarray:
    return textured(rng, SIZE)


def _flat() -> np.ndarray:
    return flat_disc(FLAT_SIZE)


def test_augmentation_draws_stay_in_range_and_strength_zero_is_none():
    rng = np.random.default_rng(0)
    for _ in range(200):
        a = draw_augmentation(rng)
        assert abs(a.shift_x) <= MAX_SHIFT and abs(a.shift_y) <= MAX_SHIFT and abs(a.angle) <= MAX_ANGLE
        assert 0.92 <= a.gain <= 1.08 and abs(a.offset) <= 6.0 and 1.0 <= a.noise_sigma <= 3.0
        assert JPEG_QUALITY[0] <= a.jpeg_quality <= JPEG_QUALITY[1]
        assert not a.is_identity and a.describe()
    assert draw_augmentation(rng, strength=0.0).is_identity
    image = _textured(np.random.default_rng(1))
    assert np.array_equal(augment(image, np.random.default_rng(2), strength=0.0), image)
    with pytest.raises(ValueError, match="strength"):
        draw_augmentation(rng, strength=-1.0)


def test_augment_is_bit_identical_for_a_seed_and_never_returns_the_input():
    image = _textured(np.random.default_rng(1))
    first = augment(image, np.random.default_rng(7))
    assert first.dtype == np.uint8 and first.shape == image.shape
    assert np.array_equal(first, augment(image, np.random.default_rng(7)))
    assert not np.array_equal(first, augment(image, np.random.default_rng(8)))
    flat = np.full((16, 16, 3), 128, np.uint8)  # noise may vanish in the JPEG round trip: still a change
    for seed in range(20):
        assert not np.array_equal(augment(flat, np.random.default_rng(seed)), flat)
    assert not np.array_equal(Augmentation(gain=1.0001).apply(flat), flat)  # a change too small to show


def test_masks_follow_shift_and_rotation():
    image = _flat()
    disc = image.mean(axis=-1) < 90
    moved = Augmentation(shift_x=0.1, shift_y=-0.05)
    mask = moved.apply_mask(disc)
    shifted = moved.apply(image).mean(axis=-1) < 90
    delta = np.argwhere(mask).mean(axis=0) - np.argwhere(disc).mean(axis=0)
    assert delta == pytest.approx([-0.05 * FLAT_SIZE, 0.1 * FLAT_SIZE], abs=1.0)
    assert (mask & shifted).sum() / (mask | shifted).sum() > 0.9
    off_centre = np.zeros((FLAT_SIZE, FLAT_SIZE), bool)
    off_centre[8:16, 40:50] = True
    picture = np.where(off_centre[..., None], 20, 160).astype(np.uint8).repeat(3, axis=-1)
    turned = Augmentation(angle=3.0, drift_x=0.05)
    mask, dark = turned.apply_mask(off_centre), turned.apply(picture).mean(axis=-1) < 90
    assert not np.array_equal(mask, off_centre)
    assert (mask & dark).sum() / (mask | dark).sum() > 0.85


def test_drifts_are_monotonic_pure_functions():
    ts = np.linspace(0.0, 1.0, 11)
    gains, shifts = [lighting_gain(t) for t in ts], [position_shift(t) for t in ts]
    assert gains[0] == 1.0 and gains[-1] == pytest.approx(1.35) and np.all(np.diff(gains) > 0)
    assert shifts[0] == 0.0 and shifts[-1] == pytest.approx(0.10) and np.all(np.diff(shifts) > 0)
    with pytest.raises(ValueError, match="t must be"):
        lighting_gain(1.5)


def test_variant_swaps_channels_and_shrinks_the_part_with_its_mask():
    image = _textured(np.random.default_rng(3))
    changed = variant(image)
    assert changed.shape == image.shape and changed.dtype == np.uint8
    red, green, blue = changed.reshape(-1, 3).mean(axis=0)
    assert green > blue > red  # B, R, G of an image with R > G > B
    mask = np.zeros((40, 40), bool)
    mask[4:12, 4:12] = True
    small = variant_mask(mask)
    assert small.sum() < mask.sum()
    assert np.argwhere(small).mean(axis=0) == pytest.approx(20 + 0.85 * (np.argwhere(mask).mean(axis=0) - 20), abs=1)
