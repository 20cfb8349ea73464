"""The review queue and corrections: order, records, refusals, the CLI, and a live correction on a real daemon."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from daemon.cli.musc_online import app
from daemon.review.queue import band_distance, mark, parse_since, review_queue, undo
from daemon.store import ConflictError, NotFoundError, Store
from musc_online.client import AnswerCollector, FrameSender
from musc_online.synthetic import synthetic_product
from musc_online.transport import TransportSettings

from ..conftest import LINE, DaemonProcess, free_port_block

runner = CliRunner()
BAND = (0.4, 0.6)
QUICK_MS = 200  # no daemon listens in these tests: don't wait long for one


def decide(
    store: Store,
    frame_id: str,
    label: str,
    score: float,
    line: int = LINE,
    camera: str = "cam-1",
    at: float | None = None,
    band: tuple[float, float] | None = BAND,
    artifact: str | None = None,
) -> None:
    """Record a received and decided frame through the Store API."""
    at = time.time() if at is None else at
    key = store.record_frame(line, frame_id, camera, at, 1000)
    low, high = band or (None, None)
    store.record_decision(
        key,
        label=label,
        score=score,
        raw_score=score,
        band_low=low,
        band_high=high,
        provisional=band is None,
        decided_at=at,
        latency_ms=5.0,
        nearest_defect_label="scratch" if label == "defect" else None,
        artifact_path=artifact,
    )


@pytest.fixture
def line_env(tmp_path, monkeypatch) -> dict[str, str]:
    """The line's config through MUSC_* variables: a temporary data folder and a port block nobody listens on."""
    env = {"MUSC_PATHS__DATA_DIR": str(tmp_path / "lines"), "MUSC_TRANSPORT__BASE_PORT": str(free_port_block(LINE))}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def store(line_env):
    with Store.open(f"sqlite:///{line_env['MUSC_PATHS__DATA_DIR']}/line-{LINE}/store.db") as opened:
        yield opened


@pytest.fixture
def settings(line_env) -> TransportSettings:
    return TransportSettings.for_line(LINE, int(line_env["MUSC_TRANSPORT__BASE_PORT"]))


@pytest.fixture
def filled(store) -> Store:
    """Two unsure frames, two defects (one borderline), an ok frame and a frame of another line."""
    now = time.time()
    decide(store, "far-defect", "defect", 1.0, at=now - 50)
    decide(store, "near-defect", "defect", 0.65, at=now - 40)
    decide(store, "unsure-old", "unsure", 0.5, at=now - 30)
    decide(store, "unsure-new", "unsure", 0.45, at=now - 20, camera="cam-2")
    decide(store, "fine", "ok", 0.1, at=now - 10)
    decide(store, "elsewhere", "defect", 0.9, line=LINE + 1)
    return store


def ids(items) -> list[str]:
    return [item.frame_id for item in items]


def test_queue_puts_frames_nearest_the_band_first_then_defects_by_score(filled):
    queue = review_queue(filled, LINE)
    assert ids(queue) == ["unsure-new", "unsure-old", "near-defect", "far-defect"]
    assert queue[2].distance == pytest.approx(0.25)
    assert queue[2].band == BAND and queue[2].nearest_defect == "scratch"
    assert ids(review_queue(filled, LINE, labels=("defect",))) == ["near-defect", "far-defect"]
    assert ids(review_queue(filled, LINE, camera="cam-2")) == ["unsure-new"]
    assert ids(review_queue(filled, LINE, since=time.time() - 35)) == ["unsure-new", "unsure-old"]
    assert ids(review_queue(filled, LINE, limit=1)) == ["unsure-new"]


def test_corrected_frames_leave_the_queue_and_an_undo_brings_them_back(filled, settings):
    result = mark(filled, settings, LINE, "near-defect", "ok", "ana", timeout_ms=QUICK_MS)
    assert "near-defect" not in ids(review_queue(filled, LINE))
    undo(filled, settings, LINE, result["correction"], "ana", timeout_ms=QUICK_MS)
    assert "near-defect" in ids(review_queue(filled, LINE))


def test_band_distance_is_relative_to_the_band_width():
    assert band_distance(0.5, 0.4, 0.6) == 0
    assert band_distance(0.8, 0.4, 0.6) == pytest.approx(1.0)
    assert band_distance(0.3, 0.4, 0.6) == pytest.approx(0.5)
    assert band_distance(0.3, None, None) == 0


def test_mark_stores_the_correction_first_and_says_it_is_pending_without_a_daemon(filled, settings):
    result = mark(filled, settings, LINE, "far-defect", "defect", "ana", label="dent", note="big", timeout_ms=QUICK_MS)
    assert result["applied"] is False and "from the store within seconds" in result["message"]
    [stored] = filled.corrections(LINE)
    assert (stored.id, stored.frame_id, stored.verdict, stored.defect_label) == (
        result["correction"],
        "far-defect",
        "defect",
        "dent",
    )
    assert (stored.previous_label, stored.note, stored.operator, stored.applied_at) == ("defect", "big", "ana", None)
    assert filled.counts(LINE)["corrections_pending"] == 1


@pytest.mark.parametrize(
    ("frame_id", "verdict", "error"),
    [
        ("no-such-frame", "ok", NotFoundError),
        ("elsewhere", "ok", NotFoundError),  # a frame of line 4 in the same store
        ("unsure-old", "maybe", ValueError),
    ],
)
def test_bad_marks_are_refused_and_change_nothing(filled, settings, frame_id, verdict, error):
    with pytest.raises(error):
        mark(filled, settings, LINE, frame_id, verdict, "ana", timeout_ms=QUICK_MS)
    assert filled.corrections(LINE) == [] and filled.corrections(LINE + 1) == []


def test_a_second_mark_of_a_frame_and_unknown_undos_are_refused(filled, settings):
    first = mark(filled, settings, LINE, "unsure-old", "ok", "ana", timeout_ms=QUICK_MS)
    with pytest.raises(ConflictError, match="undo that correction first"):
        mark(filled, settings, LINE, "unsure-old", "defect", "ben", timeout_ms=QUICK_MS)
    with pytest.raises(NotFoundError):
        undo(filled, settings, LINE, 999, "ana", timeout_ms=QUICK_MS)
    with pytest.raises(NotFoundError):  # the correction exists, but on this line only
        undo(filled, settings, LINE + 1, first["correction"], "ana", timeout_ms=QUICK_MS)
    assert [c.id for c in filled.corrections(LINE)] == [first["correction"]]


def test_two_operators_marking_one_frame_at_once_one_wins(filled, settings):
    barrier, outcomes = threading.Barrier(2), []

    def operator(name: str) -> None:
        barrier.wait()
        try:
            outcomes.append(mark(filled, settings, LINE, "unsure-new", "ok", name, timeout_ms=QUICK_MS))
        except ConflictError as error:
            outcomes.append(error)

    threads = [threading.Thread(target=operator, args=(name,)) for name in ("ana", "ben")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(type(o).__name__ for o in outcomes) == ["ConflictError", "dict"]
    assert len(filled.corrections(LINE)) == 1


def test_since_takes_iso_times_and_relative_ones():
    assert parse_since("-10m", now=1000.0) == 400.0
    assert parse_since("-2h", now=10_000.0) == 2800.0
    assert parse_since("2026-01-02T03:04:05+00:00") == 1767323045.0
    with pytest.raises(ValueError, match="relative"):
        parse_since("yesterday")


def test_cli_lists_marks_and_undoes(filled):
    listed = runner.invoke(app, ["review", "list", "--line", str(LINE), "--json"])
    assert listed.exit_code == 0, listed.output
    assert [item["frame_id"] for item in json.loads(listed.stdout)][:2] == ["unsure-new", "unsure-old"]
    table = runner.invoke(app, ["review", "list", "--line", str(LINE), "--label", "defect", "--since", "-1h"])
    assert table.exit_code == 0 and "near-defect" in table.stdout and "unsure-new" not in table.stdout

    marked = runner.invoke(
        app, ["review", "mark", "far-defect", "ok", "--line", str(LINE), "--note", "glare", "--operator", "ana"]
    )
    assert marked.exit_code == 0, marked.output
    assert "marked ok (was defect)" in marked.stdout and "a stopped one at its start" in marked.stdout
    [correction] = filled.corrections(LINE)
    assert (correction.operator, correction.note) == ("ana", "glare")

    undone = runner.invoke(app, ["review", "undo", str(correction.id), "--line", str(LINE), "--operator", "ana"])
    assert undone.exit_code == 0, undone.output
    assert filled.corrections(LINE)[0].undone_at is not None


@pytest.mark.parametrize(
    "args",
    [
        ["mark", "no-such-frame", "ok"],
        ["mark", "elsewhere", "ok"],
        ["mark", "unsure-old", "perhaps"],
        ["mark", "unsure-old", "ok", "--label", "dent"],  # a label names a defect
        ["undo", "42"],
        ["list", "--since", "last week"],
        ["list", "--label", "bad"],
    ],
)
def test_cli_refuses_bad_input_with_exit_2_and_changes_nothing(filled, args):
    result = runner.invoke(app, ["review", *args, "--line", str(LINE), "--operator", "ana"])
    assert result.exit_code == 2, result.output
    assert filled.corrections(LINE) == []


def test_cli_refuses_review_options_before_a_subcommand(filled):
    result = runner.invoke(app, ["review", "--line", str(LINE + 1), "list"])  # would list line 3 otherwise
    assert result.exit_code == 2 and "after the subcommand" in result.output


def test_cli_refuses_a_second_mark_of_a_frame(filled):
    command = ["review", "mark", "unsure-old", "ok", "--line", str(LINE), "--operator", "ana"]
    assert runner.invoke(app, command).exit_code == 0
    again = runner.invoke(app, command)
    assert again.exit_code == 2 and "already corrected" in again.output
    assert len(filled.corrections(LINE)) == 1


def test_interactive_queue_marks_the_first_item_ok_and_quits(filled):
    result = runner.invoke(app, ["review", "--line", str(LINE), "--operator", "ana"], input="\x1b[C\np\no\nq\n")
    assert result.exit_code == 0, result.output
    assert "[1/4] frame unsure-new" in result.stdout and "[2/4] frame unsure-old" in result.stdout
    assert "threshold: unknown (the daemon is not running)" in result.stdout
    assert "unsure-new marked ok (was unsure)" in result.stdout
    assert "[1/3] frame unsure-old" in result.stdout  # the marked frame left the queue
    [correction] = filled.corrections(LINE)
    assert (correction.frame_id, correction.verdict, correction.operator) == ("unsure-new", "ok", "ana")


def test_interactive_queue_marks_a_defect_with_a_label_and_undoes_it(filled):
    result = runner.invoke(app, ["review", "--line", str(LINE), "--operator", "ana"], input="d\ndent\nu\n")
    assert result.exit_code == 0, result.output  # the end of input ends the session like q
    first, undo_record = filled.corrections(LINE)
    assert (first.verdict, first.defect_label, first.undone_at is not None) == ("defect", "dent", True)
    assert undo_record.undoes == first.id


@pytest.mark.slow
def test_a_mark_through_the_cli_reaches_the_running_daemon_at_once(tmp_path, monkeypatch):
    daemon = DaemonProcess(tmp_path / "lines").start()
    try:
        collector = AnswerCollector(daemon.settings, LINE)
        rng = np.random.default_rng(1)
        with FrameSender(daemon.settings, line=LINE) as sender:
            for i in range(30):
                image = synthetic_product(rng, 128, defective=i % 5 == 4)
                sender.send(image, camera="cam-1", frame_id=f"f{i:03d}", encoding="png")
        assert len(collector.wait_for_count(30, 180)) == 30, daemon.log.read_text()[-3000:]
        collector.close()
        judges_before = daemon.call("status")["result"]["scorer"]["judges"]
        with Store.open(f"sqlite:///{tmp_path}/lines/line-{LINE}/store.db") as store:
            flagged = review_queue(store, LINE)
            assert flagged, "no frame was flagged unsure or defect"
            for key in ("MUSC_PATHS__DATA_DIR", "MUSC_TRANSPORT__BASE_PORT"):
                monkeypatch.setenv(key, daemon.env[key])
            result = runner.invoke(
                app, ["review", "mark", flagged[0].frame_id, "ok", "--line", str(LINE), "--operator", "ana"]
            )
            assert result.exit_code == 0, result.output
            assert "applied live" in result.stdout
            [correction] = store.corrections(LINE)
            assert correction.applied_at is not None and correction.audit["changes"]["judge_added"]
        assert daemon.call("status")["result"]["scorer"]["judges"] == judges_before + 1
        assert daemon.call("shutdown")["ok"]
        assert daemon.process.wait(timeout=60) == 0
    finally:
        if daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait()


def test_a_correction_that_could_not_act_is_shown_with_its_reason_and_operator(filled):
    correction = filled.add_correction(LINE, "unsure-old", "ok", "ana", "unsure")
    filled.mark_applied(correction, {"error": "no picture of frame 'unsure-old' was kept"})
    listed = runner.invoke(app, ["review", "list", "--line", str(LINE)])
    assert listed.exit_code == 0, listed.output
    assert f"correction {correction} by ana" in listed.stdout and "no picture of frame" in listed.stdout
