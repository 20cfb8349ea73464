"""Metrics rendered in the Prometheus text format and parsed back, the health server over real HTTP, JSON logs."""

from __future__ import annotations

import io
import json
import logging
import math
import re
import threading
import urllib.error
import urllib.request
from datetime import datetime

import pytest

from daemon.observability import (
    CONTENT_TYPE,
    DaemonMetrics,
    HealthServer,
    JsonFormatter,
    Registry,
    configure_logging,
)

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)')


def parse(text: str) -> tuple[dict[str, tuple[str, str]], list[tuple[str, dict[str, str], float]]]:
    """A strict reader of the exposition format: {name: (type, help)} and (name, labels, value) samples."""
    assert text.endswith("\n")
    meta: dict[str, dict[str, str]] = {}
    samples = []
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            _, kind, name, rest = line.split(" ", 3)
            meta.setdefault(name, {})[kind] = rest
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name, raw_labels, value = match.groups()
        labels = {}
        if raw_labels:
            pairs = _LABEL.findall(raw_labels)
            assert ",".join(f'{k}="{v}"' for k, v in pairs) == raw_labels
            labels = {k: re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], v) for k, v in pairs}
        samples.append((name, labels, float(value)))
    return {name: (m["TYPE"], m["HELP"]) for name, m in meta.items()}, samples


def values(samples: list[tuple[str, dict[str, str], float]], name: str) -> list[tuple[dict[str, str], float]]:
    return [(labels, value) for sample, labels, value in samples if sample == name]


def test_counter_and_gauge_render_and_parse_back() -> None:
    registry = Registry()
    errors = registry.counter("musc_errors_total", "Errors, by kind.", ("kind",), {"line": "3"})
    registry.counter("musc_frames_received_total", "Frames.\nSecond line \\ too.")
    depth = registry.gauge("musc_queue_depth", "Queue.")
    decode = errors.labels(kind="decode")
    decode.inc()
    errors.labels(kind="decode").inc(2)
    errors.labels(kind="store").inc()
    errors.labels(kind="zmq")  # asked for, never incremented: exported at 0
    depth.set(7)

    meta, samples = parse(registry.render())
    assert meta["musc_errors_total"] == ("counter", "Errors, by kind.")
    assert meta["musc_frames_received_total"] == ("counter", "Frames.\\nSecond line \\\\ too.")
    assert meta["musc_queue_depth"][0] == "gauge"
    assert values(samples, "musc_errors_total") == [
        ({"line": "3", "kind": "decode"}, 3.0),
        ({"line": "3", "kind": "store"}, 1.0),
        ({"line": "3", "kind": "zmq"}, 0.0),
    ]
    assert values(samples, "musc_frames_received_total") == [({}, 0.0)]  # exported from zero
    assert values(samples, "musc_queue_depth") == [({}, 7.0)]
    assert decode.value() == 3.0 and errors.labels(kind="never").value() == 0.0 and depth.value() == 7.0


def test_label_values_are_escaped() -> None:
    registry = Registry()
    refused = registry.counter("musc_frames_refused_total", "Refused.", ("reason",))
    nasty = 'bad "header"\\ on\nline two'
    refused.labels(reason=nasty).inc()
    text = registry.render()
    assert 'reason="bad \\"header\\"\\\\ on\\nline two"' in text
    _, samples = parse(text)
    assert values(samples, "musc_frames_refused_total") == [({"reason": nasty}, 1.0)]


def test_histogram_buckets_are_cumulative_with_sum_and_count() -> None:
    registry = Registry()
    latency = registry.histogram("musc_decision_latency_seconds", "Latency.", const_labels={"line": "1"})
    for seconds in (0.003, 0.005, 0.02, 0.02, 3.0, 20.0):
        latency.observe(seconds)

    meta, samples = parse(registry.render())
    assert meta["musc_decision_latency_seconds"][0] == "histogram"
    buckets = {labels["le"]: value for labels, value in values(samples, "musc_decision_latency_seconds_bucket")}
    assert list(buckets)[-1] == "+Inf"
    assert buckets["0.005"] == 2  # upper bounds are inclusive
    assert buckets["0.01"] == 2 and buckets["0.025"] == 4 and buckets["5.0"] == 5 and buckets["10.0"] == 5
    assert buckets["+Inf"] == 6
    counts = list(buckets.values())
    assert counts == sorted(counts)
    assert values(samples, "musc_decision_latency_seconds_count") == [({"line": "1"}, 6.0)]
    ((_, total),) = values(samples, "musc_decision_latency_seconds_sum")
    assert total == pytest.approx(23.048)


def test_empty_histogram_renders_zero_buckets() -> None:
    registry = Registry()
    registry.histogram("musc_latency_seconds", "Latency.", buckets=(0.1, 1.0))
    _, samples = parse(registry.render())
    assert [(s[1].get("le"), s[2]) for s in samples] == [("0.1", 0), ("1.0", 0), ("+Inf", 0), (None, 0), (None, 0)]


def test_gauge_callback_is_read_at_scrape_time_and_a_failure_reads_nan() -> None:
    registry = Registry()
    queue: list[int] = []
    registry.gauge("musc_queue_depth", "Queue.", function=lambda: len(queue))
    broken = registry.gauge("musc_judges", "Judges.")
    broken.set_function(lambda: 1 / 0)
    assert values(parse(registry.render())[1], "musc_queue_depth") == [({}, 0.0)]
    queue.extend([1, 2, 3])
    _, samples = parse(registry.render())
    assert values(samples, "musc_queue_depth") == [({}, 3.0)]
    assert math.isnan(values(samples, "musc_judges")[0][1])
    assert "musc_judges NaN\n" in registry.render()


def test_invalid_definitions_and_updates_are_refused() -> None:
    registry = Registry()
    counter = registry.counter("musc_x_total", "X.", ("kind",))
    with pytest.raises(ValueError, match="already registered"):
        registry.counter("musc_x_total", "X again.")
    with pytest.raises(ValueError, match="cannot decrease"):
        counter.labels(kind="a").inc(-1)
    with pytest.raises(ValueError, match="takes labels"):
        counter.labels(colour="red")
    with pytest.raises(ValueError, match=r"update it through \.labels"):
        counter.inc()
    with pytest.raises(ValueError, match="already one series"):
        counter.labels(kind="a").labels(kind="b")
    with pytest.raises(ValueError, match="invalid metric name"):
        registry.gauge("musc-queue", "Bad name.")
    with pytest.raises(ValueError, match="invalid label name"):
        registry.histogram("musc_h_seconds", "Reserved label.", ("le",))
    with pytest.raises(ValueError, match="duplicate label"):
        registry.counter("musc_y_total", "Y.", ("line",), {"line": "3"})
    with pytest.raises(ValueError, match="strictly increasing"):
        registry.histogram("musc_h_seconds", "Unsorted.", buckets=(1.0, 0.5))
    with pytest.raises(ValueError, match="cannot take labels"):
        registry.gauge("musc_g", "Labelled callback.", ("kind",), function=lambda: 1.0)


def test_concurrent_updates_are_all_counted() -> None:
    registry = Registry()
    counter = registry.counter("musc_decisions_total", "Decisions.", ("label",))
    histogram = registry.histogram("musc_latency_seconds", "Latency.")
    threads_count, per_thread = 8, 2000

    def work() -> None:
        for i in range(per_thread):
            counter.labels(label="ok").inc()
            histogram.observe(i * 1e-4)
            if i % 100 == 0:
                registry.render()  # scrapes race with updates

    threads = [threading.Thread(target=work) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    _, samples = parse(registry.render())
    assert values(samples, "musc_decisions_total") == [({"label": "ok"}, threads_count * per_thread)]
    assert values(samples, "musc_latency_seconds_count") == [({}, threads_count * per_thread)]


def test_daemon_metrics_are_the_documented_set_labelled_with_the_line() -> None:
    registry = Registry()
    metrics = DaemonMetrics(registry, line=3)
    metrics.frames_received.inc()
    metrics.frames_refused.labels(reason="bad_header").inc()
    metrics.decisions.labels(label="defect").inc()
    metrics.latency.observe(0.02)
    metrics.queue_depth.set_function(lambda: 2)
    metrics.window_frames.set(64)
    metrics.judges.set(16)
    metrics.errors.labels(kind="store").inc()

    meta, samples = parse(registry.render())
    assert meta == {
        "musc_frames_received_total": ("counter", "Frames received from cameras."),
        "musc_frames_refused_total": ("counter", "Frames refused, by reason."),
        "musc_decisions_total": ("counter", "Decisions published, by label."),
        "musc_decision_latency_seconds": ("histogram", "Seconds from a frame's arrival to its decision."),
        "musc_queue_depth": ("gauge", "Frames waiting to be scored."),
        "musc_window_frames": ("gauge", "Frames voting in the window."),
        "musc_judges": ("gauge", "Judges in the bank."),
        "musc_errors_total": ("counter", "Errors, by kind."),
    }
    assert all(labels["line"] == "3" for _, labels, _ in samples)
    decisions = {labels["label"]: value for labels, value in values(samples, "musc_decisions_total")}
    assert decisions == {"ok": 0.0, "unsure": 0.0, "defect": 1.0}
    assert values(samples, "musc_queue_depth") == [({"line": "3"}, 2.0)]


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


def test_health_server_serves_metrics_health_and_readiness(capfd: pytest.CaptureFixture[str]) -> None:
    registry = Registry()
    DaemonMetrics(registry, line=1).frames_received.inc(5)
    ready = {"state": (False, "model loading")}

    def readiness() -> tuple[bool, str]:
        return ready["state"]

    with HealthServer(registry, liveness=lambda: (True, "ok"), readiness=readiness) as server:
        base = f"http://127.0.0.1:{server.port}"
        status, content_type, body = get(f"{base}/metrics")
        assert status == 200 and content_type == CONTENT_TYPE
        assert content_type.startswith("text/plain; version=0.0.4")
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

    server = HealthServer(Registry(), liveness=broken, readiness=broken).start()
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
