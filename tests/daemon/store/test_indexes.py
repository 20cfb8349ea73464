"""The queries behind a page refresh, a mark and a prune batch read through indexes, bounded by a key or a LIMIT,
never a line's whole history: checked with EXPLAIN on SQLite and on PostgreSQL (with sequential scans priced out,
so a missing index shows as one). Older stores get new indexes at their next open."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, inspect, text

from daemon.review.queue import review_queue
from daemon.store import NewDecision, NewFrame, NewRefusal, Store

from ..conftest import LINE

HISTORY = ("frames", "decisions")  # the tables that grow by the frame
FEW = "ix_frames_pending"  # a partial index: only frames not yet answered, a handful whatever the history
POINT = re.compile(r"\b(frame_id|id|rowid|frame)\)?(::\w+)?\s?=")  # a condition that names one frame (or id)
VERDICT = {"score": 0.5, "raw_score": 0.4, "band_low": 0.3, "band_high": 0.6, "provisional": False, "latency_ms": 5.0}


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A store with a little history on two lines: decisions of every label, refusals, a correction."""
    with Store.open(store_url) as opened:
        now = time.time()
        for line in (LINE, LINE + 1):
            entries: list[Any] = []
            for seq in range(60):
                entries.append(NewFrame(seq, f"f-{seq}", f"cam-{seq % 2}", now - 60 + seq, 100))
                if seq % 10 == 9:
                    entries.append(NewRefusal(seq, "late", "late: 2100 ms old"))
                else:
                    label = ("ok", "ok", "unsure", "defect")[seq % 4]
                    entries.append(NewDecision(seq, label=label, decided_at=now, **VERDICT))
            opened.write_frames(line, entries, {})
        opened.add_correction(LINE, "f-2", "ok", "ann", "unsure")
        opened.report_line(LINE, "host", {"paused": False})
        yield opened


@contextmanager
def statements(store: Store) -> Iterator[list[tuple[str, Any]]]:
    """The SELECT, UPDATE and DELETE statements (with their parameters) the store sends meanwhile."""
    seen: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE")):
            seen.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", capture)
    try:
        yield seen
    finally:
        event.remove(store.engine, "before_cursor_execute", capture)


def plan(store: Store, statement: str, parameters: Any) -> list[tuple[str, str]]:
    """(table, how it is read) for every table access in the statement's plan. SQLite's SEARCH names only the
    index columns it seeks on; a PostgreSQL index scan whose condition skips the index's first column reads the
    whole index, and is reported as a SCAN."""
    with store.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SET enable_seqscan = off")  # tiny tables would be scanned anyway; price that out
            document = conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters).scalar()
            document = json.loads(document) if isinstance(document, str) else document
            return list(_postgres_accesses(document[0]["Plan"], _leading_columns(conn)))
        rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
        return [(detail.split()[1], detail) for *_, detail in rows if detail.startswith(("SCAN", "SEARCH"))]


def _leading_columns(conn: Any) -> dict[str, str]:
    """The first column of every index (primary keys included) of the history tables."""
    found = inspect(conn)
    leading = {
        found.get_pk_constraint(t)["name"]: found.get_pk_constraint(t)["constrained_columns"][0] for t in HISTORY
    }
    leading |= {index["name"]: index["column_names"][0] for t in HISTORY for index in found.get_indexes(t)}
    return leading


def _postgres_accesses(node: dict[str, Any], leading: dict[str, str]) -> Iterator[tuple[str, str]]:
    if "Relation Name" in node and node["Node Type"] != "ModifyTable":  # a DELETE's or UPDATE's rows come from below
        index_nodes = [node] if "Index Name" in node else [c for c in node.get("Plans", []) if "Index Name" in c]
        conditions = " ".join(str(n.get("Index Cond", "")) for n in index_nodes) + " " + str(node.get("Filter", ""))
        seeks = all(
            re.search(rf"\b{re.escape(leading.get(n['Index Name'], '(none)'))}\)?(::\w+)? =", conditions)
            for n in index_nodes
        )
        kind = node["Node Type"] if index_nodes and seeks else "SCAN"
        yield node["Relation Name"], f"{kind} {[n['Index Name'] for n in index_nodes]} {conditions}"
    for child in node.get("Plans", []):
        yield from _postgres_accesses(child, leading)


def unbounded(store: Store, operation: Callable[[], object]) -> list[str]:
    """How each of the operation's statements reads a history table without an index, or without a bound: a
    sequential scan, or an index range that is neither one frame's nor cut short by a LIMIT."""
    with statements(store) as seen:
        operation()
    assert seen, "the operation sent no query"
    problems = []
    for statement, parameters in seen:
        limited = " LIMIT " in statement.upper()
        for table, access in plan(store, statement, parameters):
            if table not in HISTORY:
                continue
            if access.startswith(("SCAN", "Seq Scan")) or not (limited or POINT.search(access) or FEW in access):
                problems.append(f"{table}: {access}\n    in {' '.join(statement.split())[:300]}")
    return problems


def test_page_refresh_and_mark_queries_use_indexes_and_windows(store: Store) -> None:
    operations: dict[str, Callable[[], object]] = {
        "counts": lambda: store.counts(LINE),
        "review queue": lambda: review_queue(store, LINE),
        "review queue since": lambda: review_queue(store, LINE, since=time.time() - 30),
        "lines": store.lines,
        "decision for a mark": lambda: store.decision_for(LINE, "f-6"),
        "mark": lambda: store.add_correction(LINE, "f-6", "defect", "ann", "unsure"),
        "prune batch": lambda: store.prune_batch(LINE, time.time() - 30, 5),
        "crash recovery": lambda: store.refuse_pending(LINE, "the daemon stopped"),
    }
    problems = {name: unbounded(store, operation) for name, operation in operations.items()}
    assert not any(problems.values()), "\n".join(f"{n}:\n  " + "\n  ".join(p) for n, p in problems.items() if p)


def test_an_older_store_gets_the_new_indexes_at_its_next_open(store: Store, store_url: str) -> None:
    added = [("frames", "ix_frames_frame_id"), ("frames", FEW), ("decisions", "ix_decisions_label_frame")]
    added.append(("corrections", "ix_corrections_line_frame_id"))
    with store.engine.begin() as conn:
        for _, index in added:
            conn.execute(text(f"DROP INDEX {index}"))
    assert unbounded(store, lambda: store.add_correction(LINE, "f-5", "ok", "ann", "ok"))  # a mark scans frames

    with Store.open(store_url) as reopened, reopened.engine.connect() as conn:
        found = inspect(conn)
        assert all(name in {i["name"] for i in found.get_indexes(table)} for table, name in added)
        assert not unbounded(reopened, lambda: reopened.add_correction(LINE, "f-6", "ok", "ann", "ok"))
