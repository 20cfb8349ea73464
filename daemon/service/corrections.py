"""Bring the scorer in line with the operators' corrections in the store, and record what each one did.

The store is the log of corrections; the scorer's saved state is a checkpoint of it. At start every
correction the checkpoint lacks is applied again, so a crash between applying a correction and saving the
state loses nothing; afterwards the pending ones are applied when the daemon is told (control socket) or
finds them (store). Applying is idempotent: a correction the scorer already reflects is only marked.

A correction needs the frame's features. The scorer keeps recent frames, its voters, judges and known
defects; any other frame is recalled from the picture kept of it (every unsure and defect frame has one),
so a frame still in the review queue can be corrected whatever restarts happened since it was decided. A
correction that truly cannot act is recorded as applied with the reason in its audit (the operator who made
it sees it), and never stops the daemon.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from daemon.store import CorrectionRecord, Store
from musc_online.online.corrections import confirm_defect, confirm_normal, undo
from musc_online.online.history import FrameRecord
from musc_online.online.scorer import OnlineScorer

log = logging.getLogger("musc.daemon.corrections")

Recall = Callable[[str], FrameRecord | None]  # a frame's features from its kept picture, or None without one


def scorer_id(correction_id: int) -> str:
    """The scorer's name for a stored correction."""
    return f"db{correction_id}"


class CorrectionApplier:
    """Applies a line's stored corrections to its scorer, one application at a time."""

    def __init__(self, store: Store, scorer: OnlineScorer, line: int, lock: threading.Lock, recall: Recall) -> None:
        self.store = store
        self.scorer = scorer
        self.line = line
        self.lock = lock
        self.recall = recall
        self._serial = threading.Lock()

    def apply_pending(self) -> list[dict]:
        """Apply the corrections not yet applied, oldest first; returns what each one did."""
        with self._serial:
            return self._apply(self.store.pending_corrections(self.line))

    def recover(self) -> list[dict]:
        """At start: apply every correction the scorer's restored state lacks, applied before or not."""
        with self._serial:
            return self._apply(self.store.corrections(self.line))

    def _apply(self, corrections: Sequence[CorrectionRecord]) -> list[dict]:
        done = []
        for correction in corrections:
            if correction.undoes is None and correction.undone_at is not None:
                continue  # undone: its undo record acts for it
            if correction.applied_at is not None and "error" in (correction.audit or {}):
                continue  # it could not act when it was applied, and the reason is recorded
            pending = correction.applied_at is None
            if not pending and scorer_id(correction.id) in self.scorer.corrections:
                continue  # applied and in the restored state
            audit = self._act(correction)
            if not pending and "note" in audit:
                continue  # an applied undo that the restored state already reflects
            try:
                if pending:
                    self.store.mark_applied(correction.id, audit)
                self.store.sync_judge(self.line, correction.frame_id, self._is_judge(correction.frame_id), "correction")
                verb = "applied" if pending else "re-applied after a restart"
                message = f"correction {correction.id} ({correction.verdict}) of {correction.frame_id} {verb}"
                self.store.log_event(self.line, "correction", message, audit)
            except Exception:  # the store will be asked again: applying is idempotent
                log.exception("could not record correction %s as applied", correction.id)
                continue
            done.append({"id": correction.id, "frame_id": correction.frame_id, **audit})
        return done

    def _is_judge(self, frame_id: str) -> bool:
        with self.lock:
            return self.scorer.judges is not None and frame_id in self.scorer.judges

    def _act(self, correction: CorrectionRecord) -> dict:
        """Apply one correction (or undo) to the scorer; its audit record, with the reason if it cannot act."""
        name = scorer_id(correction.id)
        try:
            if correction.undoes is not None:
                return self._undo(scorer_id(correction.undoes))
            if name in self.scorer.corrections:
                return {"changes": self.scorer.corrections[name].changes, "note": "already in the scorer's state"}
            self._make_known(correction.frame_id)
            with self.lock:
                if correction.verdict == "ok":
                    result = confirm_normal(self.scorer, correction.frame_id, correction_id=name)
                else:
                    result = confirm_defect(
                        self.scorer, correction.frame_id, label=correction.defect_label, correction_id=name
                    )
            return {"changes": result.changes, "band_before": result.band_before, "band_after": result.band_after}
        except Exception as error:  # whatever it is, it is recorded, shown to the operator, and the line goes on
            log.warning("correction %s of frame %s cannot act: %s", correction.id, correction.frame_id, error)
            return {"error": str(error) or type(error).__name__}

    def _undo(self, name: str) -> dict:
        with self.lock:
            original = self.scorer.corrections.get(name)
        if original is None or original.undone:
            return {"undid": None, "note": "the original correction had not changed the scorer"}
        self._make_known(original.frame_id)
        with self.lock:
            result = undo(self.scorer, name)
        return {"undid": result.correction_id, "changes": result.changes, "band_after": result.band_before}

    def _make_known(self, frame_id: str) -> None:
        """Recall a frame the scorer no longer holds from its kept picture (outside the scorer's lock)."""
        with self.lock:
            if self.scorer.knows(frame_id):
                return
        record = self.recall(frame_id)
        if record is None:
            return  # the scorer's own error names what it lacks
        with self.lock:
            self.scorer.history.remember(frame_id, record)
