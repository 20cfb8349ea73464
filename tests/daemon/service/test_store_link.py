"""The store link: a correction written straight into the store reaches the running line without its sockets,
and the line reports its status into the store. On SQLite and on PostgreSQL."""

from __future__ import annotations

import time

import numpy as np

from ..conftest import LINE
from ..inprocess import InProcessLine, frame


def test_a_correction_written_into_the_store_changes_the_next_look_alike_decision_within_2_s(tmp_path):
    line = InProcessLine(tmp_path / "lines", **{"store.poll_s": 0.2, "pipeline.max_age_ms": 0})
    rng = np.random.default_rng(0)
    line.send({f"warm{i}": frame(rng) for i in range(24)})  # window 8, then 8 steady scores calibrate the band
    line.answers(24)
    odd = np.full((64, 64, 3), 200, np.uint8)  # unlike the warm-up frames: flagged
    line.send({"odd-1": odd})
    first = line.answers(25)["odd-1"]
    assert first["label"] != "ok", first
    line.quiet()

    written = time.monotonic()
    correction = line.store.add_correction(LINE, "odd-1", "ok", "ann", first["label"])  # no control call
    while line.store.pending_corrections(LINE) and time.monotonic() - written < 2.0:
        time.sleep(0.05)
    assert not line.store.pending_corrections(LINE), "the line did not pick up the correction within 2 s"
    (applied,) = [c for c in line.store.corrections(LINE) if c.id == correction]
    assert "error" not in applied.audit, applied.audit
    line.send({"odd-2": odd.copy()})
    again = line.answers(26)["odd-2"]
    assert again["label"] == "ok", again
    assert time.monotonic() - written < 10
    line.stop()


def test_the_line_reports_its_status_into_the_store(tmp_path):
    line = InProcessLine(tmp_path / "lines", **{"store.poll_s": 0.1, "store.report_every_s": 0.2})
    deadline = time.monotonic() + 5
    while not line.store.lines() and time.monotonic() < deadline:
        time.sleep(0.05)
    (report,) = line.store.lines()
    assert report.line == LINE and report.host and report.status["scorer"]["window_capacity"] == 8
    line.stop()
