"""The store on real SQLite files: WAL, the received = decided + refused invariant, corrections, migrations."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from daemon.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    ConflictError,
    NewDecision,
    NewFrame,
    NewPicture,
    NewRefusal,
    NotFoundError,
    SchemaVersionError,
    Store,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
LINE = 3

# The first schema (version 1), exactly as the first release created it: no frames.size_bytes, no corrections.audit.
V1_SCHEMA = """
CREATE TABLE frames (
    id {KEY}, line INTEGER NOT NULL, frame_id VARCHAR NOT NULL, camera VARCHAR NOT NULL,
    received_at DOUBLE PRECISION NOT NULL, status VARCHAR NOT NULL, refusal_reason VARCHAR,
    CONSTRAINT ck_status CHECK (status IN ('pending', 'decided', 'refused'))
);
CREATE INDEX ix_frames_line_frame_id ON frames (line, frame_id);
CREATE INDEX ix_frames_line_received_at ON frames (line, received_at);
CREATE TABLE decisions (
    frame INTEGER NOT NULL PRIMARY KEY REFERENCES frames (id), label VARCHAR NOT NULL,
    score DOUBLE PRECISION NOT NULL, raw_score DOUBLE PRECISION NOT NULL, band_low DOUBLE PRECISION,
    band_high DOUBLE PRECISION, provisional BOOLEAN NOT NULL,
    nearest_defect_label VARCHAR, nearest_defect_frame VARCHAR, decided_at DOUBLE PRECISION NOT NULL,
    latency_ms DOUBLE PRECISION NOT NULL, artifact_path VARCHAR,
    CONSTRAINT ck_label CHECK (label IN ('ok', 'unsure', 'defect'))
);
CREATE TABLE corrections (
    id {KEY}, line INTEGER NOT NULL, frame_id VARCHAR NOT NULL, verdict VARCHAR NOT NULL,
    defect_label VARCHAR, note VARCHAR, operator VARCHAR NOT NULL, created_at DOUBLE PRECISION NOT NULL,
    previous_label VARCHAR NOT NULL, applied_at DOUBLE PRECISION, undone_at DOUBLE PRECISION,
    undoes INTEGER REFERENCES corrections (id),
    CONSTRAINT ck_verdict CHECK (verdict IN ('ok', 'defect'))
);
CREATE UNIQUE INDEX ux_corrections_active ON corrections (line, frame_id) WHERE undone_at IS NULL AND undoes IS NULL;
CREATE TABLE judges (
    id {KEY}, line INTEGER NOT NULL, judge_id VARCHAR NOT NULL, source VARCHAR NOT NULL,
    added_at DOUBLE PRECISION NOT NULL, removed_at DOUBLE PRECISION,
    CONSTRAINT ck_source CHECK (source IN ('seed', 'correction', 'import'))
);
CREATE UNIQUE INDEX ux_judges_active ON judges (line, judge_id) WHERE removed_at IS NULL;
CREATE TABLE events (
    id {KEY}, line INTEGER NOT NULL, at DOUBLE PRECISION NOT NULL, kind VARCHAR NOT NULL,
    message VARCHAR NOT NULL, data TEXT
);
CREATE INDEX ix_events_line_at ON events (line, at);
CREATE TABLE schema_version (version INTEGER NOT NULL PRIMARY KEY);
INSERT INTO schema_version VALUES (1);
INSERT INTO frames VALUES (1, 3, 'f-0001', 'cam-a', 1000.0, 'decided', NULL);
INSERT INTO frames VALUES (2, 3, 'f-0002', 'cam-a', 1000.5, 'refused', 'bad_json: header is not JSON');
INSERT INTO frames VALUES (3, 3, 'f-0003', 'cam-a', 1000.7, 'refused', 'daemon stopped before deciding this frame');
INSERT INTO decisions VALUES (1, 'unsure', 0.61, 0.58, 0.4, 0.7, FALSE, NULL, NULL, 1000.2, 12.5, NULL);
INSERT INTO corrections VALUES (1, 3, 'f-0001', 'ok', NULL, 'glare, not a scratch', 'ann', 1001.0, 'unsure',
                                NULL, NULL, NULL);
"""


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "line-3" / "store.db"


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A fresh store on SQLite and on PostgreSQL (``store_url`` in tests/conftest.py)."""
    with Store.open(store_url) as opened:
        yield opened


def decide(store: Store, frame_id: str, label: str = "ok", line: int = LINE, camera: str = "cam-a") -> int:
    """Record a frame and its decision, as the daemon's store writer does."""
    key = store.record_frame(line, frame_id, camera, received_at=1000.0 + len(frame_id), size_bytes=1234)
    store.record_decision(
        key,
        label=label,
        score=0.5,
        raw_score=0.45,
        band_low=0.4,
        band_high=0.6,
        provisional=False,
        decided_at=1001.0,
        latency_ms=8.0,
    )
    return key


def schema(url: str) -> dict[str, object]:
    """Columns of every table and every index's name: what a fresh and an upgraded store must share."""
    engine = create_engine(url)
    try:
        found = inspect(engine)
        tables = found.get_table_names()
        columns = {table: sorted(column["name"] for column in found.get_columns(table)) for table in tables}
        indexes = {index["name"] for table in tables for index in found.get_indexes(table)}
    finally:
        engine.dispose()
    return {"columns": columns, "indexes": indexes}


def test_sqlite_opens_its_folder_in_wal_mode(db_path: Path) -> None:
    with Store.open(f"sqlite:///{db_path}") as store:
        assert db_path.is_file()
        with sqlite3.connect(db_path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL


def test_received_equals_decided_plus_refused(store: Store) -> None:
    for index, label in enumerate(["ok", "ok", "unsure", "defect"]):
        decide(store, f"f-{index}", label)
    store.record_refusal(store.record_frame(LINE, "f-bad", "cam-a", 1010.0, 9), "bad_payload", "truncated JPEG")
    store.record_refusal(store.record_frame(LINE, "", "", 1011.0, 3), "bad_json", "header is not JSON")
    store.record_frame(LINE, "f-lost", "cam-a", 1012.0, 100)  # received, then the daemon was killed
    decide(store, "f-other-line", line=LINE + 1)

    counts = store.counts(LINE)
    assert counts["pending"] == 1
    assert store.refuse_pending(LINE, "daemon stopped before deciding") == 1

    counts = store.counts(LINE)
    assert counts == {
        "received": 7,
        "decided": 4,
        "refused": 3,
        "pending": 0,
        "ok": 2,
        "unsure": 1,
        "defect": 1,
        "corrections_pending": 0,
        "corrections_failed": 0,
        "refused_by_code": {"bad_json": 1, "bad_payload": 1, "interrupted": 1},
    }
    assert counts["received"] == counts["decided"] + counts["refused"]


def test_a_resent_frame_id_is_recorded_again(store: Store) -> None:
    first = decide(store, "f-1", "defect")
    again = store.record_frame(LINE, "f-1", "cam-a", 2000.0, 1234)
    store.record_refusal(again, "duplicate_frame_id", "duplicate frame id")

    assert again != first
    assert store.counts(LINE)["received"] == 2
    decision = store.decision_for(LINE, "f-1")
    assert decision is not None and decision.key == first and decision.label == "defect"


def test_a_frame_is_settled_once(store: Store) -> None:
    key = decide(store, "f-1")
    with pytest.raises(ConflictError, match="already decided"):
        store.record_refusal(key, "late", "too old")
    with pytest.raises(NotFoundError):
        store.record_refusal(999, "late", "no such frame")


def test_a_group_of_entries_is_written_in_order_in_one_transaction(store: Store) -> None:
    verdict = {"score": 0.5, "raw_score": 0.4, "band_low": 0.3, "band_high": 0.6, "provisional": False}
    keys = store.write_frames(
        LINE,
        [
            NewFrame(1, "f-1", "cam-a", 10.0, 100),
            NewFrame(2, "f-2", "cam-a", 10.1, 100),
            NewDecision(1, label="ok", decided_at=10.2, latency_ms=5.0, **verdict),
            NewRefusal(2, "late", "late: 2100 ms old"),
            NewFrame(3, "f-3", "cam-a", 10.3, 100),
        ],
        {},
    )
    assert sorted(keys) == [1, 2, 3]
    later = store.write_frames(
        LINE,
        [NewDecision(3, label="defect", decided_at=10.4, latency_ms=5.0, **verdict), NewPicture(3, "/p.png")],
        keys,
    )
    assert later == {}
    counts = store.counts(LINE)
    assert (counts["received"], counts["decided"], counts["refused"], counts["pending"]) == (3, 2, 1, 0)
    assert counts["refused_by_code"] == {"late": 1}
    assert store.decision_for(LINE, "f-3").artifact_path == "/p.png"

    with pytest.raises(NotFoundError, match="never recorded"):  # all or nothing: f-4 is not kept either
        store.write_frames(LINE, [NewFrame(4, "f-4", "cam-a", 11.0, 1), NewRefusal(99, "late", "?")], keys)
    assert store.counts(LINE)["received"] == 3
    with pytest.raises(ConflictError, match="already decided"):
        store.write_frames(LINE, [NewRefusal(1, "late", "again")], keys)


def test_sync_judge_follows_the_bank_whatever_it_was(store: Store) -> None:
    store.sync_judge(LINE, "f-1", True, "correction")
    store.sync_judge(LINE, "f-1", True, "correction")  # already there: nothing changes
    assert [j.judge_id for j in store.judges(LINE)] == ["f-1"]
    store.sync_judge(LINE, "f-1", False, "correction")
    store.sync_judge(LINE, "f-1", False, "correction")
    assert store.judges(LINE) == []
    store.sync_judge(LINE, "f-1", True, "correction")
    assert len(store.judges(LINE, include_removed=True)) == 2


def test_recent_decisions_newest_first_with_filters(store: Store) -> None:
    decide(store, "a", "ok")
    decide(store, "bb", "unsure", camera="cam-b")
    decide(store, "ccc", "defect")

    assert [d.frame_id for d in store.recent_decisions(LINE)] == ["ccc", "bb", "a"]
    assert [d.frame_id for d in store.recent_decisions(LINE, labels=["unsure", "defect"])] == ["ccc", "bb"]
    assert [d.frame_id for d in store.recent_decisions(LINE, camera="cam-b")] == ["bb"]
    assert [d.frame_id for d in store.recent_decisions(LINE, since=1002.5)] == ["ccc"]
    assert [d.frame_id for d in store.recent_decisions(LINE, limit=1)] == ["ccc"]
    assert store.decision_for(LINE, "missing") is None


def test_corrections_refuse_unknown_refused_and_foreign_frames(store: Store) -> None:
    decide(store, "f-1", line=LINE + 1)
    store.record_refusal(store.record_frame(LINE, "f-2", "cam-a", 1.0, 0), "too_large", "oversize")

    with pytest.raises(NotFoundError, match="no decided frame 'nope' on line 3"):
        store.add_correction(LINE, "nope", "ok", "ann", "unsure")
    with pytest.raises(NotFoundError, match="seen on line 4"):
        store.add_correction(LINE, "f-1", "ok", "ann", "unsure")
    with pytest.raises(NotFoundError, match="refused"):
        store.add_correction(LINE, "f-2", "ok", "ann", "unsure")
    with pytest.raises(ValueError, match="verdict must be one of ok, defect"):
        store.add_correction(LINE + 1, "f-1", "maybe", "ann", "unsure")
    assert store.corrections(LINE) == []


def test_one_active_correction_per_frame_and_undo_once(store: Store) -> None:
    decide(store, "f-1", "unsure")
    first = store.add_correction(LINE, "f-1", "defect", "ann", "unsure", defect_label="scratch", note="left rim")
    with pytest.raises(ConflictError, match="already corrected to 'defect' by ann"):
        store.add_correction(LINE, "f-1", "ok", "bob", "unsure")

    undo = store.undo_correction(first, "bob")
    with pytest.raises(ConflictError, match="already undone"):
        store.undo_correction(first, "bob")
    with pytest.raises(ConflictError, match="itself an undo"):
        store.undo_correction(undo, "bob")
    with pytest.raises(NotFoundError):
        store.undo_correction(999, "bob")
    second = store.add_correction(LINE, "f-1", "ok", "bob", "unsure")

    recorded = {c.id: c for c in store.corrections(LINE)}
    assert recorded[first].undone_at is not None and recorded[first].note == "left rim"
    assert recorded[undo].undoes == first and recorded[undo].operator == "bob"
    assert recorded[second].undone_at is None
    assert [c.id for c in store.pending_corrections(LINE)] == [undo, second]
    (event,) = store.events(LINE)
    assert event.kind == "correction_undone" and event.data == {"correction": first, "undo": undo}


def test_mark_applied_once_with_its_audit(store: Store) -> None:
    decide(store, "f-1", "unsure")
    correction = store.add_correction(LINE, "f-1", "ok", "ann", "unsure")
    assert store.counts(LINE)["corrections_pending"] == 1

    store.mark_applied(correction, {"judge_added": "f-1", "threshold": [0.61, 0.63]})
    with pytest.raises(ConflictError, match="already applied"):
        store.mark_applied(correction, {})

    assert store.pending_corrections(LINE) == []
    (applied,) = store.corrections(LINE)
    assert applied.applied_at is not None
    assert applied.audit == {"judge_added": "f-1", "threshold": [0.61, 0.63]}


def test_concurrent_marks_of_one_frame_let_exactly_one_through(store: Store) -> None:
    rounds = 20
    for index in range(rounds):
        decide(store, f"f-{index}", "unsure")

    def mark(frame_id: str, operator: str, barrier: threading.Barrier, outcomes: list[object]) -> None:
        barrier.wait()
        try:
            outcomes.append(store.add_correction(LINE, frame_id, "ok", operator, "unsure"))
        except ConflictError as error:
            outcomes.append(error)

    for index in range(rounds):
        barrier, outcomes = threading.Barrier(2), []
        threads = [
            threading.Thread(target=mark, args=(f"f-{index}", operator, barrier, outcomes))
            for operator in ("ann", "bob")
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(type(outcome).__name__ for outcome in outcomes) == ["ConflictError", "int"]
    assert len(store.corrections(LINE)) == rounds


def test_judges_join_and_leave_the_bank(store: Store) -> None:
    store.add_judge(LINE, "seed-001", "seed")
    store.add_judge(LINE, "f-17", "correction")
    with pytest.raises(ConflictError):
        store.add_judge(LINE, "seed-001", "import")
    store.remove_judge(LINE, "seed-001")
    with pytest.raises(NotFoundError):
        store.remove_judge(LINE, "seed-001")
    store.add_judge(LINE, "seed-001", "import")

    assert [(j.judge_id, j.source) for j in store.judges(LINE)] == [("f-17", "correction"), ("seed-001", "import")]
    assert len(store.judges(LINE, include_removed=True)) == 3
    assert store.judges(LINE + 1) == []


def test_events_newest_first(store: Store) -> None:
    store.log_event(LINE, "start", "daemon started")
    store.log_event(LINE, "recovered", "restored 40 judges", {"judges": 40})
    assert [(e.kind, e.data) for e in store.events(LINE)] == [("recovered", {"judges": 40}), ("start", None)]
    assert len(store.events(LINE, limit=1)) == 1


def test_a_version_1_store_is_upgraded_with_its_corrections(store_url: str, tmp_path: Path) -> None:
    assert set(MIGRATIONS) == set(range(2, SCHEMA_VERSION + 1))
    postgres = store_url.startswith("postgresql")
    Path(tmp_path / "line-3").mkdir(exist_ok=True)
    engine = create_engine(store_url)
    with engine.begin() as conn:
        for statement in V1_SCHEMA.format(
            KEY="SERIAL PRIMARY KEY" if postgres else "INTEGER NOT NULL PRIMARY KEY"
        ).split(";"):
            if statement.strip():
                conn.execute(text(statement))
    engine.dispose()

    with Store.open(store_url) as store:
        (correction,) = store.pending_corrections(LINE)
        assert (correction.frame_id, correction.verdict, correction.operator) == ("f-0001", "ok", "ann")
        assert (correction.note, correction.previous_label) == ("glare, not a scratch", "unsure")
        assert correction.audit is None
        decision = store.decision_for(LINE, "f-0001")
        assert decision is not None and decision.size_bytes == 0
        counts = store.counts(LINE)  # the running counts are filled from the frames the store already held
        assert counts["refused_by_code"] == {"bad_json": 1, "interrupted": 1}
        assert (counts["received"], counts["decided"], counts["refused"], counts["unsure"]) == (3, 1, 2, 1)
        store.mark_applied(correction.id, {"judge_added": "f-0001"})
        assert store.corrections(LINE)[0].audit == {"judge_added": "f-0001"}
        upgraded = schema(store_url)

    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    Store.open(fresh).close()
    if postgres:  # SQLite names its automatic indexes differently: compare the columns, and our own indexes
        assert upgraded["columns"] == schema(fresh)["columns"]
        assert {"ix_frames_line_frame_id", "ux_corrections_active", "ux_judges_active"} <= upgraded["indexes"]
    else:
        assert upgraded == schema(fresh)


def test_a_store_from_a_newer_release_is_refused(store: Store, store_url: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE schema_version SET version = :version"), {"version": SCHEMA_VERSION + 1})
    store.close()
    with pytest.raises(SchemaVersionError, match=f"schema version {SCHEMA_VERSION + 1}.*up to {SCHEMA_VERSION}"):
        Store.open(store_url)


def test_another_process_sees_committed_rows(store: Store, store_url: str) -> None:
    decide(store, "f-1", "defect")
    store.add_correction(LINE, "f-1", "ok", "ann", "defect")

    reader = (
        "import sys; from daemon.store import Store; "
        "store = Store.open(sys.argv[1]); print(store.counts(3)['decided'], len(store.pending_corrections(3)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", reader, store_url],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert result.stdout.split() == ["1", "1"]
