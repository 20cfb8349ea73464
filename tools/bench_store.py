#!/usr/bin/env python3
"""The store after months of one line: the review station's queue and counts, a mark, and prune, timed.

Fills a fresh store with ``--frames`` frames of one line arriving at ``--rate`` frames/s (5 frames/s for a year
is about 158 M frames; the default 2 M is 4.6 days, a scaled-down run), with decisions of every label, refusals
and picture paths, bulk-loaded (COPY on PostgreSQL, executemany on SQLite) with the secondary indexes built
after the load. Then it times, each ``--repeats`` times (min / median / max in milliseconds):

- before (SQL): the statements of the release before retention (the counts' GROUP BY over the line's frames,
  the queue's newest-first read of unsure and defect decisions, a mark's lookups), with that release's indexes;
- after (SQL): ``Store.open`` adds the new indexes to that store; the statements today's ``counts``,
  ``review_queue`` and mark send, captured and replayed the same way (every row fetched, no Python objects);
- after (calls): ``counts``, ``review_queue``, ``lines``, a mark (``decision_for`` + ``add_correction`` on a new
  frame each time), and ``prune_batch`` (1,000 frames a transaction) over the oldest frames, with its rate.

The store's size per frame is reported (PostgreSQL) so the figures can be scaled to a year. Example (2 CPU
cores): ``nice -n 10 python tools/bench_store.py --store-url postgresql+psycopg://musc:musc@127.0.0.1/postgres``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench_common import cpu_name
from sqlalchemy import event, text

from daemon.review.queue import review_queue
from daemon.store import Store, scratch_database

LINE = 1
YEAR_S = 365 * 86400
# The secondary indexes of the frame tables: the release before retention had the first two.
OLD_INDEXES = {
    "ix_frames_line_frame_id": "frames (line, frame_id)",
    "ix_frames_line_received_at": "frames (line, received_at)",
}
NEW_INDEXES = ("ix_frames_frame_id", "ix_frames_pending", "ix_decisions_label_frame", "ix_corrections_line_frame_id")
# The queries of the release before retention, as that release sent them.
OLD_COUNTS = (
    "SELECT status, count(*) FROM frames WHERE line = :line GROUP BY status",
    "SELECT d.label, count(*) FROM decisions d JOIN frames f ON d.frame = f.id WHERE f.line = :line GROUP BY d.label",
    "SELECT refusal_code, count(*) FROM frames WHERE line = :line AND status = 'refused' GROUP BY refusal_code",
    "SELECT count(*) FROM corrections WHERE line = :line AND applied_at IS NULL AND undone_at IS NULL",
    "SELECT audit FROM corrections WHERE line = :line",
)
OLD_QUEUE = (
    "SELECT * FROM corrections WHERE line = :line ORDER BY created_at, id",
    "SELECT f.*, d.* FROM frames f JOIN decisions d ON d.frame = f.id WHERE f.line = :line "
    "AND d.label IN ('unsure', 'defect') ORDER BY f.received_at DESC, f.id DESC LIMIT 2000",
)
OLD_MARK = (
    "SELECT f.*, d.* FROM frames f JOIN decisions d ON d.frame = f.id WHERE f.line = :line AND f.frame_id = :frame "
    "ORDER BY f.received_at DESC, f.id DESC LIMIT 1",
    "SELECT line, status FROM frames WHERE frame_id = :frame",
)
FRAME_COLUMNS = "id, line, frame_id, camera, received_at, status, refusal_reason, size_bytes, refusal_code"
DECISION_COLUMNS = (
    "frame, label, score, raw_score, band_low, band_high, provisional, nearest_defect_label, nearest_defect_frame, "
    "decided_at, latency_ms, artifact_path"
)


def outcome_of(index: int, unsure: float, defect: float, refused: float) -> str:
    """A frame's outcome, spread evenly and deterministically over the history (Weyl sequence)."""
    draw = (index * 0.6180339887498949) % 1.0
    if draw < refused:
        return "refused"
    if draw < refused + defect:
        return "defect"
    return "unsure" if draw < refused + defect + unsure else "ok"


def rows(args: argparse.Namespace, start: float) -> Iterator[tuple[tuple, tuple | None]]:
    """(frame row, decision row or None) for every frame of the history, oldest first."""
    for index in range(1, args.frames + 1):
        at = start + index / args.rate
        frame_id = f"cam-1-{index:010d}"
        outcome = outcome_of(index, *rates(args))
        if outcome == "refused":
            yield (index, LINE, frame_id, "cam-1", at, "refused", "late: 2100 ms old", 90_000, "late"), None
            continue
        frame = (index, LINE, frame_id, "cam-1", at, "decided", None, 90_000, None)
        kept = outcome != "ok" or index % 50 == 0
        picture = f"{args.artifacts}/{outcome}/{frame_id}.png" if kept else None
        score = {"ok": 0.3, "unsure": 0.55, "defect": 0.9}[outcome] + (index % 97) / 1000
        nearest = ("scratch", f"cam-1-{max(1, index - 500):010d}") if outcome == "defect" else (None, None)
        yield frame, (index, outcome, score, score, 0.5, 0.7, False, *nearest, at + 0.05, 50.0, picture)


def fill(store: Store, args: argparse.Namespace, start: float) -> dict[str, int]:
    """Bulk-load the history and its running counts; the outcomes counted by kind."""
    tally: Counter[tuple[str, str]] = Counter()
    with store.engine.begin() as conn:
        for name in (*OLD_INDEXES, *NEW_INDEXES):
            conn.exec_driver_sql(f"DROP INDEX IF EXISTS {name}")
    raw = store.engine.raw_connection()
    try:
        cursor = raw.cursor()
        postgres = store.engine.dialect.name == "postgresql"
        if postgres:  # one COPY at a time on a connection: the frames, then their decisions
            cursor.execute("SET statement_timeout = 0")  # a bulk load is no statement of a running line
            with cursor.copy(f"COPY frames ({FRAME_COLUMNS}) FROM STDIN") as frames:
                for frame, decision in rows(args, start):
                    frames.write_row(frame)
                    tally["status", frame[5]] += 1
                    tally[("label", decision[1]) if decision else ("refusal", "late")] += 1
            with cursor.copy(f"COPY decisions ({DECISION_COLUMNS}) FROM STDIN") as decisions:
                for _, decision in rows(args, start):
                    if decision:
                        decisions.write_row(decision)
            cursor.execute("SELECT setval('frames_id_seq', %s)", (args.frames,))
        else:
            frame_batch: list[tuple] = []
            decision_batch: list[tuple] = []
            for frame, decision in rows(args, start):
                frame_batch.append(frame)
                tally["status", frame[5]] += 1
                tally[("label", decision[1]) if decision else ("refusal", "late")] += 1
                if decision:
                    decision_batch.append(decision)
            cursor.executemany(f"INSERT INTO frames ({FRAME_COLUMNS}) VALUES ({', '.join('?' * 9)})", frame_batch)
            cursor.executemany(
                f"INSERT INTO decisions ({DECISION_COLUMNS}) VALUES ({', '.join('?' * 12)})", decision_batch
            )
        marker = "%s" if postgres else "?"
        cursor.executemany(
            f"INSERT INTO tallies (line, kind, key, count) VALUES ({marker}, {marker}, {marker}, {marker})",
            [(LINE, kind, key, count) for (kind, key), count in tally.items()],
        )
        for name, columns in OLD_INDEXES.items():
            cursor.execute(f"CREATE INDEX {name} ON {columns}")
        cursor.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()
    return {f"{kind}:{key}": count for (kind, key), count in sorted(tally.items())}


def timed(repeats: int, operation: Callable[[int], object]) -> dict[str, float]:
    """Milliseconds per call of ``operation(run)``: min, median, max over ``repeats`` runs."""
    runs = []
    for run in range(repeats):
        started = time.perf_counter()
        operation(run)
        runs.append(1e3 * (time.perf_counter() - started))
    figures = {"min": min(runs), "median": statistics.median(runs), "max": max(runs)}
    return {**{key: round(value, 2) for key, value in figures.items()}, "runs": len(runs)}


def captured(store: Store, operation: Callable[[], object]) -> list[tuple[str, Any]]:
    """The SELECT statements (as sent, with their parameters) an operation of the store makes."""
    seen: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", capture)
    try:
        operation()
    finally:
        event.remove(store.engine, "before_cursor_execute", capture)
    return seen


def replay(store: Store, statements: list[tuple[str, Any]]) -> None:
    """Send statements as captured and fetch every row: the database's share of an operation, without Python's."""
    with store.engine.connect() as conn:
        for statement, parameters in statements:
            conn.exec_driver_sql(statement, parameters).all()


def old_queries(store: Store, statements: tuple[str, ...], **parameters: Any) -> None:
    """Run the release-before's statements as it did, in one read, fetching every row."""
    with store.engine.connect() as conn:
        for statement in statements:
            conn.execute(text(statement), {"line": LINE, **parameters}).all()


def bench(args: argparse.Namespace, url: str) -> dict[str, Any]:
    """Fill, time before, upgrade, time after; the figures."""
    start = time.time() - args.frames / args.rate - 60
    with Store.open(url) as store:
        began = time.perf_counter()
        outcomes = fill(store, args, start)
        filled_s = time.perf_counter() - began
        unsure = [i for i in range(1, args.frames + 1) if outcome_of(i, *rates(args)) == "unsure"]  # marked
        before_sql = {
            "counts": timed(args.repeats, lambda _: old_queries(store, OLD_COUNTS)),
            "queue": timed(args.repeats, lambda _: old_queries(store, OLD_QUEUE)),
            "mark_lookups": timed(
                args.repeats, lambda run: old_queries(store, OLD_MARK, frame=f"cam-1-{unsure[-1 - run]:010d}")
            ),
        }
    began = time.perf_counter()
    store = Store.open(url)
    upgrade_s = time.perf_counter() - began
    try:
        with store.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
        counts = store.counts(LINE)
        assert counts["received"] == counts["decided"] + counts["refused"] + counts["pending"] == args.frames

        def mark(run: int) -> None:
            frame_id = f"cam-1-{unsure[run]:010d}"
            decision = store.decision_for(LINE, frame_id)
            store.add_correction(LINE, frame_id, "ok", "bench", decision.label)

        marked = f"cam-1-{unsure[-1]:010d}"
        statements = {
            "counts": captured(store, lambda: store.counts(LINE)),
            "queue": captured(store, lambda: review_queue(store, LINE)),
            "mark_lookups": captured(store, lambda: store.decision_for(LINE, marked))
            + captured(store, lambda: store.add_correction(LINE, marked, "ok", "bench", "unsure")),
        }
        after_sql = {name: timed(args.repeats, lambda _, s=sent: replay(store, s)) for name, sent in statements.items()}
        after = {
            "counts": timed(args.repeats, lambda _: store.counts(LINE)),
            "queue": timed(args.repeats, lambda _: review_queue(store, LINE)),
            "lines": timed(args.repeats, lambda _: store.lines()),
            "mark": timed(args.repeats, mark),
        }
        prune_before = start + args.frames / args.rate * args.prune_fraction
        removed: list[int] = []
        after["prune_batch"] = timed(
            args.prune_batches, lambda _: removed.append(store.prune_batch(LINE, prune_before, 1000)[0].frames)
        )
        after["prune_batch"]["frames_per_s"] = round(
            sum(removed) / (after["prune_batch"]["median"] * len(removed) / 1e3)
        )
        sizes = table_sizes(store)
    finally:
        store.close()
    return {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "store_url"},
        "store": "postgresql" if url.startswith("postgresql") else "sqlite",
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count()},
        "history_days": round(args.frames / args.rate / 86400, 2),
        "year_scale": round(args.rate * YEAR_S / args.frames, 1),
        "outcomes": outcomes,
        "fill_s": round(filled_s, 1),
        "upgrade_open_s": round(upgrade_s, 2),
        "before_sql_ms": before_sql,
        "after_sql_ms": after_sql,
        "after_call_ms": after,
        "pruned_frames": sum(removed),
        "bytes_per_frame": sizes,
    }


def rates(args: argparse.Namespace) -> tuple[float, float, float]:
    """The outcome rates, in ``outcome_of``'s order."""
    return args.unsure_rate, args.defect_rate, args.refused_rate


def table_sizes(store: Store) -> dict[str, float] | None:
    """Bytes per frame on PostgreSQL: the frames and decisions tables with their indexes (None on SQLite)."""
    if store.engine.dialect.name != "postgresql":
        return None
    with store.engine.connect() as conn:
        frames = conn.exec_driver_sql("SELECT count(*) FROM frames").scalar() or 1
        total = {
            table: conn.exec_driver_sql(f"SELECT pg_total_relation_size('{table}')").scalar()
            for table in ("frames", "decisions")
        }
    return {table: round(size / frames, 1) for table, size in total.items()}


@contextmanager
def database(url: str, folder: Path) -> Iterator[str]:
    """A scratch database on the PostgreSQL server of an admin URL, or a SQLite file in ``folder``."""
    if url.startswith("postgresql"):
        with scratch_database(url, prefix="musc_bench") as scratch:
            yield scratch
    else:
        yield f"sqlite:///{folder / 'store.db'}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--store-url",
        default=os.environ.get("TEST_POSTGRES_URL", "sqlite"),
        help="admin URL of a PostgreSQL server (a scratch database is made and dropped), or 'sqlite'",
    )
    parser.add_argument("--frames", type=int, default=2_000_000, help="frames in the history")
    parser.add_argument("--rate", type=float, default=5.0, help="frames per second the line received")
    parser.add_argument("--unsure-rate", type=float, default=0.02)
    parser.add_argument("--defect-rate", type=float, default=0.005)
    parser.add_argument("--refused-rate", type=float, default=0.001)
    parser.add_argument("--repeats", type=int, default=7, help="runs of each timed operation")
    parser.add_argument("--prune-batches", type=int, default=30, help="prune batches timed (1,000 frames each)")
    parser.add_argument("--prune-fraction", type=float, default=0.5, help="the oldest part of the history to prune")
    parser.add_argument("--artifacts", type=Path, default=Path("/var/lib/musc-online/lines/line-1/artifacts"))
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_store_") as folder, database(args.store_url, Path(folder)) as url:
        figures = bench(args, url)
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
