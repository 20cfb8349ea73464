"""Fixtures for the command tests: a tiny dataset tree made on the fly."""

import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def tiny_mvtec(tmp_path):
    """A 2-category MVTec-layout tree of flat grey 'products', two of them with a bright defect."""
    rng = np.random.default_rng(0)
    for category in ("widget", "gadget"):
        base = tmp_path / category
        for i in range(5):
            picture = np.full((48, 48, 3), 120, np.uint8) + rng.integers(0, 6, (48, 48, 3), dtype=np.uint8)
            (base / "test" / "good").mkdir(parents=True, exist_ok=True)
            Image.fromarray(picture).save(base / "test" / "good" / f"{i:03d}.png")
        for i in range(2):
            picture = np.full((48, 48, 3), 120, np.uint8)
            picture[10:20, 10:20] = 255
            mask = np.zeros((48, 48), np.uint8)
            mask[10:20, 10:20] = 255
            (base / "test" / "scratch").mkdir(parents=True, exist_ok=True)
            (base / "ground_truth" / "scratch").mkdir(parents=True, exist_ok=True)
            Image.fromarray(picture).save(base / "test" / "scratch" / f"{i:03d}.png")
            Image.fromarray(mask).save(base / "ground_truth" / "scratch" / f"{i:03d}_mask.png")
    return tmp_path
