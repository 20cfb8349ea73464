"""The review queue in a terminal: one item at a time, a key per action."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable

import typer

from daemon.review.queue import QueueLoader, ReviewItem, describe, mark, threshold_moves, undo
from daemon.store import Store, StoreError
from musc_online.transport import TransportSettings


def open_image(path: str | None) -> str:
    """Open a picture with the system viewer when there is one; returns what to tell the operator."""
    if not path:
        return "no picture was kept for this frame"
    viewer = shutil.which("xdg-open")
    if viewer is None:
        return f"picture: {path}"
    subprocess.Popen([viewer, path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    return f"opened {path}"


def _band_text(item: ReviewItem) -> str:
    if item.band is None:
        return "band not calibrated yet"
    low, high = item.band
    where = "inside the band" if item.distance == 0 else f"{item.distance:.2f} band widths outside"
    return f"band {low:.4f} .. {high:.4f} ({where})"


def _show(item: ReviewItem, position: int, total: int, moves: int | None) -> str:
    moved = "unknown (the daemon is not running)" if moves is None else str(moves)
    return "\n".join(
        [
            f"[{position}/{total}] frame {item.frame_id}  camera {item.camera}  {item.label.upper()}"
            + (" (provisional)" if item.provisional else ""),
            f"  score {item.score:.4f}  {_band_text(item)}",
            f"  nearest known defect: {item.nearest_defect or 'none'}",
            f"  picture: {item.artifact_path or 'none kept'}",
            f"  corrections that moved the threshold: {moved}",
        ]
    )


_KEYS = "[o]k  [d]efect  [u]ndo last  [n]ext  [p]revious  [v]iew picture  [q]uit"
_NEXT, _PREVIOUS = ("n", "\x1b[c", "\x1b[b"), ("p", "\x1b[d", "\x1b[a")  # letters, arrow keys (lowercased)


def interactive(
    store: Store,
    settings: TransportSettings,
    line: int,
    operator: str,
    load: QueueLoader,
    read: Callable[[str], str] = input,
    show_image: Callable[[str | None], str] = open_image,
) -> None:
    """The terminal review queue: one item at a time, a key per action, until q or the end of input."""
    items, index, undoable = load(), 0, []
    moves = threshold_moves(settings)
    while True:
        if not items:
            typer.echo(f"nothing to review on line {line}" + (" (u undoes the last correction)" if undoable else ""))
        else:
            index = min(index, len(items) - 1)
            typer.echo(_show(items[index], index + 1, len(items), moves))
        try:
            key = read(f"{_KEYS} > ").strip().lower()
        except EOFError:
            return
        if key == "q":
            return
        if not key:
            continue
        if key in _NEXT or key in _PREVIOUS:
            index = max(0, index + (1 if key in _NEXT else -1))
            continue
        if key == "v" and items:
            typer.echo(show_image(items[index].artifact_path))
            continue
        try:
            if key in ("o", "d") and items:
                label = read("defect label (optional) > ").strip() if key == "d" else None
                verdict = "ok" if key == "o" else "defect"
                result = mark(store, settings, line, items[index].frame_id, verdict, operator, label=label)
                undoable.append(result["correction"])
            elif key == "u" and undoable:
                result = undo(store, settings, line, undoable.pop(), operator)
            else:
                typer.echo(
                    f"nothing to {'undo in this session' if key == 'u' else 'review'}"
                    if key in ("o", "d", "v", "u")
                    else _KEYS
                )
                continue
        except (StoreError, ValueError) as error:
            typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
            continue
        except EOFError:
            return
        typer.echo(describe(result))
        items, moves = load(), threshold_moves(settings)
