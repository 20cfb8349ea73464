"""``musc-online review``: operators go through the line's unsure and defect decisions and correct them.

Corrections go to the store first (nothing is lost while the daemon is down), then a running daemon is told to
apply them at once over the control socket; a daemon that is down applies them at its next start.
"""

from __future__ import annotations

import getpass
import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from daemon.cli import load_or_exit
from daemon.commands import ConfigFile, Line
from daemon.config import DaemonConfig
from daemon.store import LABELS, VERDICTS, CorrectionRecord, DecisionRecord, NotFoundError, Store, StoreError
from musc_online.client import ControlClient
from musc_online.transport import TransportSettings

APPLY_TIMEOUT_MS = 3000  # how long `mark` waits for a running daemon to apply a correction
STATUS_TIMEOUT_MS = 1000  # how long a display waits for the daemon's status
SCAN_DECISIONS = 2000  # the newest decisions the queue is ordered from
_RELATIVE = re.compile(r"-(\d+(?:\.\d+)?)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

QueueLoader = Callable[[], "list[ReviewItem]"]


@dataclass(frozen=True)
class ReviewItem:
    """One decision awaiting an operator's verdict, with what the operator needs to judge it."""

    frame_id: str
    camera: str
    label: str
    score: float
    band: tuple[float, float] | None  # None while the band is not calibrated (every decision unsure)
    distance: float  # from the band (0 inside it), in band widths: the queue's order
    nearest_defect: str | None
    artifact_path: str | None
    decided_at: float
    provisional: bool

    def as_dict(self) -> dict[str, Any]:
        """The item as JSON-able values."""
        return asdict(self)


def band_distance(score: float, low: float | None, high: float | None) -> float:
    """How far a score lies outside the band, in band widths; 0 inside it or when the band is unknown."""
    if low is None or high is None:
        return 0.0
    return max(low - score, score - high, 0.0) / max(high - low, 1e-12)


def _item(decision: DecisionRecord) -> ReviewItem:
    low, high = decision.band_low, decision.band_high
    return ReviewItem(
        frame_id=decision.frame_id,
        camera=decision.camera,
        label=decision.label,
        score=decision.score,
        band=None if low is None or high is None else (low, high),
        distance=band_distance(decision.score, low, high),
        nearest_defect=decision.nearest_defect_label,
        artifact_path=decision.artifact_path,
        decided_at=decision.decided_at,
        provisional=decision.provisional,
    )


def review_queue(
    store: Store,
    line: int,
    labels: Sequence[str] = ("unsure", "defect"),
    camera: str | None = None,
    since: float | None = None,
    limit: int = 50,
) -> list[ReviewItem]:
    """Uncorrected decisions, those nearest the threshold band first (unsure ones sit inside it), newest first on ties.

    Beyond the band the order follows the score, so defects come after unsure frames, the borderline ones first.
    """
    corrected = {c.frame_id for c in store.corrections(line) if c.undoes is None and c.undone_at is None}
    decisions = store.recent_decisions(line, labels=labels, camera=camera, since=since, limit=SCAN_DECISIONS)
    newest: dict[str, DecisionRecord] = {}
    for decision in decisions:  # newest first: a frame id a camera resent counts once, by its newest decision
        newest.setdefault(decision.frame_id, decision)
    # A frame whose picture was pruned leaves the queue: nobody can judge it, and nothing can correct it.
    kept = [d for d in newest.values() if d.frame_id not in corrected and not _picture_pruned(d)]
    items = [_item(d) for d in kept]
    return sorted(items, key=lambda i: (i.distance, -i.decided_at))[:limit]


def failed_corrections(store: Store, line: int, limit: int = 20) -> list[CorrectionRecord]:
    """The latest corrections the daemon took but could not act on (their audit says why), newest first."""
    failed = [c for c in store.corrections(line) if c.audit and "error" in c.audit]
    return failed[::-1][:limit]


def _picture_pruned(decision: DecisionRecord) -> bool:
    return bool(decision.artifact_path) and not Path(decision.artifact_path).is_file()


def _daemon_call(settings: TransportSettings, command: str, timeout_ms: int) -> dict[str, Any] | None:
    """A control command's reply from the line's daemon, or None when it does not answer in time."""
    try:
        with ControlClient(settings) as control:
            return control.call(command, timeout_ms=timeout_ms)
    except TimeoutError:
        return None


def threshold_moves(settings: TransportSettings, timeout_ms: int = STATUS_TIMEOUT_MS) -> int | None:
    """How many corrections moved the daemon's threshold band, or None when the daemon does not answer."""
    reply = _daemon_call(settings, "status", timeout_ms)
    if reply is None or not reply.get("ok") or not reply["result"].get("scorer"):
        return None
    return reply["result"]["scorer"]["corrections_moving_band"]


def _correction(store: Store, line: int, correction_id: int) -> CorrectionRecord:
    found = next((c for c in store.corrections(line) if c.id == correction_id), None)
    if found is None:
        raise NotFoundError(f"no correction {correction_id} on line {line}")
    return found


def _apply(store: Store, settings: TransportSettings, line: int, correction_id: int, timeout_ms: int) -> dict[str, Any]:
    """Ask a running daemon to apply the pending corrections now; say whether this one took effect."""
    reply = _daemon_call(settings, "apply_corrections", timeout_ms)
    stored = _correction(store, line, correction_id)
    if stored.applied_at is not None:
        error = (stored.audit or {}).get("error")
        message = f"the daemon took it but could not act on it: {error}" if error else "applied live by the daemon"
        return {"applied": True, "audit": stored.audit, "message": message}
    if reply is None:
        why = f"the daemon did not answer within {timeout_ms / 1000:g} s"
    else:
        why = f"the daemon could not apply it now ({reply.get('error', 'no reason given')})"
    return {"applied": False, "audit": None, "message": f"stored; {why}: it is applied at the daemon's next start"}


def mark(
    store: Store,
    settings: TransportSettings,
    line: int,
    frame_id: str,
    verdict: str,
    operator: str,
    label: str | None = None,
    note: str | None = None,
    timeout_ms: int = APPLY_TIMEOUT_MS,
) -> dict[str, Any]:
    """Record an operator's verdict on a decided frame in the store, then have a running daemon apply it at once."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}, not {verdict!r}")
    decision = store.decision_for(line, frame_id)
    if decision is None:
        raise NotFoundError(f"no decided frame {frame_id!r} on line {line} (`review list` shows the queue)")
    correction_id = store.add_correction(
        line, frame_id, verdict, operator, decision.label, defect_label=label or None, note=note or None
    )
    return {
        "correction": correction_id,
        "frame_id": frame_id,
        "verdict": verdict,
        "previous_label": decision.label,
        **_apply(store, settings, line, correction_id, timeout_ms),
    }


def undo(
    store: Store,
    settings: TransportSettings,
    line: int,
    correction_id: int,
    operator: str,
    timeout_ms: int = APPLY_TIMEOUT_MS,
) -> dict[str, Any]:
    """Undo a correction of the line in the store, then have a running daemon revert it at once."""
    original = _correction(store, line, correction_id)
    undo_id = store.undo_correction(correction_id, operator)
    return {
        "correction": undo_id,
        "undoes": correction_id,
        "frame_id": original.frame_id,
        "verdict": original.verdict,
        **_apply(store, settings, line, undo_id, timeout_ms),
    }


def parse_since(text: str, now: float | None = None) -> float:
    """A time as epoch seconds from ISO 8601 (naive means local time) or a relative '-10m' (s, m, h or d)."""
    relative = _RELATIVE.fullmatch(text.strip())
    if relative:
        return (time.time() if now is None else now) - float(relative[1]) * _UNITS[relative[2]]
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise ValueError(f"--since takes an ISO 8601 time or a relative one like -10m, not {text!r}") from None


def describe(result: dict[str, Any]) -> str:
    """One line saying what a mark or undo did."""
    if "undoes" in result:
        what = f"correction {result['undoes']} of {result['frame_id']} undone (undo record {result['correction']})"
    else:
        what = (
            f"correction {result['correction']}: {result['frame_id']} marked {result['verdict']} "
            f"(was {result['previous_label']})"
        )
    audit = f"; changes: {json.dumps(result['audit'].get('changes', result['audit']))}" if result["audit"] else ""
    return f"{what}; {result['message']}{audit}"


# --------------------------------------------------------------------------------------------- terminal


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


# ------------------------------------------------------------------------------------------------- CLI

review_app = typer.Typer(
    help="Review the line's unsure and defect decisions and correct them; the daemon learns from them live.",
    add_completion=False,
)

Operator = Annotated[str | None, typer.Option(help="Who is reviewing (default: $USER).")]
LabelFilter = Annotated[str | None, typer.Option("--label", help="Only this label: unsure, defect or ok.")]
Camera = Annotated[str | None, typer.Option(help="Only frames from this camera.")]
Since = Annotated[str | None, typer.Option(help="Only frames received since: ISO 8601, or relative like -10m.")]
Limit = Annotated[int, typer.Option(help="At most this many items.")]


def _operator(name: str | None) -> str:
    try:
        return name or getpass.getuser()
    except (KeyError, OSError):
        raise typer.BadParameter("no user name found: pass --operator NAME", param_hint="--operator") from None


def _loader(
    store: Store, line: int, label: str | None, camera: str | None, since: str | None, limit: int
) -> QueueLoader:
    """The queue with the command line's filters, checked once up front."""
    if label is not None and label not in LABELS:
        raise typer.BadParameter(f"must be one of {', '.join(LABELS)}", param_hint="--label")
    try:
        start = None if since is None else parse_since(since)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--since") from None
    labels = (label,) if label else ("unsure", "defect")
    return partial(review_queue, store, line, labels=labels, camera=camera, since=start, limit=limit)


@contextmanager
def _opened(line: int, config_file: Path | None) -> Iterator[tuple[DaemonConfig, Store]]:
    """The line's config and store; a refused operation exits 2 with its reason, having changed nothing."""
    config = load_or_exit(line, config_file)
    try:
        with Store.open(config.store_url) as store:
            yield config, store
    except (StoreError, ValueError) as error:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


@review_app.callback(invoke_without_command=True)
def review(
    ctx: typer.Context,
    line: Line = 3,
    web: Annotated[bool, typer.Option("--web", help="Serve the queue as a local web page instead.")] = False,
    host: Annotated[str, typer.Option(help="--web: address to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="--web: port (0 picks a free one).")] = 0,
    operator: Operator = None,
    label: LabelFilter = None,
    camera: Camera = None,
    since: Since = None,
    limit: Limit = 50,
    config_file: ConfigFile = None,
) -> None:
    """Go through the queue one item at a time in the terminal (or on a local page with --web)."""
    if ctx.invoked_subcommand is not None:
        if any(ctx.params[option.name] != option.default for option in ctx.command.params if option.name):
            sub = ctx.invoked_subcommand
            raise typer.BadParameter(f"options go after the subcommand: `review {sub} --line N ...`, not before")
        return
    name = _operator(operator)
    with _opened(line, config_file) as (config, store):
        load = _loader(store, line, label, camera, since, limit)
        settings = config.transport_settings()
        if not web:
            interactive(store, settings, line, name, load)
            return
        from daemon.review_web import make_server

        server = make_server(store, settings, line, name, load, config.artifacts_dir, host, port)
        typer.echo(f"review page of line {line}: http://{host}:{server.server_address[1]}/  (Ctrl-C stops it)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()


@review_app.command("list")
def list_command(
    line: Line = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    label: LabelFilter = None,
    camera: Camera = None,
    since: Since = None,
    limit: Limit = 50,
    config_file: ConfigFile = None,
) -> None:
    """Print the review queue, the frames that teach the scorer most first."""
    with _opened(line, config_file) as (_, store):
        items = _loader(store, line, label, camera, since, limit)()
    if as_json:
        typer.echo(json.dumps([item.as_dict() for item in items], indent=2))
        return
    table = Table(title=f"Line {line}: {len(items)} to review")
    for column in ("frame", "camera", "label", "score", "band", "nearest defect", "picture"):
        table.add_column(column)
    for item in items:
        band = "-" if item.band is None else f"{item.band[0]:.4f} .. {item.band[1]:.4f}"
        row = (item.frame_id, item.camera, item.label, f"{item.score:.4f}", band, item.nearest_defect or "-")
        table.add_row(*row, item.artifact_path or "-")
    Console(width=200).print(table)
    with _opened(line, config_file) as (_, store):
        failed = failed_corrections(store, line)
    for correction in failed:
        typer.secho(
            f"correction {correction.id} by {correction.operator} ({correction.frame_id} marked {correction.verdict}) "
            f"could not act: {correction.audit['error']}",
            fg=typer.colors.YELLOW,
        )


@review_app.command("mark")
def mark_command(
    frame_id: Annotated[str, typer.Argument(help="The frame's id, as `review list` shows it.")],
    verdict: Annotated[str, typer.Argument(help="ok or defect.")],
    line: Line = 3,
    label: Annotated[str | None, typer.Option(help="defect: the defect's name (e.g. scratch).")] = None,
    note: Annotated[str | None, typer.Option(help="A note kept with the correction.")] = None,
    operator: Operator = None,
    config_file: ConfigFile = None,
) -> None:
    """Correct a decision: the store keeps it at once, a running daemon applies it at once."""
    name = _operator(operator)
    with _opened(line, config_file) as (config, store):
        result = mark(store, config.transport_settings(), line, frame_id, verdict, name, label=label, note=note)
    typer.echo(describe(result))


@review_app.command("undo")
def undo_command(
    correction_id: Annotated[int, typer.Argument(help="The correction's number, as `review mark` printed it.")],
    line: Line = 3,
    operator: Operator = None,
    config_file: ConfigFile = None,
) -> None:
    """Undo a correction; a running daemon reverts what it changed at once."""
    name = _operator(operator)
    with _opened(line, config_file) as (config, store):
        result = undo(store, config.transport_settings(), line, correction_id, name)
    typer.echo(describe(result))
