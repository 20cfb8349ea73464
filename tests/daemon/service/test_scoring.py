"""The scoring thread in a running in-process line: faults, seed judges while idle, pause and resume."""

from __future__ import annotations

import time

import numpy as np

from ..inprocess import InProcessLine, frame, good_parts


def test_a_scoring_fault_refuses_the_batch_with_the_error_and_the_line_goes_on(tmp_path):
    line = InProcessLine(tmp_path / "lines")
    scorer = line.daemon.scorer
    original = scorer.score_many
    failures = iter([RuntimeError("CUDA error: an illegal memory access was encountered")])

    def failing_once(images, frame_ids):
        error = next(failures, None)
        if error:
            raise error
        return original(images, frame_ids)

    scorer.score_many = failing_once
    rng = np.random.default_rng(0)
    line.send({"a": frame(rng)})
    first = line.answers(1)["a"]
    assert first["code"] == "internal_error" and "illegal memory access" in first["reason"]
    line.send({"b": frame(rng)})
    assert line.answers(2)["b"]["topic"].endswith("decision")
    assert "a" not in scorer.window  # a refused frame never votes
    counts = line.quiet()
    assert (counts["decided"], counts["refused"], counts["refused_by_code"]) == (1, 1, {"internal_error": 1})
    line.stop()


def test_seed_judges_calibrate_the_band_while_the_line_waits_not_on_the_answers_path(tmp_path):
    good = good_parts(tmp_path / "good", 12, seed=4)
    rng = np.random.default_rng(5)
    line = InProcessLine(tmp_path / "lines", **{"online.admission": "all"})  # every frame votes: W frames fill it
    assert line.call("reload_judges", folder=str(good))["result"] == {"added": 12}
    assert line.call("band")["result"]["band"]["source"] == "provisional"  # the seeds' mutual scores meanwhile
    line.send({f"f{i}": frame(rng) for i in range(8)})  # the window (8) is full after these
    line.answers(8)
    scorer = line.daemon.scorer
    deadline = time.monotonic() + 30
    while scorer.calibration.pending and time.monotonic() < deadline:  # no frame comes: the line is idle
        time.sleep(0.05)
    assert scorer.calibration.pending == []
    assert line.call("band")["result"]["band"]["source"] == "calibrated"
    assert len(scorer.calibration.known_good) == 12
    line.stop()


def test_pause_holds_scoring_and_resume_releases_it(tmp_path):
    line = InProcessLine(tmp_path / "lines", **{"pipeline.max_age_ms": 0})
    assert line.call("pause")["result"] == {"paused": True}
    rng = np.random.default_rng(1)
    line.send({f"p{i}": frame(rng) for i in range(3)})
    time.sleep(0.5)
    status = line.call("status")["result"]
    assert status["paused"] and status["queues"]["scoring"]["depth"] == 3
    assert line.collector.messages == []
    assert line.call("resume")["result"] == {"paused": False}
    answers = line.answers(3)
    assert all(answers[f"p{i}"]["topic"].endswith("decision") for i in range(3))
    kinds = [e.kind for e in line.store.events(3, 10)]
    assert "pause" in kinds and "resume" in kinds
    line.stop()
