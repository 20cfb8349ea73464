"""The line daemon: frames in over ZeroMQ, decisions out, everything recorded, safe to stop and restart.

Threads, each owning what it touches:
- ingest: receives on the PULL socket, records every receipt in the store, validates and decodes, and
  queues the frame (waiting up to ``queue_deadline_s`` for room: backpressure, never a silent drop) or
  refuses it with a reason;
- scorer: takes micro-batches from the queue and decides them with the ``OnlineScorer``;
- publisher: the only user of the PUB socket (decisions and refusals);
- recorder: writes decisions and refusals to the store and artifacts to disk, off the hot path;
- control: answers the REP socket (status, pause/resume, corrections, snapshot, shutdown);
- HTTP: /healthz, /readyz and Prometheus /metrics.
Received = decided + refused holds in the store at every quiet moment; frames caught mid-way by a crash
are refused at the next start.
"""

from __future__ import annotations

import logging
import math
import queue
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from daemon.artifacts import ArtifactWriter
from daemon.config import DaemonConfig
from daemon.corrections import apply_pending
from daemon.ingest import Accepted, Received, Refused, examine, identify
from daemon.observability import DaemonMetrics, HealthServer, Registry
from daemon.store import Store, StoreError
from musc_online.backbones import WeightsNotFoundError, create_backbone
from musc_online.datasets import DatasetError, images_in, load_image
from musc_online.online.scorer import Decision, OnlineScorer
from musc_online.protocol import ProtocolError, control_reply, decision_message, parse_control_request, refusal_message
from musc_online.transport import Context, TransportError, bind_daemon, recv_parts, send_parts

log = logging.getLogger("musc.daemon")

POLL_MS = 100
_STOP = object()  # tells a worker thread its queue is finished


@dataclass
class Outcome:
    """A decided frame on its way to the publisher and the recorder."""

    item: Accepted
    decision: Decision


class StartError(RuntimeError):
    """The daemon cannot start: weights, store, sockets or judges are not usable as configured."""


class LineDaemon:
    """One line's inspection service; ``run()`` blocks until a signal or a shutdown command."""

    def __init__(self, config: DaemonConfig) -> None:
        try:
            self._set_up(config)
        except (WeightsNotFoundError, TransportError, StoreError, DatasetError, OSError, ValueError) as error:
            raise StartError(str(error)) from error

    def _set_up(self, config: DaemonConfig) -> None:
        self.config = config
        self.line = config.line
        self.started_at = time.time()
        self.paused = threading.Event()
        self.stopping = threading.Event()
        self.ready = False
        self.scorer_lock = threading.Lock()
        self.frames: queue.Queue = queue.Queue(maxsize=config.pipeline.queue_size)
        self.outbox: queue.Queue = queue.Queue()
        self.records: queue.Queue = queue.Queue()
        self.registry = Registry()
        self.metrics = DaemonMetrics(self.registry, self.line)
        self.store = Store.open(config.store_url)
        self.artifacts = ArtifactWriter(
            config.artifacts_dir,
            keep_ok_every=config.artifacts.keep_ok_every,
            max_files=config.artifacts.max_files,
            max_age_days=config.artifacts.max_age_days,
        )
        self.scorer = self._build_scorer()
        self.recovered = self._recover()
        self.context = Context()
        self.sockets = bind_daemon(self.context, config.transport_settings())
        self.health = None
        if config.http.enabled:
            self.health = HealthServer(
                self.registry, self._alive, self._readiness, host=config.transport.host, port=config.http_port
            )
        self._wire_gauges()
        self._threads: list[threading.Thread] = []
        self._last_snapshot = time.monotonic()

    # ----------------------------------------------------------------------------------------- set-up
    def _build_scorer(self) -> OnlineScorer:
        model = self.config.model
        backbone = create_backbone(
            model.backbone, image_size=model.image_size, layers=model.layers or None, weights=model.weights or None
        )
        device = self.config.device()
        return OnlineScorer(backbone.to(device), self.config.online_settings(), device)

    def _recover(self) -> dict[str, int]:
        """Refuse frames a crash left undecided, restore the scorer's state, seed judges, apply corrections."""
        lost = self.store.refuse_pending(self.line, "daemon stopped before deciding this frame")
        recovered: dict[str, int] = {"refused_after_crash": lost}
        state = self.config.state_dir
        if (state / "state.json").is_file() or state.with_name(state.name + ".previous").is_dir():
            recovered.update(self.scorer.load(state))
        elif self.config.online.judges_dir:
            recovered["seeded_judges"] = self.seed_judges(self.config.online.judges_dir)
        recovered["corrections_applied"] = len(apply_pending(self.store, self.scorer, self.line, self.scorer_lock))
        message = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in recovered.items())
        self.store.log_event(self.line, "start", f"line {self.line} started; recovered {message}", recovered)
        log.info("recovered state: %s", message, extra={"recovered": recovered})
        return recovered

    def _wire_gauges(self) -> None:
        self.metrics.queue_depth.set_function(self.frames.qsize)
        self.metrics.window_frames.set_function(lambda: len(self.scorer.window))
        self.metrics.judges.set_function(lambda: len(self.scorer.judges) if self.scorer.judges else 0)

    def _alive(self) -> tuple[bool, str]:
        dead = [t.name for t in self._threads if not t.is_alive()]
        return (not dead, "ok" if not dead else f"threads stopped: {', '.join(dead)}")

    def _readiness(self) -> tuple[bool, str]:
        if self.stopping.is_set():
            return False, "draining"
        if self.paused.is_set():
            return False, "paused"
        return self.ready, "ready" if self.ready else "starting"

    # ------------------------------------------------------------------------------------------- run
    def run(self, handle_signals: bool = True) -> int:
        """Serve until SIGTERM/SIGINT or a shutdown command; then drain, record, save and exit 0."""
        if handle_signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: self.stopping.set())
        workers = {
            "ingest": self._ingest_loop,
            "scorer": self._scorer_loop,
            "publisher": self._publisher_loop,
            "recorder": self._recorder_loop,
            "control": self._control_loop,
        }
        self._threads = [threading.Thread(target=fn, name=name, daemon=True) for name, fn in workers.items()]
        for thread in self._threads:
            thread.start()
        if self.health:
            self.health.start()
        self.ready = True
        log.info(
            "line %d serving: frames %s, decisions %s, control %s",
            self.line,
            self.sockets.settings.frames_endpoint,
            self.sockets.settings.decisions_endpoint,
            self.sockets.settings.control_endpoint,
        )
        while not self.stopping.wait(0.2):
            pass
        self._shutdown()
        return 0

    def _shutdown(self) -> None:
        """Stop taking frames, score what was received, flush records, save the scorer, close everything."""
        log.info("shutting down: draining %d queued frame(s)", self.frames.qsize())
        threads = {t.name: t for t in self._threads}
        threads["ingest"].join()
        self.frames.put(_STOP)
        threads["scorer"].join()
        self.outbox.put(_STOP)
        self.records.put(_STOP)
        threads["publisher"].join()
        threads["recorder"].join()
        threads["control"].join()
        self.snapshot()
        counts = self.store.counts(self.line)
        self.store.log_event(self.line, "stop", "line stopped cleanly", dict(counts))
        if self.health:
            self.health.stop()
        self.sockets.close()
        self.context.term()
        self.store.close()
        log.info("stopped cleanly: %s", dict(counts))

    # ---------------------------------------------------------------------------------------- ingest
    def _ingest_loop(self) -> None:
        sock = self.sockets.frames
        while not self.stopping.is_set() or self._pending_on_socket(sock):
            if self.paused.is_set() and not self.stopping.is_set():
                time.sleep(POLL_MS / 1000)
                continue
            parts = recv_parts(sock, POLL_MS)
            if parts is not None:
                self._ingest(parts)

    @staticmethod
    def _pending_on_socket(sock) -> bool:
        return bool(sock.poll(0))

    def _ingest(self, parts: list[bytes]) -> None:
        received = Received(time.time(), sum(len(p) for p in parts))
        identify(parts, received)
        received.store_key = self.store.record_frame(
            self.line, received.frame_id, received.camera, received.received_at, received.size_bytes
        )
        self.metrics.frames_received.inc()
        result = examine(parts, received, self.line, self.config.pipeline.max_image_pixels)
        if isinstance(result, Refused):
            self._refuse(result)
            return
        try:
            self.frames.put(result, timeout=self.config.pipeline.queue_deadline_s)
        except queue.Full:
            self._refuse(Refused(received, "overloaded", "the scoring queue stayed full", result.header.identity()))

    def _refuse(self, refused: Refused) -> None:
        received = refused.received
        log.warning(
            "refused frame %s from %s: %s",
            received.frame_id,
            received.camera,
            refused.message,
            extra={"frame_id": received.frame_id, "camera": received.camera, "reason": refused.code},
        )
        self.metrics.frames_refused.labels(reason=refused.code).inc()
        payload = {
            "line": self.line,
            "camera": received.camera,
            "frame_id": received.frame_id,
            **refused.identity,
            "code": refused.code,
            "reason": refused.message,
            "received_at": received.received_at,
        }
        self.outbox.put(refusal_message(self.line, payload))
        self.records.put(refused)

    # ---------------------------------------------------------------------------------------- scoring
    def _scorer_loop(self) -> None:
        finished = False
        while not finished:
            try:
                first = self.frames.get(timeout=POLL_MS / 1000)
            except queue.Empty:
                self._maybe_snapshot()
                continue
            batch = []
            for item in self._drain(first):
                if item is _STOP:
                    finished = True
                else:
                    batch.append(item)
            if batch:
                self._score(batch)

    def _drain(self, first):
        """The first item plus whatever else is queued, up to one micro-batch."""
        yield first
        for _ in range(self.config.pipeline.micro_batch - 1):
            try:
                yield self.frames.get_nowait()
            except queue.Empty:
                return

    def _score(self, batch: list[Accepted]) -> None:
        with self.scorer_lock:
            fresh = []
            for item in batch:
                frame_id = item.header.frame_id
                if frame_id in self.scorer.history or frame_id in self.scorer.window:
                    message = f"frame id {frame_id!r} was already scored"
                    self._refuse(Refused(item.received, "duplicate_frame_id", message, item.header.identity()))
                else:
                    fresh.append(item)
            if not fresh:
                return
            try:
                decisions = self.scorer.score_many([i.image for i in fresh], [i.header.frame_id for i in fresh])
            except Exception as error:  # a scoring fault must refuse the frames, never lose them
                log.exception("scoring failed")
                self.metrics.errors.labels(kind="scoring").inc()
                for item in fresh:
                    self._refuse(Refused(item.received, "internal_error", f"scoring failed: {error}"))
                return
        for item, decision in zip(fresh, decisions, strict=True):
            latency = time.time() - item.received.received_at
            self.metrics.decisions.labels(label=decision.label).inc()
            self.metrics.latency.observe(latency)
            self.outbox.put(decision_message(self.line, self._payload(item, decision, latency)))
            self.records.put(Outcome(item, decision))

    def _payload(self, item: Accepted, decision: Decision, latency_s: float) -> dict:
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

    def _maybe_snapshot(self) -> None:
        if time.monotonic() - self._last_snapshot >= self.config.pipeline.snapshot_every_s:
            self.snapshot()

    def snapshot(self) -> Path:
        """Save the scorer's judges, defects, window and band (atomically) under the line's state folder."""
        with self.scorer_lock:
            path = self.scorer.save(self.config.state_dir)
        self._last_snapshot = time.monotonic()
        return path

    # -------------------------------------------------------------------------------- publish, record
    def _publisher_loop(self) -> None:
        while (message := self.outbox.get()) is not _STOP:
            if not send_parts(self.sockets.decisions, message, timeout_ms=1000):
                self.metrics.errors.labels(kind="publish").inc()

    def _recorder_loop(self) -> None:
        while (record := self.records.get()) is not _STOP:
            try:
                if isinstance(record, Refused):
                    self.store.record_refusal(record.received.store_key, f"{record.code}: {record.message}")
                else:
                    self._record_decision(record)
            except Exception as error:  # keep recording the rest; the error is counted and logged
                log.exception("recording failed")
                self.metrics.errors.labels(kind="store").inc()
                self._settle_unrecorded(record, error)

    def _settle_unrecorded(self, record: Refused | Outcome, error: Exception) -> None:
        """A decision that could not be stored still leaves the frame settled (refused, with the reason)."""
        key = record.received.store_key if isinstance(record, Refused) else record.item.received.store_key
        try:
            self.store.record_refusal(key, f"internal_error: could not record the outcome ({error})")
        except Exception:  # the store itself is failing; the frame stays pending and is refused at restart
            log.exception("could not settle frame %s", key)

    def _record_decision(self, outcome: Outcome) -> None:
        decision = outcome.decision
        artifact = self.artifacts.save(decision, outcome.item.image)
        nearest = decision.nearest_defect
        self.store.record_decision(
            outcome.item.received.store_key,
            label=decision.label,
            score=decision.score,
            raw_score=decision.raw_score,
            band_low=None if math.isnan(decision.band.low) else decision.band.low,
            band_high=None if math.isnan(decision.band.high) else decision.band.high,
            provisional=decision.provisional,
            decided_at=time.time(),
            latency_ms=decision.timings_ms.get("total", 0.0),
            nearest_defect_label=nearest.label if nearest else None,
            nearest_defect_frame=nearest.frame_id if nearest else None,
            artifact_path=str(artifact) if artifact else None,
        )

    # ---------------------------------------------------------------------------------------- control
    def _control_loop(self) -> None:
        sock = self.sockets.control
        while not self.stopping.is_set():
            raw = recv_parts(sock, POLL_MS)
            if raw is None:
                continue
            try:
                command, args = parse_control_request(raw)
                reply = control_reply(True, self._command(command, args))
            except ProtocolError as error:
                reply = control_reply(False, error=error.message)
            except Exception as error:  # a failed command is answered, the daemon goes on
                log.exception("control command failed")
                reply = control_reply(False, error=f"{type(error).__name__}: {error}")
            send_parts(sock, [reply], timeout_ms=1000)

    def _command(self, command: str, args: dict) -> object:
        if command == "status":
            return self.status()
        if command == "pause":
            self.paused.set()
            return {"paused": True}
        if command == "resume":
            self.paused.clear()
            return {"paused": False}
        if command == "apply_corrections":
            applied = apply_pending(self.store, self.scorer, self.line, self.scorer_lock)
            if applied:
                self.snapshot()  # applied corrections must survive even a kill -9
            return {"applied": applied}
        if command == "snapshot":
            return {"saved": str(self.snapshot())}
        if command == "reload_judges":
            return {"added": self.seed_judges(args.get("folder") or self.config.online.judges_dir)}
        if command == "judges":
            return self.judges_command(args)
        if command == "shutdown":
            self.stopping.set()
            return {"stopping": True}
        raise ValueError(f"unknown command {command!r}")

    def seed_judges(self, folder: str | Path) -> int:
        """Add a folder's images as judges (those not already in the bank); returns how many were added."""
        if not folder:
            raise ValueError("no judges folder given and none configured ([online] judges_dir)")
        pairs = [(f"seed/{p.stem}", p) for p in images_in(folder)]
        with self.scorer_lock:
            pairs = [(i, p) for i, p in pairs if not (self.scorer.judges and i in self.scorer.judges)]
            added = self.scorer.seed_judges([load_image(p) for _, p in pairs], [i for i, _ in pairs])
        for judge_id, _ in pairs:
            self.store.add_judge(self.line, judge_id, "seed")
        if added and self.ready:
            self.snapshot()
        return added

    def judges_command(self, args: dict) -> object:
        """Curate the judge bank: list, add a folder, remove one, export to or import from a file."""
        action = args.get("action")
        if action == "list":
            sources = {j.judge_id: j.source for j in self.store.judges(self.line)}
            with self.scorer_lock:
                bank = self.scorer.judges
                ids = bank.ids() if bank else []
                return [{"id": i, "score": bank.score(i), "source": sources.get(i, "?")} for i in ids]
        if action == "add":
            return {"added": self.seed_judges(args["folder"])}
        if action == "remove":
            with self.scorer_lock:
                self.scorer.remove_judge(args["id"])
            self.store.remove_judge(self.line, args["id"])
            self.snapshot()
            return {"removed": args["id"]}
        if action == "export":
            with self.scorer_lock:
                return {"exported": self.scorer.export_judges(args["file"]), "file": args["file"]}
        if action == "import":
            with self.scorer_lock:
                added = self.scorer.import_judges(args["file"])
            for judge_id in added:
                self.store.add_judge(self.line, judge_id, "import")
            self.snapshot()
            return {"imported": len(added)}
        raise ValueError(f"unknown judges action {action!r}: list, add, remove, export or import")

    def status(self) -> dict:
        """Counts from the store (received = decided + refused + pending), scorer state, queue, uptime."""
        with self.scorer_lock:
            scorer = self.scorer.stats()
        return {
            "line": self.line,
            "counts": dict(self.store.counts(self.line)),
            "scorer": scorer,
            "queue_depth": self.frames.qsize(),
            "paused": self.paused.is_set(),
            "uptime_s": time.time() - self.started_at,
            "recovered": self.recovered,
            "endpoints": {
                "frames": self.sockets.settings.frames_endpoint,
                "decisions": self.sockets.settings.decisions_endpoint,
                "control": self.sockets.settings.control_endpoint,
            },
        }
