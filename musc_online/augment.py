"""Small seeded changes to product images: the variation a camera sees from part to part, slow drifts of
lighting and position, and a strongly changed variant of a product for a changeover.

Every change is drawn from a numpy Generator, so the same seed gives the same pixels; masks follow every
geometric change (nearest neighbour), so pixel metrics stay meaningful.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

MAX_SHIFT = 0.03  # small augmentation: shift up to this fraction of the side, in x and y
MAX_ANGLE = 3.0  # degrees
MAX_GAIN_CHANGE = 0.08  # brightness gain 1 ± this
MAX_OFFSET = 6.0  # brightness offset ± this
NOISE_SIGMA = (1.0, 3.0)  # Gaussian noise σ range
JPEG_QUALITY = (85, 95)  # JPEG round-trip quality range
LIGHT_DRIFT = 0.35  # lighting drift: gain 1 + 0.35 t
POSITION_DRIFT = 0.10  # position drift: sideways shift growing to this fraction of the side
VARIANT_CHANNELS = (2, 0, 1)  # product B of the changeover: channels B, R, G
VARIANT_SCALE = 0.85  # product B: the part scaled down to this, centred on an edge-replicated canvas


@dataclass(frozen=True)
class Augmentation:
    """The changes made to one frame: a small seeded augmentation plus the slow drifts at its position."""

    shift_x: float = 0.0  # fraction of the width, + moves the part right
    shift_y: float = 0.0  # fraction of the height, + moves the part down
    angle: float = 0.0  # rotation about the centre, degrees
    gain: float = 1.0
    offset: float = 0.0
    noise_sigma: float = 0.0
    noise_seed: int = 0
    jpeg_quality: int | None = None  # None: no JPEG round trip
    light: float = 1.0  # lighting drift gain
    drift_x: float = 0.0  # position drift, fraction of the width

    @property
    def is_identity(self) -> bool:
        """Whether nothing is to be changed."""
        return self == Augmentation(noise_seed=self.noise_seed)

    def apply(self, image: np.ndarray) -> np.ndarray:
        """A new RGB uint8 image with these changes; it never equals ``image`` unless nothing is to be changed."""
        _check_rgb(image)
        if self.is_identity:
            return image.copy()
        out = _warp(image, self.shift_x + self.drift_x, self.shift_y, self.angle, Image.Resampling.BILINEAR)
        if self.gain != 1.0 or self.offset != 0.0 or self.light != 1.0 or self.noise_sigma > 0.0:
            values = (out.astype(np.float32) * np.float32(self.gain) + np.float32(self.offset)) * np.float32(self.light)
            if self.noise_sigma > 0.0:
                noise = np.random.default_rng(self.noise_seed).standard_normal(values.shape, dtype=np.float32)
                values += noise * np.float32(self.noise_sigma)
            out = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        if self.jpeg_quality is not None:
            out = _jpeg_round_trip(out, self.jpeg_quality)
        if np.array_equal(out, image):  # e.g. a flat image whose noise the JPEG round trip smoothed away
            out = _nudge(out)
        return out

    def apply_mask(self, mask: np.ndarray) -> np.ndarray:
        """A bool mask moved like the image (shift, drift and rotation; nearest neighbour, edge fill)."""
        moved = _warp(
            np.asarray(mask, dtype=bool).astype(np.uint8) * 255,
            self.shift_x + self.drift_x,
            self.shift_y,
            self.angle,
            Image.Resampling.NEAREST,
        )
        return moved > 127

    def describe(self) -> str:
        """A short human-readable account of the changes, "" for none."""
        parts = []
        if self.shift_x or self.shift_y:
            parts.append(f"shift {self.shift_x:+.1%},{self.shift_y:+.1%}")
        if self.angle:
            parts.append(f"rot {self.angle:+.1f}deg")
        if self.gain != 1.0 or self.offset:
            parts.append(f"gain {self.gain:.3f} offset {self.offset:+.1f}")
        if self.noise_sigma:
            parts.append(f"noise {self.noise_sigma:.1f}")
        if self.jpeg_quality is not None:
            parts.append(f"jpeg q{self.jpeg_quality}")
        if self.light != 1.0:
            parts.append(f"light x{self.light:.3f}")
        if self.drift_x:
            parts.append(f"drift x {self.drift_x:+.1%}")
        return ", ".join(parts)


def draw_augmentation(rng: np.random.Generator, strength: float = 1.0) -> Augmentation:
    """Draw a small augmentation from ``rng`` (a fixed number of draws); ranges scale with ``strength``, 0 = none.

    At strength 1: shift up to ±3 % of the side, rotation ±3°, gain 0.92–1.08, offset ±6, noise σ 1–3 and a
    JPEG round trip at quality 85–95.
    """
    if not strength >= 0.0:
        raise ValueError(f"augmentation strength must be >= 0, got {strength}")
    shift_x, shift_y, angle, gain, offset = rng.uniform(-1.0, 1.0, size=5)
    sigma, quality = rng.uniform(0.0, 1.0, size=2)
    noise_seed = int(rng.integers(0, 2**63 - 1))
    if strength == 0.0:
        return Augmentation()
    low, high = JPEG_QUALITY
    return Augmentation(
        shift_x=float(MAX_SHIFT * strength * shift_x),
        shift_y=float(MAX_SHIFT * strength * shift_y),
        angle=float(MAX_ANGLE * strength * angle),
        gain=float(1.0 + MAX_GAIN_CHANGE * strength * gain),
        offset=float(MAX_OFFSET * strength * offset),
        noise_sigma=float(strength * (NOISE_SIGMA[0] + (NOISE_SIGMA[1] - NOISE_SIGMA[0]) * sigma)),
        noise_seed=noise_seed,
        jpeg_quality=int(np.clip(round(high - (high - low) * strength * quality), 1, high)),
    )


def augment(image: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """A new RGB uint8 image with a small augmentation drawn from ``rng`` (see ``draw_augmentation``)."""
    return draw_augmentation(rng, strength).apply(image)


def lighting_gain(t: float) -> float:
    """The lighting drift's gain at stream position ``t`` in [0, 1]: 1 + 0.35 t."""
    return 1.0 + LIGHT_DRIFT * _check_position(t)


def position_shift(t: float) -> float:
    """The position drift at stream position ``t`` in [0, 1]: a sideways shift growing linearly to 10 % of the side."""
    return POSITION_DRIFT * _check_position(t)


def variant(image: np.ndarray) -> np.ndarray:
    """Product B of the changeover: channels swapped to B, R, G and the part scaled to 85 %, centred, edge fill."""
    _check_rgb(image)
    return _scale_centred(image[..., list(VARIANT_CHANNELS)], VARIANT_SCALE, Image.Resampling.BILINEAR)


def variant_mask(mask: np.ndarray) -> np.ndarray:
    """A bool mask transformed like ``variant`` transforms its image (nearest neighbour)."""
    scaled = _scale_centred(
        np.asarray(mask, dtype=bool).astype(np.uint8) * 255, VARIANT_SCALE, Image.Resampling.NEAREST
    )
    return scaled > 127


def _check_position(t: float) -> float:
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"stream position t must be in [0, 1], got {t}")
    return float(t)


def _check_rgb(image: np.ndarray) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {image.dtype} {image.shape}")


def _warp(image: np.ndarray, shift_x: float, shift_y: float, angle: float, resample: Image.Resampling) -> np.ndarray:
    """Shift (fractions of the side) and rotate (degrees, about the centre) with edge replication."""
    if shift_x == 0.0 and shift_y == 0.0 and angle == 0.0:
        return image
    height, width = image.shape[:2]
    tx, ty = shift_x * width, shift_y * height
    cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    # Enough edge-replicated margin that every source point of the output lies inside the padded image.
    margin = math.ceil(abs(tx) + abs(ty) + (abs(sin) + 1.0 - cos) * max(height, width)) + 2
    padded = np.pad(image, ((margin, margin), (margin, margin)) + ((0, 0),) * (image.ndim - 2), mode="edge")
    cx, cy = width / 2.0, height / 2.0
    # Output point p reads the source at R⁻¹ (p - c - t) + c, shifted by the margin into the padded image.
    coefficients = (
        cos,
        sin,
        cx + margin - cos * (cx + tx) - sin * (cy + ty),
        -sin,
        cos,
        cy + margin + sin * (cx + tx) - cos * (cy + ty),
    )
    warped = Image.fromarray(padded).transform((width, height), Image.Transform.AFFINE, coefficients, resample)
    return np.asarray(warped)


def _scale_centred(image: np.ndarray, scale: float, resample: Image.Resampling) -> np.ndarray:
    """``image`` scaled by ``scale`` and centred on a canvas of its own size, filled by edge replication."""
    height, width = image.shape[:2]
    inner_w, inner_h = max(1, round(width * scale)), max(1, round(height * scale))
    small = np.asarray(Image.fromarray(image).resize((inner_w, inner_h), resample))
    top, left = (height - inner_h) // 2, (width - inner_w) // 2
    pad = ((top, height - inner_h - top), (left, width - inner_w - left)) + ((0, 0),) * (image.ndim - 2)
    return np.pad(small, pad, mode="edge")


def _jpeg_round_trip(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"))


def _nudge(image: np.ndarray) -> np.ndarray:
    """Every value one grey level off (up, or down at 255): the smallest change that is still a change."""
    wide = image.astype(np.int16)
    return np.where(wide < 255, wide + 1, wide - 1).astype(np.uint8)
