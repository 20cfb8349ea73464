"""Turned copies of seed judges, for parts that lie at any angle (``[online] judge_turns``).

A part turned since its seed pictures were taken finds few look-alike patches among them, so the judges picked
for it (by image feature) and its patches' nearest neighbours come from parts lying otherwise: on screw, whose
parts lie at any angle, the line's image AUROC was 0.631 on its ``rate10`` stream, and 0.852 with each seed judge
also turned in twelve 30 degree steps (``docs/benchmarks.md``, "Turned judges"). A turned copy is a judge like
any other, named after its part (``part_of``), but it is not a known-good score of its own: only the seed itself
calibrates the bands, and a seed scored as a frame leaves its own turns out (they would vouch for themselves).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

TURN_MARK = "@turned-"  # a turned copy's id: the seed's id, this mark and the angle in degrees


def turn_angles(turns: int) -> list[float]:
    """The angles of a seed's turned copies: ``turns - 1`` equal steps round the circle (none for 1)."""
    return [360.0 * step / turns for step in range(1, turns)]


def turned_id(judge_id: str, angle: float) -> str:
    """The id of ``judge_id``'s copy turned by ``angle`` degrees."""
    return f"{judge_id}{TURN_MARK}{angle:g}"


def part_of(judge_id: str) -> str:
    """The seed a judge shows: its own id, or the seed's for a turned copy."""
    return judge_id.split(TURN_MARK, 1)[0]


def turn_image(image: np.ndarray, angle: float) -> np.ndarray:
    """``image`` (H, W, 3 uint8) turned ``angle`` degrees counter-clockwise about its centre, same size; the
    corners it uncovers take the median colour of its border (the background around a centred part)."""
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    fill = tuple(int(value) for value in np.median(border, axis=0))
    return np.asarray(Image.fromarray(image).rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=fill))
