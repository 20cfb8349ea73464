"""The line daemon: frames in over ZeroMQ, an answer out for every one in time, everything recorded.

Threads, each owning what it touches, joined by bounded queues (``Handoff``) that are exported as metrics:

    ingest ──scoring queue──> scoring ──> Answers ──outbox──> publisher (PUB socket)
       │                                    ├──records──> recorder (store, grouped transactions)
       └── refusals ──> Answers             └──pictures──> picture writer (PNG files, pruning) ──records──┘
    control (REP socket)    snapshots (timer)    HTTP (/healthz, /readyz, /metrics)

Received = decided + refused + pending holds in the store at every quiet moment; frames a crash caught
mid-way are refused as ``interrupted`` at the next start, and corrections the saved state lacks are applied
again.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterable
from operator import attrgetter
from pathlib import Path

from daemon.artifacts import ArtifactWriter
from daemon.config import DaemonConfig
from daemon.observability import DaemonMetrics, HealthServer, QueueBounds, QueueReading
from daemon.outputs.line_outputs import LineOutputs
from daemon.service.answers import Answers, PictureJob
from daemon.service.claim import LineClaim
from daemon.service.control import Control, exchange_folders
from daemon.service.corrections import CorrectionApplier
from daemon.service.frames import Accepted, AgeBudget, FrameKeeper
from daemon.service.handoff import Handoff
from daemon.service.ingest import Ingest
from daemon.service.memory import frame_memory
from daemon.service.pictures import PictureWriter
from daemon.service.recorder import Recorder
from daemon.service.recovery import build_scorer, recover
from daemon.service.scoring import Scoring
from daemon.service.shutdown import BoundedJoin
from daemon.service.store_link import StoreLink
from daemon.store import FrameEntry, LineBusyError, Retention, Store, StoreError, StoreUnavailableError
from musc_online.backbones import WeightsNotFoundError
from musc_online.datasets import DatasetError
from musc_online.online.history import FrameRecord
from musc_online.online.persistence import capture
from musc_online.transport import Context, TransportError, bind_daemon, send_parts

log = logging.getLogger("musc.daemon")
_nbytes = attrgetter("nbytes")  # what a queued frame or picture weighs, for the byte bounds

OUTBOX_SIZE = 10_000  # answers waiting for the PUB socket (it never blocks, so this only fills on a stall)
RECORDS_SIZE = 50_000  # store entries waiting for the recorder: minutes of a busy line's receipts and outcomes
PICTURES_SIZE = 32  # pictures waiting for the writer (also bounded in bytes); beyond that pictures are shed, not frames
SKEW_WARNING_PERIOD_S = 60.0
STATUS_SETTLE_S = 2.0  # a camera whose clock runs ahead is logged at most this often
SHUTDOWN_JOIN_S = 40.0  # all threads' draining together: inside systemd's TimeoutStopSec=60, with room to close


class StartError(RuntimeError):
    """The daemon cannot start: weights, store, sockets or judges are not usable as configured.

    ``retry`` is True when trying again later may work (the database is not reachable yet, or another daemon
    still holds the line).
    """

    def __init__(self, message: str, retry: bool = False) -> None:
        super().__init__(message)
        self.retry = retry


class LineDaemon:
    """One line's inspection service; ``run()`` blocks until a signal or a shutdown command."""

    def __init__(self, config: DaemonConfig) -> None:
        self.claim: LineClaim | None = None  # the line's locks, let go when it stops or fails to start
        try:
            try:
                self._set_up(config)
            except BaseException:
                if self.claim:
                    self.claim.release()
                raise
        except (StoreUnavailableError, LineBusyError) as error:
            raise StartError(str(error), retry=True) from error
        except (WeightsNotFoundError, TransportError, StoreError, DatasetError, OSError, ValueError) as error:
            raise StartError(str(error)) from error

    def _set_up(self, config: DaemonConfig) -> None:
        self.config = config
        self.line = config.line
        self.claim = LineClaim(config)  # one line, one daemon; off loopback only with CURVE keys: before all else
        self.started_at = time.time()
        self.stopping = threading.Event()
        self.ready = False
        self.scorer_lock = threading.Lock()
        self._snapshot_lock = threading.Lock()
        self._skew_warned: dict[str, float] = {}  # camera -> when its clock skew was last logged (monotonic)
        pipeline = config.pipeline
        self.frames: Handoff[Accepted] = Handoff("scoring", pipeline.queue_size, pipeline.queue_bytes, _nbytes)
        self.outbox: Handoff[list[bytes]] = Handoff("outbox", OUTBOX_SIZE)
        self.records: Handoff[FrameEntry] = Handoff("records", RECORDS_SIZE)
        self.pictures: Handoff[PictureJob] = Handoff("pictures", PICTURES_SIZE, pipeline.pictures_bytes, _nbytes)
        self.metrics = DaemonMetrics(self.line, self._queue_readings, self._queue_bounds)
        self.outputs = LineOutputs(config, self.metrics.registry)  # MQTT: fed by the publisher, never waited on
        self.store = Store.open(config.store_url)
        self.claim.hold(self.store)  # PostgreSQL: the line in the shared store too, before crash recovery
        self.artifacts = ArtifactWriter(
            config.artifacts_dir,
            keep_ok_every=config.artifacts.keep_ok_every,
            max_files=config.artifacts.max_files,
            max_age_days=config.artifacts.max_age_days,
        )
        self.scorer = build_scorer(config)
        self.answers = Answers(self.line, self.outbox, self.records, self.pictures, self.artifacts, self.metrics)
        self.budget = AgeBudget(pipeline.max_age_ms, pipeline.max_clock_skew_ms, self._clock_skew)
        self.corrections = CorrectionApplier(self.store, self.scorer, self.line, self.scorer_lock, self._recall)
        self.recovered = recover(config, self.scorer, self.scorer_lock, self.store, self.corrections, self.snapshot)
        self.context = Context()
        self.sockets = bind_daemon(self.context, self.claim.transport)
        self.scoring = Scoring(
            self.frames,
            self.scorer,
            self.scorer_lock,
            self.answers,
            self.budget,
            self.metrics,
            pipeline.micro_batch,
        )
        ingest = Ingest(
            self.line,
            self.sockets.frames,
            self.frames,
            self.answers,
            self.budget,
            self.metrics,
            pipeline.max_image_pixels,
            FrameKeeper(self.scorer.views.fit, pipeline.picture_side),
            self.scoring.expected_cost_s,
            self.stopping,
        )
        control = Control(
            self.line,
            self.sockets.control,
            self.scorer,
            self.scorer_lock,
            self.store,
            self.corrections,
            self.snapshot,
            self.status,
            config.online.judges_dir,
            exchange_folders(config.line_dir, config.paths.export_dir),
            self.frames,
            self.stopping,
        )
        self.workers = {
            "ingest": ingest.run,
            "scoring": self.scoring.run,
            "publisher": self._publish,
            "recorder": Recorder(
                self.store, self.line, self.records, self._count_error, self.metrics.store_write.observe
            ).run,
            "pictures": PictureWriter(self.artifacts, self.pictures, self.records, self._count_error).run,
            "control": control.run,
            "snapshots": self._snapshot_timer,
            "store_link": StoreLink(
                self.store,
                self.line,
                self.corrections,
                self.snapshot,
                self.report,
                self.stopping,
                config.store.poll_s,
                config.store.report_every_s,
                self._count_error,
                Retention(self.store, self.line, config.store.keep_days, config.artifacts_dir),
            ).run,
        }
        self.health = None
        if config.http.enabled:
            self.health = HealthServer(
                self.metrics.render, self._alive, self._readiness, host=config.transport.host, port=config.http_port
            )
        self.metrics.window_frames.set_function(lambda: len(self.scorer.window))
        self.metrics.judges.set_function(lambda: len(self.scorer.judges) if self.scorer.judges else 0)
        self.memory = frame_memory(config, self.scorer.backbone.image_size)
        for part, most in self.memory.items():
            self.metrics.frame_memory(part).set(most)
        self._threads: list[threading.Thread] = []

    # ----------------------------------------------------------------------------------------- set-up
    def _recall(self, frame_id: str) -> FrameRecord | None:
        """A decided frame's features, from the picture kept of it; None when no picture is left."""
        decision = self.store.decision_for(self.line, frame_id)
        if decision is None or not decision.artifact_path or not Path(decision.artifact_path).is_file():
            return None
        image = ArtifactWriter.frame_from(decision.artifact_path)
        return self.scorer.frame_record(image, decision.score, decision.label)

    def _clock_skew(self, camera: str, ahead_s: float) -> None:
        self.metrics.clock_skew(camera).inc()
        if time.monotonic() - self._skew_warned.get(camera, -SKEW_WARNING_PERIOD_S) < SKEW_WARNING_PERIOD_S:
            return
        self._skew_warned[camera] = time.monotonic()
        log.warning(
            "camera %s stamps frames %.2f s ahead of this host's clock: their age is counted from arrival; "
            "synchronise the camera's clock (NTP/PTP)",
            camera,
            ahead_s,
        )

    def _count_error(self, kind: str) -> None:
        self.metrics.errors(kind).inc()

    def _queue_readings(self) -> Iterable[QueueReading]:
        return [queue.reading() for queue in (self.frames, self.outbox, self.records, self.pictures)]

    def _queue_bounds(self) -> list[QueueBounds]:
        return [queue.bounds() for queue in (self.frames, self.outbox, self.records, self.pictures)]

    def _alive(self) -> tuple[bool, str]:
        dead = [t.name for t in self._threads if not t.is_alive()]
        return (not dead, "ok" if not dead else f"threads stopped: {', '.join(dead)}")

    def _readiness(self) -> tuple[bool, str]:
        if self.stopping.is_set():
            return False, "draining"
        if self.frames.held:
            return False, "paused"
        return self.ready, "; ".join(["ready" if self.ready else "starting", *self.outputs.problems()])

    # ------------------------------------------------------------------------------------------- run
    def run(self, handle_signals: bool = True) -> int:
        """Serve until SIGTERM/SIGINT or a shutdown command; then drain, record, save and exit 0."""
        if handle_signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: self.stopping.set())
        self._threads = [threading.Thread(target=fn, name=name, daemon=True) for name, fn in self.workers.items()]
        for thread in self._threads:
            thread.start()
        if self.health:
            self.health.start()
        self.outputs.start(self._readiness)
        self.ready = True
        endpoints = self.sockets.settings
        log.info(
            "line %d serving: frames %s, decisions %s, control %s",
            self.line,
            endpoints.frames_endpoint,
            endpoints.decisions_endpoint,
            endpoints.control_endpoint,
        )
        while not self.stopping.wait(0.2):
            pass
        self._shutdown()
        return 0

    def _shutdown(self) -> None:
        """Stop taking frames, score what was received, flush records and pictures, save the scorer, close."""
        log.info("shutting down: draining %d queued frame(s)", self.frames.reading()[1])
        stop = BoundedJoin(self._threads, SHUTDOWN_JOIN_S, self._queue_readings)
        stop.join("ingest")
        self.frames.close()
        stop.join("scoring")
        self.pictures.close()
        stop.join("pictures")
        self.outbox.close()
        self.records.close()
        stop.join("publisher", "recorder", "control", "snapshots", "store_link")
        self.outputs.stop()
        if not {"scoring", "control"} & set(stop.stuck):  # neither may still hold the scorer
            self.snapshot()
        counts = None
        if stop.clean:  # a thread still running may wait on the store: ask it nothing more
            counts = self.store.counts(self.line)
            self.store.log_event(self.line, "stop", "line stopped cleanly", dict(counts))
        if self.health:
            self.health.stop()
        self.sockets.close()
        self.context.term()
        self.store.close()
        self.claim.release()
        if counts is not None:
            log.info("stopped cleanly: %s", dict(counts))

    def _publish(self) -> None:
        """The publisher thread: the only user of the PUB socket."""
        while not self.outbox.finished:
            messages, _ = self.outbox.take(64, 0.1)
            for message in messages:
                if not send_parts(self.sockets.decisions, message, timeout_ms=1000):
                    self._count_error("publish")
                self.outputs.offer(message)

    def _snapshot_timer(self) -> None:
        """The snapshot thread: saves the scorer every ``snapshot_every_s`` while the line runs."""
        while not self.stopping.wait(self.config.pipeline.snapshot_every_s):
            try:
                self.snapshot()
            except Exception:
                log.exception("periodic snapshot failed")
                self._count_error("snapshot")

    def snapshot(self) -> Path:
        """Save the scorer's judges, defects, window and band under the line's state folder (atomically).

        The state is copied under the scorer's lock and written outside it, so scoring waits only for the copy.
        """
        with self._snapshot_lock:
            with self.scorer_lock:
                state = capture(self.scorer)
            return state.write(self.config.state_dir)

    # ---------------------------------------------------------------------------------------- status
    def report(self) -> dict:
        """What the line tells the store every few seconds: its scorer, queues (held and bounds), budget, pause."""
        with self.scorer_lock:
            scorer = self.scorer.stats()
        return {
            "scorer": scorer,
            "queues": {queue.name: queue.status() for queue in (self.frames, self.outbox, self.records, self.pictures)},
            "memory_bounds": self.memory,
            "max_age_ms": self.config.pipeline.max_age_ms,
            "expected_scoring_ms": 1e3 * self.scoring.expected_cost_s(1),
            "paused": self.frames.held,
            "care_area": self.scorer.care_area and self.scorer.care_area.describe(),  # None: the whole frame
            "uptime_s": time.time() - self.started_at,
            "endpoints": {"control": self.sockets.settings.control_endpoint},
        }

    def status(self) -> dict:
        """Counts from the store (received = decided + refused + pending), scorer state, queues, budget, uptime.

        Waits up to ``STATUS_SETTLE_S`` for the recorder to write what is queued, so the counts match the answers
        sent so far; under a backlog they lag, and ``queues.records`` says by how much.
        """
        self.records.settled(STATUS_SETTLE_S)
        report = self.report()
        band_events = [
            {"at": e.at, "kind": e.kind, "message": e.message} for e in self.store.events(self.line, 3, "band_")
        ]
        return {
            **report,
            "line": self.line,
            "counts": dict(self.store.counts(self.line)),
            "queue_depth": report["queues"]["scoring"]["depth"],
            "band_events": band_events,
            "recovered": self.recovered,
            "outputs": self.outputs.status(),
            "endpoints": {
                "frames": self.sockets.settings.frames_endpoint,
                "decisions": self.sockets.settings.decisions_endpoint,
                "control": self.sockets.settings.control_endpoint,
            },
        }
