"""Retention: old frames, decisions and pictures leave the store in small batches; corrections, the frames they
name, pending frames, events and the counts stay. On SQLite and on PostgreSQL, through the store, the CLI and a
running line."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from daemon.cli.musc_online import app
from daemon.store import NewDecision, NewFrame, NewPicture, NewRefusal, Retention, Store
from daemon.store import retention as retention_module

from ..conftest import LINE
from ..inprocess import InProcessLine

DAY = 86400.0
NOW = 1_800_000_000.0
VERDICT = {"score": 0.5, "raw_score": 0.4, "band_low": 0.3, "band_high": 0.6, "provisional": False, "latency_ms": 5.0}


def picture(folder: Path, name: str) -> str:
    """A real PNG where the line keeps its pictures; its path as the store records it."""
    path = folder / "2027-01-01" / "unsure" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((4, 8, 3), np.uint8)).save(path)
    return str(path)


def history(store: Store, artifacts: Path, outside: Path, now: float = NOW) -> dict[str, float]:
    """A line's frames at various ages (days before ``now``): decided with pictures (one kept outside the line's
    artifact folder), refused, corrected, corrected then undone, still pending, and one fresh frame."""
    ages = {f"old-{i}": 40 - i for i in range(5)} | {"refused": 35, "corrected": 50, "undone": 45, "pending": 60}
    ages |= {"fresh": 0.5, "stray": 38}
    entries: list = []
    for seq, (frame_id, age) in enumerate(ages.items()):
        entries.append(NewFrame(seq, frame_id, "cam-1", now - age * DAY, 100))
        if frame_id == "refused":
            entries.append(NewRefusal(seq, "late", "late: 2100 ms old"))
        elif frame_id != "pending":
            entries.append(NewDecision(seq, label="unsure", decided_at=now - age * DAY, **VERDICT))
            place = outside if frame_id == "stray" else artifacts
            entries.append(NewPicture(seq, picture(place, frame_id)))
    store.write_frames(LINE, entries, {})
    store.add_correction(LINE, "corrected", "ok", "ann", "unsure")
    store.undo_correction(store.add_correction(LINE, "undone", "defect", "ann", "unsure"), "bob")
    store.log_event(LINE, "start", "an event from long ago")
    return ages


@pytest.fixture
def store(store_url: str):
    with Store.open(store_url) as opened:
        yield opened


def test_old_frames_leave_in_batches_and_corrections_pending_frames_events_and_counts_stay(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    artifacts, outside = tmp_path / "artifacts", tmp_path / "elsewhere"
    ages = history(store, artifacts, outside)
    counts = store.counts(LINE)
    retention = Retention(store, LINE, 30, artifacts)

    dry = retention.dry_run(NOW)  # old-0..4, refused, stray: 7 frames, 6 decisions, 6 pictures named
    assert (dry.frames, dry.decisions, dry.pictures) == (7, 6, 6)
    assert store.counts(LINE) == counts and (artifacts / "2027-01-01" / "unsure" / "old-0.png").is_file()

    batches = []
    original = store.prune_batch
    monkeypatch.setattr(retention_module, "BATCH", 3)

    def recording(line: int, before: float, batch: int):
        result = original(line, before, batch)
        batches.append(result[0])
        return result

    monkeypatch.setattr(store, "prune_batch", recording)
    pruned, finished = retention.prune(NOW)

    assert finished and (pruned.frames, pruned.decisions, pruned.pictures) == (7, 6, 5)  # the stray is not ours
    assert [b.frames for b in batches] == [3, 3, 1]  # one transaction per batch of at most BATCH frames
    assert (outside / "2027-01-01" / "unsure" / "stray.png").is_file()
    assert not list(artifacts.rglob("old-*.png"))
    kept = {frame_id for frame_id in ages if store.decision_for(LINE, frame_id)}
    assert kept == {"corrected", "undone", "fresh"}  # corrected frames keep their decision, whatever their age
    assert store.frame_outcomes(LINE, list(ages)) == {
        "corrected": "decided",
        "undone": "decided",
        "pending": "pending",
        "fresh": "decided",
    }
    assert store.counts(LINE) == counts  # since the store began: received = decided + refused + pending still
    assert counts["received"] == counts["decided"] + counts["refused"] + counts["pending"] == len(ages)
    assert len(store.corrections(LINE)) == 3 and {e.kind for e in store.events(LINE)} == {"start", "correction_undone"}
    assert retention.prune(NOW)[0].frames == 0 and retention.dry_run(NOW).frames == 0


def test_store_prune_cli_says_what_would_go_then_removes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "lines"
    monkeypatch.setenv("MUSC_PATHS__DATA_DIR", str(data))
    artifacts = data / f"line-{LINE}" / "artifacts"
    with Store.open(f"sqlite:///{data / f'line-{LINE}' / 'store.db'}") as store:
        now = time.time()
        history(store, artifacts, tmp_path / "elsewhere", now)
        store.write_frames(LINE, [NewFrame(0, "ancient", "cam-1", now - 400 * DAY, 1), NewRefusal(0, "late", "x")], {})
    runner = CliRunner()

    dry = runner.invoke(app, ["store", "prune", "--line", str(LINE), "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout) | {"seconds": 0} == json.loads(dry.stdout) | {
        "line": LINE,
        "keep_days": 90,
        "dry_run": True,
        "frames": 1,
        "decisions": 0,
        "pictures": 0,
        "seconds": 0,
    }
    shorter = runner.invoke(app, ["store", "prune", "--line", str(LINE), "--keep-days", "1", "--dry-run"])
    assert shorter.exit_code == 0 and "would remove 8 frames and 6 decisions" in shorter.stdout, shorter.output
    done = runner.invoke(app, ["store", "prune", "--line", str(LINE), "--keep-days", "1"])
    assert done.exit_code == 0 and "removed 8 frames and 6 decisions" in done.stdout and "deleted: 5" in done.stdout
    again = runner.invoke(app, ["store", "prune", "--line", str(LINE), "--keep-days", "1", "--dry-run"])
    assert "would remove 0 frames" in again.stdout

    monkeypatch.setenv("MUSC_STORE__KEEP_DAYS", "0")
    off = runner.invoke(app, ["store", "prune", "--line", str(LINE)])
    assert off.exit_code == 2 and "retention is off" in off.output


def test_a_running_line_prunes_its_old_frames_by_itself(store_url: str, tmp_path: Path) -> None:
    with Store.open(store_url) as store:
        old = time.time() - 5 * DAY
        store.write_frames(
            LINE, [e for i in range(5) for e in (NewFrame(i, f"old-{i}", "c", old, 1), NewRefusal(i, "late", "x"))], {}
        )
    InProcessLine.store_url = store_url
    try:
        line = InProcessLine(tmp_path / "lines", **{"store.keep_days": 2, "store.poll_s": 0.1})
    finally:
        InProcessLine.store_url = None
    deadline = time.monotonic() + 20
    while line.store.frame_outcomes(LINE, ["old-0"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert line.store.frame_outcomes(LINE, [f"old-{i}" for i in range(5)]) == {}
    assert line.store.counts(LINE)["refused"] == 5
    line.stop()
