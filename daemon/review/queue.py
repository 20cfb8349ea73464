"""The review queue and corrections: what operators should look at first, and marking or undoing a verdict.

Corrections go to the store first (nothing is lost while the daemon is down), then a running daemon is told to
apply them at once over the control socket. A daemon that cannot be told (on another host, behind CURVE) picks
them up from the store within ``[store] poll_s``; one that is down applies them at its next start.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from daemon.store import VERDICTS, CorrectionRecord, DecisionRecord, NotFoundError, Store
from musc_online.client import ControlClient
from musc_online.transport import TransportSettings, accepts_connections

APPLY_TIMEOUT_MS = 3000  # how long `mark` waits for a running daemon to apply a correction
STATUS_TIMEOUT_MS = 1000  # how long a display waits for the daemon's status
SCAN_DECISIONS = 2000  # the newest decisions of each label the queue is ordered from (its window)
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
    corrected = store.corrected_frame_ids(line)
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
    """A control command's reply from the line's daemon, or None when it is down or does not answer in time."""
    if not accepts_connections(settings.control_endpoint):
        return None
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
    message = f"stored; {why}: a running daemon applies it from the store within seconds, a stopped one at its start"
    return {"applied": False, "audit": None, "message": message}


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
