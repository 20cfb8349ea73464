"""A stalled or vanished database is reported, never waited on for ever: statement and busy timeouts, a connect
timeout, and pooled connections checked before use. Real SQLite files and the real PostgreSQL server."""

from __future__ import annotations

import socket
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from daemon.store import Store, StoreUnavailableError
from daemon.store import database as database_module

from ..conftest import LINE

BOUND_S = 60  # generous: each call below must end by itself well before this (its timeouts are 1 to 5 s)


def outcome(call: Callable[[], Any]) -> BaseException | Any:
    """What ``call`` returned or raised, run on a thread; fails the test if it is still waiting after BOUND_S."""
    result: list[Any] = []

    def run() -> None:
        try:
            result.append(call())
        except BaseException as error:  # handed back to the test
            result.append(error)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(BOUND_S)
    assert not worker.is_alive(), f"still waiting after {BOUND_S} s: the store waits on a stalled database for ever"
    return result[0]


def test_a_statement_held_up_by_a_lock_fails_with_store_unavailable(store_url: str) -> None:
    with Store.open(store_url, statement_timeout_s=1) as store:
        store.record_frame(LINE, "f-1", "cam-1", 1.0, 1)
        if store_url.startswith("sqlite"):  # another process's writer holds the database: the busy timeout (5 s)
            holder = sqlite3.connect(make_url(store_url).database, isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")
            release = holder.close
        else:  # another session holds the table: the statement timeout (1 s here)
            engine = create_engine(store_url)
            holder = engine.connect()
            holder.execute(text("LOCK TABLE frames IN ACCESS EXCLUSIVE MODE"))
            release = lambda: (holder.close(), engine.dispose())  # noqa: E731
        try:
            error = outcome(lambda: store.record_frame(LINE, "f-2", "cam-1", 2.0, 1))
        finally:
            release()
        assert isinstance(error, StoreUnavailableError), error
        assert "did not answer" in str(error) and ("statement timeout" in str(error) or "locked" in str(error))
        assert "musc:musc@" not in str(error)  # the password is not shown
        store.record_frame(LINE, "f-3", "cam-1", 3.0, 1)  # and the store works again once the lock is gone
        assert store.counts(LINE)["received"] == 2


def test_a_server_that_accepts_but_never_answers_fails_within_the_connect_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(database_module, "CONNECT_TIMEOUT_S", 2, raising=False)
    with socket.socket() as silent:  # listens (the kernel completes the handshake) and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        error = outcome(lambda: Store.open(f"postgresql+psycopg://musc:secret@127.0.0.1:{port}/musc"))
    assert isinstance(error, StoreUnavailableError), error
    assert f"cannot reach the store at postgresql+psycopg://musc:***@127.0.0.1:{port}/musc" in str(error)
    assert "timeout" in str(error)


def test_a_url_keeps_its_own_timeouts() -> None:
    chosen = make_url("postgresql+psycopg://u@h/db?connect_timeout=3&options=-c%20statement_timeout%3D500")
    arguments = database_module._postgres_arguments(chosen, statement_timeout_s=30)
    assert "connect_timeout" not in arguments and "options" not in arguments  # the URL's own go to the driver
    arguments = database_module._postgres_arguments(make_url("postgresql+psycopg://u@h/db"), statement_timeout_s=2)
    assert arguments["connect_timeout"] == database_module.CONNECT_TIMEOUT_S
    assert arguments["options"] == "-c statement_timeout=2000" and arguments["keepalives"] == 1


def test_a_pooled_connection_the_server_dropped_is_replaced_not_reported(store_url: str) -> None:
    if not store_url.startswith("postgresql"):
        pytest.skip("SQLite has no server to drop a connection")
    with Store.open(store_url) as store:
        assert store.counts(LINE)["received"] == 0  # a connection now waits in the pool
        engine = create_engine(store_url)
        with engine.connect() as admin:  # the server ends every other session of this database (a restart, a proxy)
            ended = admin.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar()
        engine.dispose()
        assert ended >= 1
        store.record_frame(LINE, "f-1", "cam-1", 1.0, 1)
        assert store.counts(LINE)["received"] == 1
