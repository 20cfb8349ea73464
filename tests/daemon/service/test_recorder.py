"""The recorder in a running in-process line: a failing store costs no answer and loses no accounting, a shed
receipt costs its group nothing, and a stalled store does not hold up shutdown."""

from __future__ import annotations

import threading

import numpy as np
from sqlalchemy.exc import OperationalError

from daemon.service import line as line_module
from daemon.service.handoff import Handoff
from daemon.service.recorder import Recorder
from daemon.store import NewDecision, NewFrame, NewPicture, NewRefusal, Store

from ..conftest import LINE
from ..inprocess import InProcessLine, frame
from .test_ingest import _metric


def test_a_store_that_fails_for_a_while_is_counted_and_caught_up_and_the_line_answers_on(tmp_path):
    line = InProcessLine(tmp_path / "lines")
    store = line.daemon.store
    original = store.write_frames
    failures = iter(range(2))

    def flaky(*args, **kwargs):
        if next(failures, None) is not None:
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        return original(*args, **kwargs)

    store.write_frames = flaky
    rng = np.random.default_rng(0)
    line.send({f"f{i}": frame(rng) for i in range(6)})
    answers = line.answers(6)
    assert all(m["topic"].endswith("decision") for m in answers.values())
    counts = line.quiet()
    assert (counts["received"], counts["decided"], counts["pending"]) == (6, 6, 0)
    errors = _metric(line, "musc_errors_total")
    assert errors[(("kind", "store"), ("line", "3"))] == 2.0
    line.stop()


VERDICT = {"score": 0.5, "raw_score": 0.4, "band_low": 0.3, "band_high": 0.6, "provisional": False, "latency_ms": 5.0}


def test_outcomes_of_a_shed_receipt_are_set_aside_and_their_group_is_written_at_once(store_url, monkeypatch):
    with Store.open(store_url) as store:
        writes: list[int] = []
        original = store.write_frames
        monkeypatch.setattr(
            store, "write_frames", lambda line, group, keys: writes.append(len(group)) or original(line, group, keys)
        )
        records: Handoff = Handoff("records", 100)
        for entry in (
            NewDecision(7, label="defect", decided_at=1.0, **VERDICT),  # frame 7's receipt found the queue full
            NewFrame(1, "f-1", "cam-1", 1.0, 10),
            NewDecision(1, label="ok", decided_at=1.1, **VERDICT),
            NewPicture(1, None),
            NewFrame(2, "f-2", "cam-1", 1.2, 10),
            NewRefusal(2, "late", "late: 2100 ms old"),
            NewPicture(7, "/pictures/f-7.png"),
        ):
            assert records.put(entry)
        records.close()
        errors: list[str] = []
        Recorder(store, LINE, records, errors.append).run()

        counts = store.counts(LINE)
        assert (counts["received"], counts["decided"], counts["refused"], counts["pending"]) == (2, 1, 1, 0)
        assert writes == [4]  # one transaction, no retries, no entry-by-entry writes
        assert errors == ["store"]  # the lost frame's outcomes are counted (and logged) once


def test_shutdown_ends_within_its_bound_while_the_store_stalls(tmp_path, monkeypatch):
    monkeypatch.setattr(line_module, "SHUTDOWN_JOIN_S", 2.0, raising=False)
    line = InProcessLine(tmp_path / "lines")
    stalled, release = threading.Event(), threading.Event()
    original = line.store.write_frames

    def stalling(*args, **kwargs):
        stalled.set()
        release.wait(120)  # a database that stopped answering
        return original(*args, **kwargs)

    line.store.write_frames = stalling
    try:
        line.send({"f0": frame(np.random.default_rng(0))})
        line.answers(1)
        assert stalled.wait(30), "the recorder never wrote"
        line.daemon.stopping.set()
        line._thread.join(30)
        assert not line._thread.is_alive(), "shutdown waited on the stalled store beyond its bound"
    finally:
        release.set()
        for thread in line.daemon._threads:  # let the released recorder finish before the store goes away
            thread.join(30)
