"""What the plant's review station shows and does, apart from HTTP: the lines of the store, their queues and
pictures, and corrections.

The store is shared by the lines, so the station needs nothing else to reach them: it reads each line's reports,
decisions and pictures, and writes corrections that the line's daemon picks up within a second (its control
socket is tried first as a fast path). Each line's artifact folder and control endpoint come from that line's
config (``load_config(line)``). Pictures are served only from inside the line's artifact folder.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.parse import quote

from PIL import Image

from daemon.config import DaemonConfig
from daemon.review.queue import ReviewItem, describe, mark, undo
from daemon.store import NotFoundError, Store

STALE_AFTER_S = 30.0  # a line silent this long is shown as not reporting
SCORER_KEYS = (
    "band",
    "window",
    "window_capacity",
    "judges",
    "judge_parts",
    "known_defects",
    "corrections_moving_band",
)

ConfigLoader = Callable[[int], DaemonConfig]  # a line's settings, e.g. ``partial(load_config, config_file=...)``
LineQueue = Callable[[int], list[ReviewItem]]  # a line's review queue with the station's filters


class Station:
    """What the station shows and does, apart from HTTP: the lines of the store, their queues, pictures, corrections."""

    def __init__(self, store: Store, configs: ConfigLoader, home_line: int, queue: LineQueue) -> None:
        self.store = store
        self.home_line = home_line
        self.queue_of = queue
        self._load = configs
        self._configs: dict[int, DaemonConfig] = {}
        self._veils: dict[int, bytes | None] = {}
        self._lock = threading.Lock()

    def config(self, line: int) -> DaemonConfig:
        """The line's settings, read once."""
        with self._lock:
            if line not in self._configs:
                self._configs[line] = self._load(line)
            return self._configs[line]

    def care_veil(self, line: int) -> bytes | None:
        """The line's care area as a PNG, clear where it counts and dark elsewhere (``roi.CareArea.veil``), to lay
        over a heatmap; None when the whole frame counts. Read once from the line's config."""
        config = self.config(self.require_line(line))
        with self._lock:
            if line not in self._veils:
                care = config.care_area()
                buffer = io.BytesIO()
                if care is not None:
                    Image.fromarray(care.veil(), "RGBA").save(buffer, "PNG")
                self._veils[line] = buffer.getvalue() if care is not None else None
            return self._veils[line]

    def line_numbers(self) -> list[int]:
        """Every line that reported into the store, and the station's own ``--line``."""
        return sorted({report.line for report in self.store.lines()} | {self.home_line})

    def require_line(self, line: int) -> int:
        """The line number when the station knows the line; NotFoundError naming the known ones otherwise."""
        known = self.line_numbers()
        if line not in known:
            raise NotFoundError(f"no line {line} in this store (lines: {', '.join(map(str, known))})")
        return line

    def lines(self) -> list[dict[str, Any]]:
        """Each line's latest report (host, age, band, scorer, pause) with its counts from the store."""
        reports = {report.line: report for report in self.store.lines()}
        now = time.time()
        shown = []
        for line in sorted(set(reports) | {self.home_line}):
            report = reports.get(line)
            status = (report.status if report else None) or {}
            age = None if report is None else max(0.0, now - report.reported_at)
            seen = {"line": line, "host": report and report.host, "reported_s_ago": age}
            health = {"stale": age is None or age > STALE_AFTER_S, **{k: status.get(k) for k in ("paused", "uptime_s")}}
            scorer = {key: (status.get("scorer") or {}).get(key) for key in SCORER_KEYS}
            shown.append(seen | health | scorer | {"counts": dict(self.store.counts(line))})
        return shown

    def queue(self, line: int | None) -> list[dict[str, Any]]:
        """The review queue of one line or of all, merged: nearest the band first, then newest."""
        lines = self.line_numbers() if line is None else [self.require_line(line)]
        items = [(n, item) for n in lines for item in self.queue_of(n)]
        items.sort(key=lambda pair: (pair[1].distance, -pair[1].decided_at))
        return [self._shown(n, item) for n, item in items]

    @staticmethod
    def _shown(line: int, item: ReviewItem) -> dict[str, Any]:
        shown = {**item.as_dict(), "line": line}
        del shown["artifact_path"]  # the station's file system is none of the browser's business
        url = f"/api/image?line={line}&frame={quote(item.frame_id, safe='')}"
        shown["picture"] = url if item.artifact_path else None
        return shown

    def picture(self, line: int, frame_id: str) -> Path | None:
        """The frame's PNG when it lies inside that line's artifact folder; never any other file."""
        decision = self.store.decision_for(self.require_line(line), frame_id)
        if decision is None or not decision.artifact_path:
            return None
        folder = self.config(line).artifacts_dir.resolve()
        path = Path(decision.artifact_path).resolve()
        inside = path.is_relative_to(folder) and path.suffix == ".png"
        return path if inside and path.is_file() else None

    def mark(self, operator: str, body: dict[str, Any]) -> dict[str, Any]:
        """Record ``operator``'s verdict on a frame; the line applies it (control socket, else from the store)."""
        line = self.require_line(int(body["line"]))
        frame_id, verdict = body["frame_id"], body["verdict"]
        if not isinstance(frame_id, str) or not isinstance(verdict, str):
            raise ValueError("frame_id and verdict are strings")
        label, note = _text(body.get("label")), _text(body.get("note"))
        settings = self.config(line).transport_settings()
        result = mark(self.store, settings, line, frame_id, verdict, operator, label=label, note=note)
        return {**result, "line": line, "text": describe(result)}

    def undo(self, operator: str, body: dict[str, Any]) -> dict[str, Any]:
        """Undo a correction of a line in ``operator``'s name."""
        line = self.require_line(int(body["line"]))
        correction = body["correction"]
        if not isinstance(correction, int) or isinstance(correction, bool):
            raise ValueError("correction is a correction's number")
        result = undo(self.store, self.config(line).transport_settings(), line, correction, operator)
        return {**result, "line": line, "text": describe(result)}

    def correction(self, line: int, correction_id: int) -> dict[str, Any]:
        """Whether the line has applied a correction yet, and what it did (its audit)."""
        found = next((c for c in self.store.corrections(self.require_line(line)) if c.id == correction_id), None)
        if found is None:
            raise NotFoundError(f"no correction {correction_id} on line {line}")
        return {**asdict(found), "applied": found.applied_at is not None, "undone": found.undone_at is not None}


def _text(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError("label and note are text")
    return value or None
