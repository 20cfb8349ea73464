"""Real 12 MP camera frames for the memory tests: MVTec AD bottles upscaled to 4000 x 3000 and sent as JPEG.

Without ``../shared`` the frames are synthetic parts (``musc_online.synthetic``), upscaled the same way.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path

import numpy as np
from PIL import Image

from musc_online.synthetic import synthetic_product

WIDTH, HEIGHT = 4000, 3000
BOTTLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "mvtec_ad" / "bottle" / "test"


@functools.cache
def large_jpegs(count: int) -> tuple[bytes, ...]:
    """``count`` different 4000 x 3000 JPEG payloads (quality 90), made once per test session."""
    sources = sorted(BOTTLES.rglob("*.png"))[:count] if BOTTLES.is_dir() else []
    rng = np.random.default_rng(0)
    payloads = []
    for i in range(count):
        if i < len(sources):
            with Image.open(sources[i]) as picture:
                small = picture.convert("RGB")
        else:
            small = Image.fromarray(synthetic_product(rng, 750))
        buffer = io.BytesIO()
        small.resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC).save(buffer, format="JPEG", quality=90)
        payloads.append(buffer.getvalue())
    return tuple(payloads)
