"""Pictures a reviewer can look at: each defect and unsure frame (and a sample of ok ones) beside its heatmap.

One PNG per kept decision, at ``<folder>/<YYYY-MM-DD (UTC)>/<label>/<frame id>.png``, with limits on age and
count so the folder cannot fill the disk. Written off the hot path by the daemon.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from musc_online.heatmaps import normalise, side_by_side

if TYPE_CHECKING:
    from musc_online.online.decision import Decision

logger = logging.getLogger(__name__)

MAX_NAME = 100  # characters of a sanitised frame id, before any uniqueness suffix
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def safe_name(text: str) -> str:
    """A file-name stem from untrusted text: characters outside [A-Za-z0-9._-] become _, at most MAX_NAME long."""
    return _UNSAFE.sub("_", text)[:MAX_NAME] or "frame"


def heat_scale(amap: np.ndarray, decision: Decision) -> np.ndarray:
    """The map on a fixed colour scale: band.low -> 0.5 and band.high -> 1.0, so a colour means the same score in
    every picture (cyan-yellow is where unsure starts, red is defect). Without a usable band: the map's min..max.

    The band judges image scores (after RsCIN) and the map holds patch scores, whose maximum is the raw score:
    the scale is a faithful reading of how far each patch is from the band, not a second decision.
    """
    low, high = decision.band.low, decision.band.high
    if math.isfinite(low) and math.isfinite(high) and high > low:
        return np.clip(normalise(amap, 2 * low - high, high), 0.0, 1.0)
    return normalise(amap, float(amap.min()), float(amap.max()))


class ArtifactWriter:
    """Keeps a frame-and-heatmap PNG for every defect and unsure decision and for 1 in ``keep_ok_every`` ok ones.

    ``keep_ok_every`` 0 keeps no ok frame. ``keeps`` says whether a decision's picture is wanted (ask once per
    decision, in decision order); ``save`` writes one; ``prune`` enforces ``max_age_days`` and ``max_files``.
    """

    def __init__(self, folder: Path, keep_ok_every: int = 50, max_files: int = 5000, max_age_days: float = 30) -> None:
        if keep_ok_every < 0:
            raise ValueError(f"keep_ok_every must be >= 0 (0 keeps no ok frame), got {keep_ok_every}")
        if max_files < 1:
            raise ValueError(f"max_files must be at least 1, got {max_files}")
        if not max_age_days > 0:
            raise ValueError(f"max_age_days must be positive, got {max_age_days}")
        self.folder = Path(folder)
        self.keep_ok_every = keep_ok_every
        self.max_files = max_files
        self.max_age_days = max_age_days
        self._ok_seen = 0
        self.files: int | None = None  # pictures in the folder, known after a prune and counted on by save

    def keeps(self, label: str) -> bool:
        """Whether this decision's picture is kept: every one not ok, and the first ok of every ``keep_ok_every``."""
        if label != "ok":
            return True
        self._ok_seen += 1
        return self.keep_ok_every > 0 and (self._ok_seen - 1) % self.keep_ok_every == 0

    def save(self, decision: Decision, image: np.ndarray, when: datetime | None = None) -> Path:
        """Write the frame (RGB uint8, H x W x 3) beside its overlay; the file's path.

        ``when`` (default: now) picks the day folder, in UTC. An existing file is never overwritten: a name already
        taken gets a counter suffix.
        """
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"artifact image must be RGB uint8 (H, W, 3), got {image.dtype} {image.shape}")
        if self.files is None or self.files >= self.max_files:  # make room first: the folder never holds more
            self.prune(keep=self.max_files - 1)
        picture = side_by_side(image, heat_scale(decision.heatmap(image.shape[:2]), decision))
        day = (when or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%d")
        target = self.folder / day / safe_name(decision.label)
        target.mkdir(parents=True, exist_ok=True)
        stem = safe_name(decision.frame_id)
        path, attempt = target / f"{stem}.png", 0
        while True:
            try:
                with open(path, "xb") as file:  # exclusive create: two writers cannot take the same name
                    Image.fromarray(picture).save(file, format="PNG")
                if self.files is not None:
                    self.files += 1
                return path
            except FileExistsError:
                attempt += 1
                path = target / f"{stem}-{attempt}.png"

    @staticmethod
    def frame_from(path: str | Path) -> np.ndarray:
        """The frame as its picture keeps it, read back from a picture ``save`` wrote (its left half, pixel for pixel):
        the frame itself, or in the daemon, for a frame larger than ``pipeline.picture_side``, the frame shrunk."""
        with Image.open(path) as picture:
            pixels = np.asarray(picture.convert("RGB"))
        return np.ascontiguousarray(pixels[:, : pixels.shape[1] // 2])

    def _layout(self) -> list[tuple[str, list[str]]]:
        """(day folder, its label folders): real folders only, never through symbolic links, so that pruning
        cannot leave the artifact folder; anything not named like a day is not ours and is left alone."""
        if not self.folder.is_dir():
            return []
        days = [entry.path for entry in _scan(self.folder) if entry.is_dir(follow_symlinks=False)]
        return [
            (day, [entry.path for entry in _scan(day) if entry.is_dir(follow_symlinks=False)])
            for day in days
            if _DAY.fullmatch(os.path.basename(day))
        ]

    def _files(self, layout: list[tuple[str, list[str]]]) -> list[tuple[float, str]]:
        """(mtime, path) of every artifact, oldest first: the PNG files in the layout's label folders."""
        files = []
        for _, labels in layout:
            for label in labels:
                for entry in _scan(label):
                    if entry.name.endswith(".png") and entry.is_file(follow_symlinks=False):
                        with contextlib.suppress(FileNotFoundError):
                            files.append((entry.stat(follow_symlinks=False).st_mtime, entry.path))
        return sorted(files)

    def prune(self, now: float | None = None, keep: int | None = None) -> int:
        """Delete artifacts older than ``max_age_days``, then the oldest beyond ``keep`` (default ``max_files``);
        returns how many.

        Empty label and day folders go too. Only files in this writer's layout are touched.
        """
        cutoff = (time.time() if now is None else now) - self.max_age_days * 86400
        layout = self._layout()
        files = self._files(layout)
        old = sum(1 for mtime, _ in files if mtime < cutoff)  # files are oldest first: the old ones lead
        doomed = files[: max(old, len(files) - (self.max_files if keep is None else keep))]
        for _, path in doomed:
            Path(path).unlink(missing_ok=True)
        for day, labels in layout:
            for folder in (*labels, day):
                with contextlib.suppress(OSError):  # not empty: keep it
                    os.rmdir(folder)
        if doomed:
            logger.info("pruned %d artifacts", len(doomed), extra={"folder": str(self.folder)})
        self.files = len(files) - len(doomed)
        return len(doomed)


def _scan(path: str | Path) -> list[os.DirEntry[str]]:
    """The entries of a folder (none when it vanished meanwhile)."""
    try:
        with os.scandir(path) as entries:
            return list(entries)
    except FileNotFoundError:
        return []
