"""Watching the daemon: Prometheus metrics, /healthz and /readyz over HTTP, and one-JSON-object-per-line logs.

The metrics are a small thread-safe registry rendered in the Prometheus text exposition format 0.0.4, written
here rather than taken from prometheus_client to keep the daemon's dependencies to what the library needs.
"""

from __future__ import annotations

import bisect
import copy
import json
import logging
import math
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise
from types import TracebackType
from typing import Any, Self

logger = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)  # seconds
LABELS = ("ok", "unsure", "defect")  # decision labels, exported from zero so rates exist before the first one

Check = Callable[[], tuple[bool, str]]  # (healthy or ready, reason) for /healthz and /readyz

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def _format_value(value: float) -> str:
    """A sample value as Prometheus writes it: +Inf, -Inf, NaN or a Python float literal."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _sample(name: str, labels: Mapping[str, str], value: float) -> str:
    if not labels:
        return f"{name} {_format_value(value)}"
    pairs = ",".join(f'{key}="{_escape_label(val)}"' for key, val in labels.items())
    return f"{name}{{{pairs}}} {_format_value(value)}"


class _Metric:
    """Name, help, label names and constant labels; one value per combination of label values, under a lock.

    As in prometheus_client, a metric with labels is updated through ``.labels(name=value)``, which returns the
    series for those values (sharing the parent's store); a metric without labels is updated directly.
    """

    kind = ""
    reserved_labels: tuple[str, ...] = ()

    def __init__(
        self, name: str, help: str, labelnames: Sequence[str] = (), const_labels: Mapping[str, str] | None = None
    ) -> None:
        const_labels = dict(const_labels or {})
        if not _METRIC_NAME.fullmatch(name):
            raise ValueError(f"invalid metric name {name!r}")
        for label in (*labelnames, *const_labels):
            if not _LABEL_NAME.fullmatch(label) or label.startswith("__") or label in self.reserved_labels:
                raise ValueError(f"invalid label name {label!r} on metric {name}")
        if len({*labelnames, *const_labels}) != len(labelnames) + len(const_labels):
            raise ValueError(f"duplicate label name on metric {name}")
        self.name = name
        self.help = help
        self.labelnames = tuple(labelnames)
        self.const_labels = {key: str(value) for key, value in const_labels.items()}
        self._lock = threading.Lock()
        self._values: dict[tuple[str, ...], Any] = {}
        self._series: tuple[str, ...] | None = None if labelnames else ()  # label values this object updates

    def _key(self, labels: Mapping[str, object]) -> tuple[str, ...]:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"metric {self.name} takes labels {list(self.labelnames)}, got {sorted(labels)}")
        return tuple(str(labels[name]) for name in self.labelnames)

    def _labels(self, key: tuple[str, ...]) -> dict[str, str]:
        return {**self.const_labels, **dict(zip(self.labelnames, key, strict=True))}

    def labels(self, **values: object) -> Self:
        """The series for these label values, exported from zero as soon as it is asked for."""
        if self._series is not None:
            raise ValueError(f"metric {self.name} is already one series: it takes no (further) labels")
        key = self._key(values)
        with self._lock:
            self._values.setdefault(key, self._zero())
        series = copy.copy(self)  # shallow: the lock and the values stay shared with this metric
        series._series = key
        return series

    def _bound(self) -> tuple[str, ...]:
        if self._series is None:
            raise ValueError(f"metric {self.name} has labels {list(self.labelnames)}: update it through .labels(...)")
        return self._series

    def _update(self, change: Callable[[Any], Any]) -> None:
        key = self._bound()
        with self._lock:
            self._values[key] = change(self._values.get(key, self._zero()))

    def _get(self) -> Any:
        key = self._bound()
        with self._lock:
            return self._values.get(key, self._zero())

    def _zero(self) -> Any:
        """The value of a series never touched (stored values are immutable, so snapshots need no copies)."""
        return 0.0

    def _snapshot(self) -> list[tuple[tuple[str, ...], Any]]:
        """Values by label values; a metric without labels is exported from zero before its first update."""
        with self._lock:
            items = sorted(self._values.items())
        return items or ([] if self.labelnames else [((), self._zero())])

    def _samples(self) -> Iterator[str]:
        for key, value in self._snapshot():
            yield _sample(self.name, self._labels(key), value)

    def render(self) -> str:
        """HELP and TYPE lines, then every sample, each line ending in a newline."""
        head = [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]
        return "".join(f"{line}\n" for line in (*head, *self._samples()))


class Counter(_Metric):
    """A count that only goes up (frames, decisions by label, errors by kind)."""

    kind = "counter"

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` (>= 0)."""
        if amount < 0:
            raise ValueError(f"counter {self.name} cannot decrease (got {amount})")
        self._update(lambda count: count + amount)

    def value(self) -> float:
        """The current count (0 when never incremented)."""
        return self._get()


class Gauge(_Metric):
    """A value that goes up and down: set directly, or read from a callback at scrape time (no labels then)."""

    kind = "gauge"

    def __init__(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str] = (),
        const_labels: Mapping[str, str] | None = None,
        function: Callable[[], float] | None = None,
    ) -> None:
        if function is not None and labelnames:
            raise ValueError(f"gauge {name} reads one value from its callback and cannot take labels")
        super().__init__(name, help, labelnames, const_labels)
        self._function = function

    def set(self, value: float) -> None:
        """Set the value."""
        self._update(lambda _: float(value))

    def set_function(self, function: Callable[[], float]) -> None:
        """Read the value from ``function`` at every scrape (queue depth, window fill), replacing any set value."""
        if self.labelnames:
            raise ValueError(f"gauge {self.name} has labels; a callback gives one value")
        with self._lock:
            self._function = function

    def value(self) -> float:
        """The current value (the callback's, if any; NaN, logged, when it fails; 0 when never set)."""
        function = self._function
        if function is None:
            return self._get()
        try:
            return float(function())
        except Exception:
            logger.warning("gauge %s: callback failed", self.name, exc_info=True)
            return math.nan

    def _samples(self) -> Iterator[str]:
        if self._function is None:
            yield from super()._samples()
        else:
            yield _sample(self.name, self.const_labels, self.value())


class Histogram(_Metric):
    """Observations counted in fixed buckets (upper bounds, seconds for latencies), with their sum and count."""

    kind = "histogram"
    reserved_labels = ("le",)

    def __init__(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str] = (),
        const_labels: Mapping[str, str] | None = None,
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> None:
        super().__init__(name, help, labelnames, const_labels)
        bounds = [float(b) for b in buckets if b != math.inf]  # +Inf is always the last bucket
        if not bounds or not all(map(math.isfinite, bounds)) or any(a >= b for a, b in pairwise(bounds)):
            raise ValueError(f"histogram {name} needs strictly increasing finite buckets, got {list(buckets)}")
        self.buckets = (*bounds, math.inf)

    def observe(self, value: float) -> None:
        """Count one observation in the first bucket whose upper bound is >= ``value``."""
        index = bisect.bisect_left(self.buckets, value)

        def add(state: tuple[tuple[int, ...], float]) -> tuple[tuple[int, ...], float]:
            counts, total = state
            return (*counts[:index], counts[index] + 1, *counts[index + 1 :]), total + value

        self._update(add)

    def _zero(self) -> tuple[tuple[int, ...], float]:
        return (0,) * len(self.buckets), 0.0

    def _samples(self) -> Iterator[str]:
        for key, (counts, total) in self._snapshot():
            labels = self._labels(key)
            cumulative = 0
            for bound, count in zip(self.buckets, counts, strict=True):
                cumulative += count
                yield _sample(f"{self.name}_bucket", {**labels, "le": _format_value(bound)}, cumulative)
            yield _sample(f"{self.name}_sum", labels, total)
            yield _sample(f"{self.name}_count", labels, cumulative)


class Registry:
    """The metrics a process exports; ``render`` is what /metrics serves."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._metrics: dict[str, _Metric] = {}

    def register(self, metric: _Metric) -> _Metric:
        """Add a metric; a second one with the same name is refused."""
        with self._lock:
            if metric.name in self._metrics:
                raise ValueError(f"metric {metric.name} is already registered")
            self._metrics[metric.name] = metric
        return metric

    def counter(
        self, name: str, help: str, labelnames: Sequence[str] = (), const_labels: Mapping[str, str] | None = None
    ) -> Counter:
        """Create and register a counter."""
        return self.register(Counter(name, help, labelnames, const_labels))

    def gauge(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str] = (),
        const_labels: Mapping[str, str] | None = None,
        function: Callable[[], float] | None = None,
    ) -> Gauge:
        """Create and register a gauge, optionally read from ``function`` at scrape time."""
        return self.register(Gauge(name, help, labelnames, const_labels, function))

    def histogram(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str] = (),
        const_labels: Mapping[str, str] | None = None,
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> Histogram:
        """Create and register a histogram with fixed bucket upper bounds."""
        return self.register(Histogram(name, help, labelnames, const_labels, buckets))

    def render(self) -> str:
        """Every metric in the Prometheus text exposition format 0.0.4, in registration order."""
        with self._lock:
            metrics = list(self._metrics.values())
        return "".join(metric.render() for metric in metrics)


class DaemonMetrics:
    """The daemon's metric set on ``registry``, every metric labelled with its ``line``."""

    def __init__(self, registry: Registry, line: int) -> None:
        const = {"line": str(line)}
        self.frames_received = registry.counter(
            "musc_frames_received_total", "Frames received from cameras.", const_labels=const
        )
        self.frames_refused = registry.counter(
            "musc_frames_refused_total", "Frames refused, by reason.", ("reason",), const
        )
        self.decisions = registry.counter("musc_decisions_total", "Decisions published, by label.", ("label",), const)
        self.latency = registry.histogram(
            "musc_decision_latency_seconds", "Seconds from a frame's arrival to its decision.", const_labels=const
        )
        self.queue_depth = registry.gauge("musc_queue_depth", "Frames waiting to be scored.", const_labels=const)
        self.window_frames = registry.gauge("musc_window_frames", "Frames voting in the window.", const_labels=const)
        self.judges = registry.gauge("musc_judges", "Judges in the bank.", const_labels=const)
        self.errors = registry.counter("musc_errors_total", "Errors, by kind.", ("kind",), const)
        for label in LABELS:
            self.decisions.labels(label=label)


class _HTTPServer(ThreadingHTTPServer):
    """The HTTP server with what the handler serves, logging handler errors instead of printing them."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], registry: Registry, liveness: Check, readiness: Check) -> None:
        super().__init__(address, _Handler)
        self.registry = registry
        self.checks = {"/healthz": liveness, "/readyz": readiness}

    def handle_error(self, request: object, client_address: tuple[str, int]) -> None:
        logger.warning("health server: error serving %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    """GET /metrics, /healthz and /readyz; 404 for anything else."""

    server: _HTTPServer

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._reply(200, self.server.registry.render(), CONTENT_TYPE)
        elif path in self.server.checks:
            try:
                ok, reason = self.server.checks[path]()
            except Exception as error:
                logger.warning("health server: %s check failed", path, exc_info=True)
                ok, reason = False, f"check failed: {error}"
            self._reply(200 if ok else 503, reason or ("ok" if ok else "unavailable"))
        else:
            self._reply(404, "not found: try /metrics, /healthz or /readyz")

    def _reply(self, status: int, body: str, content_type: str = "text/plain; charset=utf-8") -> None:
        data = body.encode() if body.endswith("\n") else f"{body}\n".encode()
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
        self, registry: Registry, liveness: Check, readiness: Check, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.registry = registry
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
        self._server = _HTTPServer((self.host, self.requested_port), self.registry, self.liveness, self.readiness)
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
