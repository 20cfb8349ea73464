"""Watching the daemon: Prometheus metrics, /healthz and /readyz over HTTP, and one-JSON-object-per-line logs.

Metrics use the maintained ``prometheus_client`` with one registry per line daemon, every series labelled
with the line; the queues between the daemon's threads are read at scrape time (depth, bytes, their bounds
and oldest age), beside the bounds of the memory its frames may take.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, NamedTuple

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)  # seconds
STORE_WRITE_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)  # seconds
LABELS = ("ok", "unsure", "defect")  # decision labels, exported from zero so rates exist before the first one

Check = Callable[[], tuple[bool, str]]  # (healthy or ready, reason) for /healthz and /readyz
QueueReading = tuple[str, int, float]  # (queue name, depth, age of its oldest item in seconds)


class QueueBounds(NamedTuple):
    """An internal queue's bounds and the bytes it holds (of frames: other queues weigh nothing)."""

    name: str
    bytes: int
    capacity: int  # most items
    max_bytes: int  # most bytes; 0: bounded by count only


class _QueueCollector(Collector):
    """Depth, bytes, bounds and oldest-item age of every internal queue, read when Prometheus scrapes."""

    def __init__(
        self, line: str, read: Callable[[], Iterable[QueueReading]], bounds: Callable[[], Iterable[QueueBounds]]
    ) -> None:
        self.line = line
        self.read = read
        self.bounds = bounds

    def collect(self) -> Iterator[GaugeMetricFamily]:
        def family(name: str, text: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, text, labels=["line", "queue"])

        depth = family("musc_queue_depth", "Items waiting in an internal queue.")
        age = family("musc_queue_oldest_age_seconds", "Age of the oldest item in an internal queue.")
        held = family("musc_queue_bytes", "Bytes of frames held by an internal queue (queues of frames only).")
        capacity = family("musc_queue_capacity", "Most items an internal queue holds.")
        max_bytes = family("musc_queue_capacity_bytes", "Most bytes of frames an internal queue holds.")
        for name, count, oldest in self.read():
            depth.add_metric([self.line, name], count)
            age.add_metric([self.line, name], oldest)
        for bound in self.bounds():
            capacity.add_metric([self.line, bound.name], bound.capacity)
            if bound.max_bytes:
                held.add_metric([self.line, bound.name], bound.bytes)
                max_bytes.add_metric([self.line, bound.name], bound.max_bytes)
        yield from (depth, age, held, capacity, max_bytes)


class DaemonMetrics:
    """The daemon's metric set on its own registry, every series labelled with its ``line``."""

    def __init__(
        self,
        line: int,
        queues: Callable[[], Iterable[QueueReading]] = tuple,
        bounds: Callable[[], Iterable[QueueBounds]] = tuple,
    ) -> None:
        self.registry = CollectorRegistry()
        name = str(line)

        def labelled(metric: Any, **values: str) -> Any:
            return metric.labels(line=name, **values) if values else metric.labels(line=name)

        def per(metric: Any, label: str) -> Callable[[str], Any]:
            return lambda value: labelled(metric, **{label: value})

        r = self.registry
        self.frames_received = labelled(
            Counter("musc_frames_received", "Frames received from cameras.", ["line"], registry=r)
        )
        self.refused = per(
            Counter("musc_frames_refused", "Frames refused, by reason code.", ["line", "reason"], registry=r), "reason"
        )
        self.decisions = per(
            Counter("musc_decisions", "Decisions published, by label.", ["line", "label"], registry=r), "label"
        )
        self.errors = per(Counter("musc_errors", "Errors, by kind.", ["line", "kind"], registry=r), "kind")
        self.artifacts_shed = labelled(
            Counter(
                "musc_artifacts_shed", "Pictures not kept because the artifact writer lagged.", ["line"], registry=r
            )
        )
        self.clock_skew = per(
            Counter(
                "musc_clock_skew_frames",
                "Frames stamped ahead of the daemon's clock, by camera.",
                ["line", "camera"],
                registry=r,
            ),
            "camera",
        )
        self.latency = labelled(
            Histogram(
                "musc_decision_latency_seconds",
                "Seconds from a frame's arrival to its decision.",
                ["line"],
                buckets=LATENCY_BUCKETS,
                registry=r,
            )
        )
        self.store_write = labelled(
            Histogram(
                "musc_store_write_seconds",
                "Seconds per grouped store write of frame records (one transaction).",
                ["line"],
                buckets=STORE_WRITE_BUCKETS,
                registry=r,
            )
        )
        self.window_frames = labelled(Gauge("musc_window_frames", "Frames voting in the window.", ["line"], registry=r))
        self.judges = labelled(Gauge("musc_judges", "Judges in the bank.", ["line"], registry=r))
        self.frame_memory = per(
            Gauge(
                "musc_frame_memory_bound_bytes",
                "Most bytes of frames the line holds, by place (receive_per_camera: ZeroMQ's queue per camera; total: "
                "all places, one camera), from its settings.",
                ["line", "part"],
                registry=r,
            ),
            "part",
        )
        r.register(_QueueCollector(name, queues, bounds))
        for label in LABELS:
            self.decisions(label)

    def render(self) -> bytes:
        """Every metric in the Prometheus text exposition format."""
        return generate_latest(self.registry)


class _HTTPServer(ThreadingHTTPServer):
    """The HTTP server with what the handler serves, logging handler errors instead of printing them."""

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], render: Callable[[], bytes], liveness: Check, readiness: Check
    ) -> None:
        super().__init__(address, _Handler)
        self.render = render
        self.checks = {"/healthz": liveness, "/readyz": readiness}

    def handle_error(self, request: object, client_address: tuple[str, int]) -> None:
        logger.warning("health server: error serving %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    """GET /metrics, /healthz and /readyz; 404 for anything else."""

    server: _HTTPServer

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._reply(200, self.server.render(), CONTENT_TYPE)
        elif path in self.server.checks:
            try:
                ok, reason = self.server.checks[path]()
            except Exception as error:
                logger.warning("health server: %s check failed", path, exc_info=True)
                ok, reason = False, f"check failed: {error}"
            self._reply(200 if ok else 503, reason or ("ok" if ok else "unavailable"))
        else:
            self._reply(404, "not found: try /metrics, /healthz or /readyz")

    def _reply(self, status: int, body: str | bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        data = body if isinstance(body, bytes) else f"{body.rstrip()}\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("health server: %s " + format, self.address_string(), *args)


class HealthServer:
    """/metrics, /healthz and /readyz over HTTP, served from a daemon thread so it never blocks the loop.

    ``liveness`` and ``readiness`` return (ok, reason): 200 with the reason when ok, else 503 with it.
    """

    def __init__(
        self, render: Callable[[], bytes], liveness: Check, readiness: Check, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.render = render
        self.liveness = liveness
        self.readiness = readiness
        self.host = host
        self.requested_port = port
        self._server: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port actually bound (the one the OS chose when asked for port 0)."""
        if self._server is None:
            raise RuntimeError("health server is not started")
        return int(self._server.server_address[1])

    def start(self) -> HealthServer:
        """Bind and serve in a daemon thread; binding errors (port in use) are raised here."""
        if self._server is not None:
            raise RuntimeError("health server is already started")
        self._server = _HTTPServer((self.host, self.requested_port), self.render, self.liveness, self.readiness)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="health-server", daemon=True
        )
        self._thread.start()
        logger.info("health server on http://%s:%d", self.host, self.port)
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; a no-op when not started."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = self._thread = None

    def __enter__(self) -> HealthServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


# Attributes every LogRecord has; anything else on a record came from ``extra={...}``.
_RECORD_FIELDS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts (ISO 8601 UTC), level, logger, msg, line, then any ``extra`` fields."""

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "line": self.line,
        }
        entry.update((key, value) for key, value in record.__dict__.items() if key not in _RECORD_FIELDS)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(line: int, level: str = "INFO", json_format: bool = True) -> logging.Handler:
    """Replace the root handlers with one writing to stderr: JSON lines, or plain text for a person at a terminal."""
    handler = logging.StreamHandler()
    if json_format:
        handler.setFormatter(JsonFormatter(line))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s %(name)s [line {line}] %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    return handler
