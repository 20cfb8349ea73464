"""Apply operators' corrections from the store to the scorer, and record what each one changed.

Corrections reach the store first, so nothing is lost while the daemon is down; the daemon applies the
pending ones at start and whenever it is told over the control socket. Each gets an audit trail.
"""

from __future__ import annotations

import logging
import threading

from daemon.store import Correction, Store
from musc_online.online.scorer import OnlineScorer

log = logging.getLogger(__name__)


def scorer_id(correction_id: int) -> str:
    """The scorer's name for a stored correction."""
    return f"db{correction_id}"


def _apply_one(scorer: OnlineScorer, correction: Correction) -> dict:
    """Apply one stored correction (or undo) to the scorer; returns its audit record."""
    if correction.undoes is not None:
        original = scorer.corrections.get(scorer_id(correction.undoes))
        if original is None or original.undone:
            return {"undid": None, "note": "the original correction had not changed the scorer"}
        result = scorer.undo(original.correction_id)
        return {"undid": original.correction_id, "changes": result.changes, "band_after": result.band_before}
    if correction.verdict == "ok":
        result = scorer.confirm_normal(correction.frame_id, correction_id=scorer_id(correction.id))
    else:
        result = scorer.confirm_defect(
            correction.frame_id, label=correction.defect_label, correction_id=scorer_id(correction.id)
        )
    return {"changes": result.changes, "band_before": result.band_before, "band_after": result.band_after}


def apply_pending(store: Store, scorer: OnlineScorer, line: int, lock: threading.Lock) -> list[dict]:
    """Apply every pending correction of ``line`` in order; a correction that cannot act is marked with why."""
    applied = []
    for correction in store.pending_corrections(line):
        try:
            with lock:
                audit = _apply_one(scorer, correction)
        except (KeyError, ValueError) as error:  # frame too old or unknown, already a judge, ...
            audit = {"error": str(error)}
            log.warning("correction %s of frame %s not applied: %s", correction.id, correction.frame_id, error)
        store.mark_applied(correction.id, audit)
        changes = audit.get("changes", {})
        if correction.undoes is None and changes.get("judge_added"):
            store.add_judge(line, correction.frame_id, "correction")
        if correction.undoes is None and changes.get("judge_removed"):
            store.remove_judge(line, correction.frame_id)
        store.log_event(line, "correction", f"correction {correction.id} ({correction.verdict}) applied", audit)
        applied.append({"id": correction.id, "frame_id": correction.frame_id, **audit})
    return applied
