"""The four faults found on a long-running line, each reproduced against an in-process daemon."""

from __future__ import annotations

import signal
import time

import numpy as np

from daemon.review.queue import mark, undo
from daemon.store import Store
from musc_online.client import AnswerCollector, FrameSender
from musc_online.protocol import encode_frame

from ..conftest import LINE, DaemonProcess
from ..inprocess import TINY, InProcessLine, frame


def _decided(line: InProcessLine, count: int, seed: int = 0, prefix: str = "f") -> dict[str, dict]:
    rng = np.random.default_rng(seed)
    line.send({f"{prefix}{i}": frame(rng) for i in range(count)})
    answers = line.answers(count)
    line.quiet()
    return answers


def test_mark_ok_undo_mark_ok_survives_a_crash_and_a_restart(tmp_path):
    tiny = {key: value for key, value in TINY.items() if key != "MUSC_TRANSPORT__BASE_PORT"}
    daemon = DaemonProcess(tmp_path / "lines", extra_env={**tiny, "MUSC_STORE__URL": InProcessLine.store_url}).start()
    collector = AnswerCollector(daemon.settings, LINE)
    rng = np.random.default_rng(0)
    with FrameSender(daemon.settings, line=LINE) as sender:
        for i in range(12):
            sender.send(frame(rng), camera="cam-1", frame_id=f"f{i}", encoding="png")
    assert len(collector.wait_for_count(12, 180)) == 12
    collector.close()
    with Store.open(InProcessLine.store_url) as store:
        first = mark(store, daemon.settings, LINE, "f11", "ok", "ann")
        undo(store, daemon.settings, LINE, first["correction"], "ann")
        again = mark(store, daemon.settings, LINE, "f11", "ok", "ann")
        assert again["applied"] and not (again["audit"] or {}).get("error"), again
        assert daemon.call("status")["result"]["scorer"]["judges"] == 1
        daemon.stop(signal.SIGKILL)
        daemon.start()
        assert daemon.call("status")["result"]["scorer"]["judges"] == 1
        assert [j.judge_id for j in store.judges(LINE)] == ["f11"]
    assert daemon.stop() == 0


def test_corrections_made_while_the_line_is_down_act_at_the_next_start(tmp_path):
    line = InProcessLine(tmp_path / "lines")
    answers = _decided(line, 12)
    assert answers["f3"]["label"] != "ok"  # nothing is ok before the band is calibrated: every picture is kept
    line.stop()

    with InProcessLine.store_only(tmp_path / "lines") as (store, settings):
        first = mark(store, settings, LINE, "f3", "ok", "ann", timeout_ms=100)
        undo(store, settings, LINE, first["correction"], "ann", timeout_ms=100)
        mark(store, settings, LINE, "f3", "ok", "ann", timeout_ms=100)
        mark(store, settings, LINE, "f4", "defect", "ann", label="scratch", timeout_ms=100)

    restarted = InProcessLine(tmp_path / "lines")
    scorer = restarted.call("status")["result"]["scorer"]
    assert (scorer["judges"], scorer["known_defects"]) == (1, 1)
    audits = [c.audit for c in restarted.store.corrections(LINE)]
    assert not any("error" in (audit or {}) for audit in audits), audits
    restarted.stop()


def test_a_repeated_frame_id_in_one_micro_batch_refuses_only_the_repeat(tmp_path):
    line = InProcessLine(tmp_path / "lines", **{"pipeline.micro_batch": 4, "pipeline.max_age_ms": 0})
    scorer = line.daemon.scorer
    original = scorer.score_many
    calls = []

    def slow_first_batch(images, frame_ids):
        calls.append(list(frame_ids))
        if len(calls) == 1:
            time.sleep(1.0)  # the camera's next frames queue up behind this batch
        return original(images, frame_ids)

    scorer.score_many = slow_first_batch
    rng = np.random.default_rng(0)
    line.send({"a": frame(rng)})
    time.sleep(0.3)
    with_repeat = [("b", frame(rng)), ("b", frame(rng)), ("c", frame(rng))]
    line.send_parts(
        [encode_frame(image, line=LINE, camera="cam-1", frame_id=i, encoding="png") for i, image in with_repeat]
    )
    messages = line.collector.wait_for_count(4, 30)
    assert calls[1] == ["b", "c"], calls
    decided = sorted(m["frame_id"] for m in messages if m["topic"].endswith("decision"))
    refused = [(m["frame_id"], m["code"]) for m in messages if m["topic"].endswith("refusal")]
    assert decided == ["a", "b", "c"]
    assert refused == [("b", "duplicate_frame_id")]
    assert sorted(scorer.window.ids) == ["a", "b", "c"]
    line.stop()


def test_artifacts_stay_within_their_limit(tmp_path):
    line = InProcessLine(tmp_path / "lines", **{"artifacts.max_files": 5, "artifacts.keep_ok_every": 1})
    _decided(line, 20)
    deadline = time.monotonic() + 10
    files = []
    while time.monotonic() < deadline:
        files = list((tmp_path / "lines" / f"line-{LINE}" / "artifacts").rglob("*.png"))
        if len(files) <= 5:
            break
        time.sleep(0.1)
    assert 0 < len(files) <= 5
    line.stop()
