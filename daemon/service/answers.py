"""Where every frame's answer goes: published to subscribers, recorded in the store, counted, pictured.

Ingest and the scorer both answer frames (refusals, decisions); they do it only through ``Answers``, so
each answer reaches the same places in the same order: the outbox of the publisher thread, the recorder's
queue, the metrics, and for kept decisions the picture writer's queue. Every queue is bounded; an answer that
finds the outbox full is still recorded and counted (subscribers are told by the store, not the wire).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np

from daemon.artifacts import ArtifactWriter
from daemon.observability import DaemonMetrics
from daemon.service.frames import Accepted, Refused
from daemon.service.handoff import Handoff
from daemon.store import FrameEntry, NewDecision, NewPicture, NewRefusal
from musc_online.messages import decision_message, refusal_message
from musc_online.online.decision import Decision

log = logging.getLogger("musc.daemon")

SHED_LOG_PERIOD_S = 10.0  # a full records queue sheds every entry: say so this often, with how many


@dataclass(frozen=True)
class PictureJob:
    """A kept decision's frame, for the picture writer."""

    seq: int
    decision: Decision
    image: np.ndarray

    @property
    def nbytes(self) -> int:
        """Bytes of pixels the job holds: what the picture queue's byte bound counts."""
        return self.image.nbytes


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else value


class Answers:
    """Answers frames: publishes, records, counts, and queues pictures of the decisions worth keeping."""

    def __init__(
        self,
        line: int,
        outbox: Handoff[list[bytes]],
        records: Handoff[FrameEntry],
        pictures: Handoff[PictureJob],
        writer: ArtifactWriter,
        metrics: DaemonMetrics,
    ) -> None:
        self.line = line
        self.outbox = outbox
        self.records = records
        self.pictures = pictures
        self.writer = writer
        self.metrics = metrics
        self._shed = 0  # entries shed since the last log line about it
        self._shed_logged = -SHED_LOG_PERIOD_S  # monotonic time of that line

    def refuse(self, refused: Refused) -> None:
        """Answer a frame the daemon will not score."""
        received = refused.received
        log.warning(
            "refused frame %s from %s: %s",
            received.frame_id,
            received.camera,
            refused.message,
            extra={"frame_id": received.frame_id, "camera": received.camera, "reason": refused.code},
        )
        self.metrics.refused(refused.code).inc()
        payload = {
            "line": self.line,
            "camera": received.camera,
            "frame_id": received.frame_id,
            **refused.identity,
            "code": refused.code,
            "reason": refused.message,
            "received_at": received.received_at,
            **refused.details,
        }
        self._publish(refusal_message(self.line, payload))
        self.record(NewRefusal(received.seq, refused.code, f"{refused.code}: {refused.message}"))

    def decide(self, item: Accepted, decision: Decision) -> None:
        """Answer a scored frame, and keep its picture when the artifact policy wants it."""
        now = time.time()
        latency = now - item.received.received_at
        self.metrics.decisions(decision.label).inc()
        self.metrics.latency.observe(latency)
        self._publish(decision_message(self.line, _payload(item, decision, latency)))
        nearest = decision.nearest_defect
        self.record(
            NewDecision(
                item.received.seq,
                label=decision.label,
                score=decision.score,
                raw_score=decision.raw_score,
                band_low=_finite(decision.band.low),
                band_high=_finite(decision.band.high),
                provisional=decision.provisional,
                decided_at=now,
                latency_ms=1e3 * latency,
                nearest_defect_label=nearest.label if nearest else None,
                nearest_defect_frame=nearest.frame_id if nearest else None,
            )
        )
        if not self.writer.keeps(decision.label):
            self.record(NewPicture(item.received.seq, None))
        elif not self.pictures.put(PictureJob(item.received.seq, decision, item.review)):
            self.metrics.artifacts_shed.inc()
            self.record(NewPicture(item.received.seq, None))

    def _publish(self, message: list[bytes]) -> None:
        if not self.outbox.put(message):
            self.metrics.errors("publish").inc()

    def record(self, entry: FrameEntry) -> None:
        """Queue one entry for the store (a receipt, an outcome or a picture path); one that finds the queue full
        is shed and counted, and logged at most every ``SHED_LOG_PERIOD_S`` with how many went since."""
        if self.records.put(entry):
            return
        self.metrics.errors("store").inc()
        self._shed += 1
        if time.monotonic() - self._shed_logged >= SHED_LOG_PERIOD_S:
            log.error(
                "the store is %d entries behind: %d entries not recorded since the last report (latest: %s)",
                self.records.capacity,
                self._shed,
                entry,
            )
            self._shed, self._shed_logged = 0, time.monotonic()


def _payload(item: Accepted, decision: Decision, latency_s: float) -> dict:
    """The JSON payload of a decision message."""
    nearest = decision.nearest_defect
    return {
        **item.header.identity(),
        "label": decision.label,
        "score": decision.score,
        "band": [decision.band.low, decision.band.high],
        "provisional": decision.provisional,
        "nearest_defect": None
        if nearest is None
        else {"frame_id": nearest.frame_id, "label": nearest.label, "similarity": nearest.similarity},
        "heatmap": {
            "grid": list(decision.patch_scores.shape),
            "values": [round(float(v), 5) for v in decision.patch_scores.ravel()],
        },
        "timestamp": item.header.timestamp,
        "latency_ms": 1e3 * latency_s,
    }
