"""The daemon's metrics as Prometheus reads them, the health server over real HTTP, JSON logs."""

from __future__ import annotations

import io
import json
import logging
import urllib.error
import urllib.request
from datetime import datetime

import pytest
from prometheus_client.parser import text_string_to_metric_families

from daemon.observability import CONTENT_TYPE, DaemonMetrics, HealthServer, JsonFormatter, configure_logging


def samples(metrics: DaemonMetrics) -> dict[str, list[tuple[dict[str, str], float]]]:
    """What a Prometheus server would read: {sample name: [(labels, value)]}, through the maintained parser."""
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def test_daemon_metrics_are_the_documented_set_labelled_with_the_line() -> None:
    metrics = DaemonMetrics(3, queues=lambda: [("scoring", 2, 0.5), ("records", 0, 0.0)])
    metrics.frames_received.inc()
    metrics.refused("late").inc()
    metrics.decisions("defect").inc()
    metrics.latency.observe(0.02)
    metrics.window_frames.set(64)
    metrics.judges.set_function(lambda: 16)
    metrics.errors("store").inc()
    metrics.artifacts_shed.inc()
    metrics.clock_skew("cam-1").inc()

    found = samples(metrics)
    assert {
        "musc_frames_received_total",
        "musc_frames_refused_total",
        "musc_decisions_total",
        "musc_decision_latency_seconds_count",
        "musc_queue_depth",
        "musc_queue_oldest_age_seconds",
        "musc_window_frames",
        "musc_judges",
        "musc_errors_total",
        "musc_artifacts_shed_total",
        "musc_clock_skew_frames_total",
    } <= set(found)
    assert all(labels["line"] == "3" for series in found.values() for labels, _ in series)
    decisions = {labels["label"]: value for labels, value in found["musc_decisions_total"]}
    assert decisions == {"ok": 0.0, "unsure": 0.0, "defect": 1.0}
    assert found["musc_frames_refused_total"] == [({"line": "3", "reason": "late"}, 1.0)]
    depth = {labels["queue"]: value for labels, value in found["musc_queue_depth"]}
    assert depth == {"scoring": 2.0, "records": 0.0}
    assert found["musc_judges"] == [({"line": "3"}, 16.0)]


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


def test_health_server_serves_metrics_health_and_readiness(capfd: pytest.CaptureFixture[str]) -> None:
    metrics = DaemonMetrics(1)
    metrics.frames_received.inc(5)
    ready = {"state": (False, "model loading")}

    def readiness() -> tuple[bool, str]:
        return ready["state"]

    with HealthServer(metrics.render, liveness=lambda: (True, "ok"), readiness=readiness) as server:
        base = f"http://127.0.0.1:{server.port}"
        status, content_type, body = get(f"{base}/metrics")
        assert status == 200 and content_type == CONTENT_TYPE
        assert content_type.startswith("text/plain; version=")
        assert 'musc_frames_received_total{line="1"} 5.0' in body.splitlines()

        assert get(f"{base}/healthz")[::2] == (200, "ok\n")
        assert get(f"{base}/readyz")[::2] == (503, "model loading\n")
        ready["state"] = (True, "ready")
        assert get(f"{base}/readyz?verbose=1")[::2] == (200, "ready\n")
        ready["state"] = (False, "draining")
        assert get(f"{base}/readyz")[::2] == (503, "draining\n")
        assert get(f"{base}/nothing")[0] == 404
    assert capfd.readouterr().err == ""  # requests are logged at DEBUG, not printed
    with pytest.raises(urllib.error.URLError):
        get(f"{base}/healthz")


def test_a_failing_check_answers_503_and_stop_is_idempotent() -> None:
    def broken() -> tuple[bool, str]:
        raise RuntimeError("loop gone")

    server = HealthServer(DaemonMetrics(1).render, liveness=broken, readiness=broken).start()
    try:
        status, _, body = get(f"http://127.0.0.1:{server.port}/healthz")
        assert status == 503 and "loop gone" in body
    finally:
        server.stop()
    server.stop()
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.port


def test_json_formatter_emits_one_parseable_object_with_extra_fields() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(line=3))
    log = logging.getLogger("musc.test.json")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("refused %s", "frame", extra={"frame_id": "f-1", "camera": "cam0", "reason": "bad_header"})
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed", extra={"path": object()})
    finally:
        log.removeHandler(handler)
        log.propagate = True
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert {k: first[k] for k in ("level", "logger", "msg", "line", "frame_id", "camera", "reason")} == {
        "level": "WARNING",
        "logger": "musc.test.json",
        "msg": "refused frame",
        "line": 3,
        "frame_id": "f-1",
        "camera": "cam0",
        "reason": "bad_header",
    }
    assert datetime.fromisoformat(first["ts"]).utcoffset().total_seconds() == 0
    assert set(first) == {"ts", "level", "logger", "msg", "line", "frame_id", "camera", "reason"}
    assert "ValueError: boom" in second["exc"] and second["path"].startswith("<object")


def test_configure_logging_installs_one_json_handler_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging(line=2, level="debug")
        configure_logging(line=2, level="debug")  # again: still one handler
        assert len(root.handlers) == 1 and root.level == logging.DEBUG
        logging.getLogger("musc.test").debug("hello", extra={"frame_id": "x"})
        entry = json.loads(capsys.readouterr().err.strip())
        assert entry["msg"] == "hello" and entry["line"] == 2 and entry["frame_id"] == "x"
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
