"""The store's connection: an engine per URL (SQLite in WAL mode, or any SQLAlchemy database), short
transactions for readers and writers, and the schema brought up to date when it opens.

A stalled database is reported, never waited on for ever: connections are checked before use
(``pool_pre_ping``), PostgreSQL gets a connect timeout, TCP keep-alives and a statement timeout (a URL that sets
``connect_timeout`` or ``options=-c statement_timeout=...`` itself keeps its own), SQLite a busy timeout; any
of them running out raises ``StoreUnavailableError`` saying where.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    delete,
    event,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import sessionmaker

from daemon.store.records import SchemaVersionError, StoreUnavailableError
from daemon.store.schema import MIGRATIONS, SCHEMA_VERSION, Base, SchemaVersionRow

SQLITE_BUSY_TIMEOUT_MS = 5000
CONNECT_TIMEOUT_S = 10  # PostgreSQL: a server that does not accept a connection within this is unavailable
STATEMENT_TIMEOUT_S = 30  # PostgreSQL: no statement (lock waits included) runs longer; migrations are exempt
KEEPALIVE = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}
MIGRATION_LOCK = 0x6D757363  # "musc": the PostgreSQL advisory lock that serialises schema upgrades
_WRITE = "musc_store_write"  # execution option that marks the engine used for write transactions


def _prepare_sqlite(engine: Engine) -> None:
    """WAL, NORMAL sync, a busy timeout and foreign keys on every connection; writers take the lock up front."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself, in _on_begin
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            "synchronous=NORMAL",
            f"busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
            "foreign_keys=ON",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A deferred transaction that reads and then writes fails at once with SQLITE_BUSY in WAL mode when another
        # writer committed in between; BEGIN IMMEDIATE makes a writer wait its turn (busy_timeout) instead.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")


def _postgres_arguments(url: URL, statement_timeout_s: float) -> dict[str, Any]:
    """libpq parameters bounding every wait on the server, unless the URL chose its own."""
    chosen = dict(url.query)
    arguments: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT_S, **KEEPALIVE}
    options = str(chosen.get("options", ""))
    if "statement_timeout" not in options:
        arguments["options"] = f"{options} -c statement_timeout={int(statement_timeout_s * 1000)}".strip()
    return {key: value for key, value in arguments.items() if key not in chosen or key == "options"}


def _report_unavailable(engine: Engine) -> None:
    """A database error of the operational kind (server gone, timeout, lock wait) becomes StoreUnavailableError;
    a failed ping of a pooled connection is left to the pool, which replaces the connection."""
    where = engine.url.render_as_string(hide_password=True)

    @event.listens_for(engine, "handle_error")
    def _on_error(context: ExceptionContext) -> None:
        if isinstance(context.sqlalchemy_exception, OperationalError) and not context.is_pre_ping:
            error = context.original_exception
            reason = str(error).strip() or type(error).__name__
            raise StoreUnavailableError(f"the store at {where} did not answer: {reason}") from error


def _unbounded(conn: Connection) -> None:
    """Lift the statement timeout for this transaction (schema upgrades and index builds may take minutes)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SET LOCAL statement_timeout = 0"))


def _stored_version(conn: Connection) -> int:
    """The database's schema version; 0 for an empty database."""
    tables = set(inspect(conn).get_table_names())
    if SchemaVersionRow.__tablename__ not in tables:
        if tables & set(Base.metadata.tables):
            raise SchemaVersionError(f"the database has store tables ({', '.join(sorted(tables))}) but no version")
        return 0
    version = conn.scalar(select(SchemaVersionRow.version))
    if version is None:
        raise SchemaVersionError("the database's schema_version table is empty")
    return version


def _ensure_indexes(conn: Connection) -> None:
    """Create each index of the schema that the database lacks: ``create_all`` and the migrations make tables,
    and an index added to an existing table reaches older stores here, at their next open (idempotent)."""
    existing = {index["name"] for indexes in inspect(conn).get_multi_indexes().values() for index in indexes}
    for table in Base.metadata.sorted_tables:
        for index in table.indexes:
            if index.name not in existing:
                index.create(conn)


class Database:
    """Engines and sessions of a store; every query method built on it is one short transaction, thread-safe."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._writer = engine.execution_options(**{_WRITE: True})
        self._reads = sessionmaker(engine, expire_on_commit=False)
        self._writes = sessionmaker(self._writer, expire_on_commit=False)

    @classmethod
    def open(cls, url: str, statement_timeout_s: float = STATEMENT_TIMEOUT_S) -> Self:
        """Connect to `url` (a sqlite file's folder is created, WAL enabled) and bring its schema up to date."""
        parsed = make_url(url)
        backend = parsed.get_backend_name()
        if backend == "sqlite" and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        arguments = _postgres_arguments(parsed, statement_timeout_s) if backend == "postgresql" else {}
        engine = create_engine(parsed, pool_pre_ping=True, connect_args=arguments)
        if backend == "sqlite":
            _prepare_sqlite(engine)
        _report_unavailable(engine)
        store = cls(engine)
        try:
            store.migrate()
        except StoreUnavailableError as error:  # the server is down or refuses us: say where, without the password
            engine.dispose()
            where = parsed.render_as_string(hide_password=True)
            raise StoreUnavailableError(f"cannot reach the store at {where}: {error.__cause__}") from error
        except BaseException:
            engine.dispose()
            raise
        return store

    def close(self) -> None:
        """Close the pooled connections."""
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def migrate(self) -> int:
        """Create a fresh database at SCHEMA_VERSION or upgrade an older one a step per transaction; refuse newer."""
        while True:
            with self._writer.begin() as conn:
                _unbounded(conn)
                if conn.dialect.name == "postgresql":  # lines starting together on one database take turns
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
                version = _stored_version(conn)
                if version == SCHEMA_VERSION:
                    _ensure_indexes(conn)
                    return version
                if version > SCHEMA_VERSION:
                    raise SchemaVersionError(
                        f"the store at {self.engine.url!r} is at schema version {version}, but this musc-online "
                        f"knows versions up to {SCHEMA_VERSION}: upgrade musc-online, or restore a copy of the store"
                    )
                if version == 0:
                    Base.metadata.create_all(conn)
                    version = SCHEMA_VERSION
                else:
                    version += 1
                    MIGRATIONS[version](conn)
                conn.execute(delete(SchemaVersionRow))
                conn.execute(insert(SchemaVersionRow).values(version=version))

    # Frames and decisions -------------------------------------------------------------------------------------


@contextmanager
def scratch_database(admin_url: str, prefix: str = "musc_scratch") -> Iterator[str]:
    """A new, empty database on the server of ``admin_url`` (a role that may create databases), dropped with
    its connections afterwards; yields its URL. For tests and benchmarks that need a plant database of their own."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
