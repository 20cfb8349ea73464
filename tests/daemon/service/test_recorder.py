"""The recorder in a running in-process line: a failing store costs no answer and loses no accounting."""

from __future__ import annotations

import numpy as np
from sqlalchemy.exc import OperationalError

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
