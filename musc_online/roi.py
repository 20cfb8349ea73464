"""Regions of interest: the care area of a camera's frames, the only pixels whose scores decide a part.

A care area is drawn in the frame's own pixel coordinates: a mask PNG (any non-black pixel is cared for; it may
be at any resolution of the frame's aspect) or polygons drawn at the frame's size. It applies after scoring:
every patch is still scored, and the image score is the map's maximum over the care area only. The backbone
squares each whole frame (``backbones/_preprocess.py``), so the mask is squared the same way (``at``) and lies
over the same pixels of the square map at any size. Numpy and PIL only: reading settings stays cheap.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError

FINGERPRINT_SIZE = 256  # the square size a care area is compared at (two areas alike at it are the same)
ASPECT_TOLERANCE = 0.01  # relative difference of width / height tolerated between a mask and the frame
VEIL_SIDE = 1024  # longest side of the picture the review page lays over a heatmap
VEIL_ALPHA = 150  # how dark the not-cared-for part is drawn on the review page (0..255)

Size = tuple[int, int]  # (width, height) in pixels, as PIL gives sizes
Polygon = Sequence[Sequence[float]]  # [[x, y], ...] in frame pixels
Polygons = tuple[tuple[tuple[float, float], ...], ...]  # polygons as settings hold them


class CareArea:
    """A boolean mask (H, W) of the pixels that count, at the frame's size or any of its aspect; ``source`` says
    where it came from (error messages, status)."""

    def __init__(self, mask: np.ndarray, source: str) -> None:
        if mask.ndim != 2 or not mask.any():
            raise ValueError(f"{source}: the care area is empty (no pixel is cared for)")
        self.mask = mask.astype(bool)
        self.source = source
        self._resized: dict[tuple[int, int, int], np.ndarray] = {}

    @classmethod
    def from_png(cls, path: str | Path, frame_size: Size | None = None) -> CareArea:
        """The non-black pixels of a PNG; its aspect must be the frame's when ``frame_size`` (W, H) is known."""
        path = Path(path)
        try:
            with Image.open(path) as image:
                mask = np.asarray(image.convert("L")) > 0
        except FileNotFoundError:
            raise ValueError(f"care mask {path} does not exist") from None
        except (OSError, UnidentifiedImageError) as error:
            raise ValueError(f"care mask {path} cannot be read as an image: {error}") from None
        area = cls(mask, f"care mask {path}")
        if frame_size is not None:
            area.check_frame(frame_size)
        return area

    @classmethod
    def from_polygons(cls, polygons: Sequence[Polygon], frame_size: Size) -> CareArea:
        """The union of polygons ([[x, y], ...] each, frame pixels, at least 3 points) drawn at ``frame_size``."""
        width, height = _size(frame_size)
        canvas = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(canvas)
        for n, polygon in enumerate(polygons):
            points = [_point(point, n, width, height) for point in polygon]
            if len(points) < 3:
                raise ValueError(f"polygon {n} has {len(points)} point(s): a polygon needs at least 3")
            draw.polygon(points, fill=255)
        return cls(np.asarray(canvas) > 0, f"{len(polygons)} care polygon(s) at {width} x {height}")

    def check_frame(self, frame_size: Size) -> None:
        """ValueError, saying both sizes, when frames of ``frame_size`` (W, H) have another aspect than the mask."""
        width, height = _size(frame_size)
        mask_height, mask_width = self.mask.shape
        if abs(mask_width * height - mask_height * width) > ASPECT_TOLERANCE * mask_height * width:
            raise ValueError(
                f"{self.source} is {mask_width} x {mask_height} px, the frames {width} x {height} px: their aspects "
                "differ, so the mask cannot be laid over the frame (draw it at the frame's size)"
            )

    def at(self, height: int, width: int | None = None, touching: bool = False) -> np.ndarray:
        """The care area on a map of the whole frame, ``height`` x ``width`` (default: the backbone's square, the
        frame squared as frames are): a pixel is cared for when at least half of what it covers is (``touching``:
        any of it, so that no non-empty area vanishes on a coarse grid)."""
        width = height if width is None else width
        key = (height, width, 1 if touching else 128)
        if key not in self._resized:
            image = Image.fromarray(self.mask.astype(np.uint8) * 255)
            resized = np.asarray(image.resize((width, height), Image.Resampling.BOX)) >= key[2]
            if not resized.any():
                raise ValueError(f"{self.source}: the care area is too small to keep any pixel at {width} x {height}")
            self._resized[key] = resized
        return self._resized[key]

    @property
    def share(self) -> float:
        """The fraction of the frame cared for."""
        return float(self.mask.mean())

    def fingerprint(self) -> str:
        """A digest of the area at ``FINGERPRINT_SIZE``: the band depends on it, a saved line compares it."""
        return hashlib.sha256(np.packbits(self.at(FINGERPRINT_SIZE, touching=True)).tobytes()).hexdigest()

    def describe(self) -> dict[str, Any]:
        """What status displays show: where the area comes from and how much of the frame it covers."""
        return {"source": self.source, "share": self.share}

    def veil(self) -> np.ndarray:
        """An RGBA picture of the frame's aspect (longest side at most ``VEIL_SIDE``): clear over the care area,
        dark outside it, and a yellow line along its edge. Laid over a heatmap, it shows what does not count."""
        height, width = self.mask.shape
        scale = min(1.0, VEIL_SIDE / max(height, width))
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        care = np.asarray(Image.fromarray(self.mask.astype(np.uint8) * 255).resize(size, Image.Resampling.BOX)) >= 128
        padded = np.pad(care, 1, mode="edge")
        inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
        edge = care & ~inner
        veil = np.zeros((*care.shape, 4), np.uint8)
        veil[~care, 3] = VEIL_ALPHA
        veil[edge] = (255, 220, 0, 255)
        return veil


def care_only(pixels: Any, care: CareArea | None) -> Any:
    """A copy of an (H, W) map of the whole frame (numpy or torch) with every cell outside the care area at minus
    infinity, so that its highest cell lies in the care area (None: the map as it is)."""
    if pixels is None or care is None:
        return pixels
    kept = pixels.clone() if hasattr(pixels, "clone") else pixels.copy()
    kept[~care.at(*pixels.shape[-2:], touching=True)] = float("-inf")
    return kept


def care_text(described: dict[str, Any] | None) -> str:
    """A care area as status displays say it, from ``CareArea.describe`` (None: the whole frame)."""
    if described is None:
        return "the whole frame"
    return f"{described['source']}: {100 * described['share']:.1f} % of the frame"


def care_fingerprint(care: CareArea | None) -> str | None:
    """The care area's fingerprint, None for the whole frame (what a saved line records)."""
    return None if care is None else care.fingerprint()


def _size(frame_size: Size) -> Size:
    """(W, H) as positive integers; ValueError otherwise."""
    width, height = (int(v) for v in frame_size)
    if width < 1 or height < 1:
        raise ValueError(f"the frame size must be positive, got {width} x {height}")
    return width, height


def _point(point: Sequence[float], polygon: int, width: int, height: int) -> tuple[float, float]:
    """One [x, y] of polygon ``polygon``, checked to lie on the frame."""
    if len(point) != 2:
        raise ValueError(f"polygon {polygon}: a point is [x, y], got {list(point)}")
    x, y = (float(v) for v in point)
    if not (0 <= x <= width and 0 <= y <= height):
        raise ValueError(f"polygon {polygon}: point [{x:g}, {y:g}] lies outside the {width} x {height} frame")
    return x, y
