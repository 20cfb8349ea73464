"""The line's records: frames, decisions, corrections, judges and events, in any SQLAlchemy database.

The only module that imports SQLAlchemy. SQLite in WAL mode under the line's data folder is the default; a
plant may point every line at one PostgreSQL URL instead (every row carries its line). The schema is versioned
and upgraded forward in place, because corrections are plant data that must outlive releases.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypedDict, TypeVar

from sqlalchemy import (
    CheckConstraint,
    Connection,
    Engine,
    ForeignKey,
    Index,
    Select,
    Text,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.types import TypeDecorator

SCHEMA_VERSION = 3
LABELS = ("ok", "unsure", "defect")
VERDICTS = ("ok", "defect")
JUDGE_SOURCES = ("seed", "correction", "import")
FRAME_STATUSES = ("pending", "decided", "refused")
INTERRUPTED = "interrupted"  # the refusal code of frames a crash left undecided
SQLITE_BUSY_TIMEOUT_MS = 5000
_WRITE = "musc_store_write"  # execution option that marks the engine used for write transactions


class StoreError(Exception):
    """The store refused an operation; the message says why and what to do instead."""


class NotFoundError(StoreError, LookupError):
    """The frame, correction or judge named does not exist (on that line)."""


class ConflictError(StoreError):
    """The operation clashes with what is recorded: a second active correction, an undo twice, and the like."""


class SchemaVersionError(StoreError):
    """The database was written by a newer musc-online, or is not a musc-online store at all."""


class _JSONText(TypeDecorator[Any]):
    """JSON kept as plain TEXT, so it reads the same in every database and in a shell."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        return None if value is None else json.dumps(value, sort_keys=True)

    def process_result_value(self, value: str | None, dialect: Any) -> Any:
        return None if value is None else json.loads(value)


def _one_of(column: str, values: Sequence[str]) -> CheckConstraint:
    """A CHECK that keeps an enumerated text column within its values."""
    allowed = ", ".join(f"'{value}'" for value in values)
    return CheckConstraint(f"{column} IN ({allowed})", name=f"ck_{column}")


def _unique_while(name: str, condition: str, *columns: str) -> Index:
    """A partial unique index: at most one row per key while `condition` holds (SQLite and PostgreSQL)."""
    where = text(condition)
    return Index(name, *columns, unique=True, sqlite_where=where, postgresql_where=where)


class Base(DeclarativeBase):
    """Declarative base of the store's tables (the latest schema; older ones are upgraded to it)."""


class FrameRow(Base):
    """Every frame the line received, decided or refused; `id` is the internal key (frame ids may repeat)."""

    __tablename__ = "frames"
    __table_args__ = (
        Index("ix_frames_line_frame_id", "line", "frame_id"),
        Index("ix_frames_line_received_at", "line", "received_at"),
        _one_of("status", FRAME_STATUSES),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    line: Mapped[int]
    frame_id: Mapped[str]
    camera: Mapped[str]
    received_at: Mapped[float]
    status: Mapped[str]
    refusal_reason: Mapped[str | None]
    size_bytes: Mapped[int] = mapped_column(server_default="0")
    refusal_code: Mapped[str | None]


class DecisionRow(Base):
    """The scorer's decision on one frame."""

    __tablename__ = "decisions"
    __table_args__ = (_one_of("label", LABELS),)

    frame: Mapped[int] = mapped_column(ForeignKey("frames.id"), primary_key=True)
    label: Mapped[str]
    score: Mapped[float]
    raw_score: Mapped[float]
    band_low: Mapped[float | None]  # None while the band is not yet calibrated (every decision unsure)
    band_high: Mapped[float | None]
    provisional: Mapped[bool]
    nearest_defect_label: Mapped[str | None]
    nearest_defect_frame: Mapped[str | None]
    decided_at: Mapped[float]
    latency_ms: Mapped[float]
    artifact_path: Mapped[str | None]


class CorrectionRow(Base):
    """An operator's verdict on a frame, or (with `undoes`) the undoing of an earlier one."""

    __tablename__ = "corrections"
    __table_args__ = (
        _one_of("verdict", VERDICTS),
        _unique_while("ux_corrections_active", "undone_at IS NULL AND undoes IS NULL", "line", "frame_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    line: Mapped[int]
    frame_id: Mapped[str]
    verdict: Mapped[str]
    defect_label: Mapped[str | None]
    note: Mapped[str | None]
    operator: Mapped[str]
    created_at: Mapped[float]
    previous_label: Mapped[str]
    applied_at: Mapped[float | None]
    undone_at: Mapped[float | None]
    undoes: Mapped[int | None] = mapped_column(ForeignKey("corrections.id"))
    audit: Mapped[dict[str, Any] | None] = mapped_column(_JSONText)


class JudgeRow(Base):
    """A frame in the line's judge bank, with where it came from and when it left."""

    __tablename__ = "judges"
    __table_args__ = (
        _one_of("source", JUDGE_SOURCES),
        _unique_while("ux_judges_active", "removed_at IS NULL", "line", "judge_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    line: Mapped[int]
    judge_id: Mapped[str]
    source: Mapped[str]
    added_at: Mapped[float]
    removed_at: Mapped[float | None]


class EventRow(Base):
    """Something worth telling an operator later: a restart, a recovery, an undo."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_line_at", "line", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    line: Mapped[int]
    at: Mapped[float]
    kind: Mapped[str]
    message: Mapped[str]
    data: Mapped[Any | None] = mapped_column(_JSONText)


class SchemaVersionRow(Base):
    """The single row that says which schema version the database is at."""

    __tablename__ = "schema_version"

    version: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)


def _v2_sizes_and_audit(conn: Connection) -> None:
    """Version 2: frames keep their payload size; corrections keep an audit of what the daemon changed."""
    conn.execute(text("ALTER TABLE frames ADD COLUMN size_bytes INTEGER NOT NULL DEFAULT 0"))
    conn.execute(text("ALTER TABLE corrections ADD COLUMN audit TEXT"))


def _v3_refusal_codes(conn: Connection) -> None:
    """Version 3: refused frames keep their reason code apart, so status can count refusals by code."""
    conn.execute(text("ALTER TABLE frames ADD COLUMN refusal_code TEXT"))
    refused = conn.execute(select(FrameRow.id, FrameRow.refusal_reason).where(FrameRow.status == "refused")).all()
    for key, reason in refused:
        code, _, rest = (reason or "").partition(": ")
        code = code if rest and code.isidentifier() else INTERRUPTED
        conn.execute(update(FrameRow).where(FrameRow.id == key).values(refusal_code=code))


# Forward-only upgrades, keyed by the version each one produces. Version 1 is the first schema.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {2: _v2_sizes_and_audit, 3: _v3_refusal_codes}


@dataclass(frozen=True)
class DecisionRecord:
    """A decided frame as the review queue, status and the daemon see it."""

    key: int
    line: int
    frame_id: str
    camera: str
    received_at: float
    size_bytes: int
    label: str
    score: float
    raw_score: float
    band_low: float | None
    band_high: float | None
    provisional: bool
    nearest_defect_label: str | None
    nearest_defect_frame: str | None
    decided_at: float
    latency_ms: float
    artifact_path: str | None


@dataclass(frozen=True)
class CorrectionRecord:
    """An operator's verdict; an undo record has `undoes` set and repeats the verdict it reverts."""

    id: int
    line: int
    frame_id: str
    verdict: str
    defect_label: str | None
    note: str | None
    operator: str
    created_at: float
    previous_label: str
    applied_at: float | None
    undone_at: float | None
    undoes: int | None
    audit: dict[str, Any] | None


@dataclass(frozen=True)
class JudgeRecord:
    """A judge bank entry of a line; `removed_at` is set once it left the bank."""

    line: int
    judge_id: str
    source: str
    added_at: float
    removed_at: float | None


@dataclass(frozen=True)
class EventRecord:
    """A logged event of a line."""

    id: int
    line: int
    at: float
    kind: str
    message: str
    data: Any | None


@dataclass(frozen=True)
class NewFrame:
    """A frame as it arrived; ``seq`` is the writer's own number for it, until the store gives it a key."""

    seq: int
    frame_id: str
    camera: str
    received_at: float
    size_bytes: int


@dataclass(frozen=True)
class NewDecision:
    """The scorer's decision on a received frame."""

    seq: int
    label: str
    score: float
    raw_score: float
    band_low: float | None
    band_high: float | None
    provisional: bool
    decided_at: float
    latency_ms: float
    nearest_defect_label: str | None = None
    nearest_defect_frame: str | None = None
    artifact_path: str | None = None


@dataclass(frozen=True)
class NewRefusal:
    """Why a received frame was not decided: a stable code and a message saying what and where."""

    seq: int
    code: str
    reason: str


@dataclass(frozen=True)
class NewPicture:
    """Where the picture of a decided frame was kept (None: it was not)."""

    seq: int
    path: str | None


FrameEntry = NewFrame | NewDecision | NewRefusal | NewPicture

_Record = TypeVar("_Record", DecisionRecord, CorrectionRecord, JudgeRecord, EventRecord)


class Counts(TypedDict):
    """Frame and correction tallies of a line; received == decided + refused + pending, always."""

    received: int
    decided: int
    refused: int
    pending: int
    ok: int
    unsure: int
    defect: int
    corrections_pending: int
    corrections_failed: int  # corrections the daemon took but could not act on (their audit says why)
    refused_by_code: dict[str, int]


def _copy(cls: type[_Record], *rows: Base, **values: Any) -> _Record:
    """Build a plain record from ORM rows: each field from `values`, else from the first row that has it."""
    for field in fields(cls):  # type: ignore[arg-type]
        if field.name not in values:
            values[field.name] = next(getattr(row, field.name) for row in rows if hasattr(row, field.name))
    return cls(**values)


def _check(value: str, allowed: Sequence[str], what: str) -> None:
    """Refuse a value outside its enumeration with a message that lists the allowed ones."""
    if value not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(allowed)}, not {value!r}")


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


class Store:
    """A line's (or a plant's) records; every method is one short transaction, safe from several threads."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._writer = engine.execution_options(**{_WRITE: True})
        self._reads = sessionmaker(engine, expire_on_commit=False)
        self._writes = sessionmaker(self._writer, expire_on_commit=False)

    @classmethod
    def open(cls, url: str) -> Store:
        """Connect to `url` (a sqlite file's folder is created, WAL enabled) and bring its schema up to date."""
        parsed = make_url(url)
        is_sqlite = parsed.get_backend_name() == "sqlite"
        if is_sqlite and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed)
        if is_sqlite:
            _prepare_sqlite(engine)
        store = cls(engine)
        store.migrate()
        return store

    def close(self) -> None:
        """Close the pooled connections."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def migrate(self) -> int:
        """Create a fresh database at SCHEMA_VERSION or upgrade an older one a step per transaction; refuse newer."""
        while True:
            with self._writer.begin() as conn:
                version = _stored_version(conn)
                if version == SCHEMA_VERSION:
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

    def write_frames(self, line: int, entries: Sequence[FrameEntry], keys: Mapping[int, int]) -> dict[int, int]:
        """Write a group of frame receipts, decisions, refusals and pictures in one transaction, in order.

        Entries name frames by the writer's own sequence numbers: ``keys`` maps those already written to their
        store keys; the keys of the frames this group receives are returned. All or nothing.
        """
        new_keys: dict[int, int] = {}
        with self._writes.begin() as session:
            unflushed: list[tuple[int, FrameRow]] = []

            def flush() -> None:  # the store gives keys to the receipts added so far
                if unflushed:
                    session.flush()
                    new_keys.update((seq, row.id) for seq, row in unflushed)
                    unflushed.clear()

            def key_of(seq: int) -> int:
                flush()
                if seq in new_keys:
                    return new_keys[seq]
                if seq in keys:
                    return keys[seq]
                raise NotFoundError(f"frame number {seq} of line {line} was never recorded as received")

            for entry in entries:
                if isinstance(entry, NewFrame):
                    row = FrameRow(
                        line=line,
                        frame_id=entry.frame_id,
                        camera=entry.camera,
                        received_at=entry.received_at,
                        status="pending",
                        size_bytes=entry.size_bytes,
                    )
                    session.add(row)
                    unflushed.append((entry.seq, row))
                elif isinstance(entry, NewDecision):
                    _check(entry.label, LABELS, "label")
                    key = key_of(entry.seq)
                    self._settle(session, key, "decided", None, None)
                    fields_ = {f.name: getattr(entry, f.name) for f in fields(entry) if f.name != "seq"}
                    session.add(DecisionRow(frame=key, **fields_))
                elif isinstance(entry, NewRefusal):
                    self._settle(session, key_of(entry.seq), "refused", entry.code, entry.reason)
                else:
                    statement = update(DecisionRow).where(DecisionRow.frame == key_of(entry.seq))
                    session.execute(statement.values(artifact_path=entry.path))
            flush()
        return new_keys

    def record_frame(self, line: int, frame_id: str, camera: str, received_at: float, size_bytes: int) -> int:
        """Record one received frame as pending and return its key (``write_frames`` for many at once)."""
        return self.write_frames(line, [NewFrame(0, frame_id, camera, received_at, size_bytes)], {})[0]

    def record_decision(self, key: int, **decision: Any) -> None:
        """Record the decision on one pending frame; a frame is decided or refused once."""
        self.write_frames(self._line_of(key), [NewDecision(0, **decision)], {0: key})

    def record_refusal(self, key: int, code: str, reason: str) -> None:
        """Record why one pending frame was refused."""
        self.write_frames(self._line_of(key), [NewRefusal(0, code, reason)], {0: key})

    def _line_of(self, key: int) -> int:
        with self._reads() as session:
            line = session.scalar(select(FrameRow.line).where(FrameRow.id == key))
        if line is None:
            raise NotFoundError(f"no frame with key {key}")
        return line

    def refuse_pending(self, line: int, reason: str) -> int:
        """Refuse every frame still pending (received before a crash, never decided); returns how many."""
        with self._writes.begin() as session:
            statement = (
                update(FrameRow)
                .where(FrameRow.line == line, FrameRow.status == "pending")
                .values(status="refused", refusal_code=INTERRUPTED, refusal_reason=reason)
            )
            return session.execute(statement, execution_options={"synchronize_session": False}).rowcount

    @staticmethod
    def _settle(session: Session, key: int, status: str, code: str | None, reason: str | None) -> None:
        frame = session.get(FrameRow, key, with_for_update=True)
        if frame is None:
            raise NotFoundError(f"no frame with key {key}")
        if frame.status != "pending":
            raise ConflictError(f"frame {frame.frame_id!r} (key {key}) is already {frame.status}")
        frame.status = status
        frame.refusal_code = code
        frame.refusal_reason = reason

    def counts(self, line: int) -> Counts:
        """Frames received, decided, refused and pending, decisions by label, and corrections not yet applied."""
        with self._reads() as session:
            by_status = dict(
                session.execute(
                    select(FrameRow.status, func.count()).where(FrameRow.line == line).group_by(FrameRow.status)
                ).all()
            )
            by_label = dict(
                session.execute(
                    select(DecisionRow.label, func.count())
                    .join(FrameRow, DecisionRow.frame == FrameRow.id)
                    .where(FrameRow.line == line)
                    .group_by(DecisionRow.label)
                ).all()
            )
            pending_corrections = session.scalar(
                select(func.count()).select_from(CorrectionRow).where(*self._pending(line))
            )
            by_code = dict(
                session.execute(
                    select(FrameRow.refusal_code, func.count())
                    .where(FrameRow.line == line, FrameRow.status == "refused")
                    .group_by(FrameRow.refusal_code)
                ).all()
            )
            failed_corrections = sum(
                1
                for audit in session.scalars(select(CorrectionRow.audit).where(CorrectionRow.line == line))
                if audit and "error" in audit
            )
        return Counts(
            received=sum(by_status.values()),
            decided=by_status.get("decided", 0),
            refused=by_status.get("refused", 0),
            pending=by_status.get("pending", 0),
            ok=by_label.get("ok", 0),
            unsure=by_label.get("unsure", 0),
            defect=by_label.get("defect", 0),
            corrections_pending=pending_corrections or 0,
            corrections_failed=failed_corrections,
            refused_by_code={code or INTERRUPTED: count for code, count in sorted(by_code.items(), key=str)},
        )

    def frame_outcomes(self, line: int, frame_ids: Sequence[str]) -> dict[str, str]:
        """How each of these frames of a line ended, by id: "decided", "refused: <code>" or "pending"."""
        outcomes: dict[str, str] = {}
        with self._reads() as session:
            for start in range(0, len(frame_ids), 500):
                chunk = list(frame_ids[start : start + 500])
                rows = session.execute(
                    select(FrameRow.frame_id, FrameRow.status, FrameRow.refusal_code)
                    .where(FrameRow.line == line, FrameRow.frame_id.in_(chunk))
                    .order_by(FrameRow.id)
                )
                for frame_id, status, code in rows:
                    outcomes[frame_id] = f"refused: {code}" if status == "refused" else status
        return outcomes

    def recent_decisions(
        self,
        line: int,
        labels: Sequence[str] | None = None,
        camera: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[DecisionRecord]:
        """Decisions of a line, newest frame first, optionally only some labels, one camera, frames since a time."""
        query = self._decisions(line)
        if labels:
            query = query.where(DecisionRow.label.in_(labels))
        if camera is not None:
            query = query.where(FrameRow.camera == camera)
        if since is not None:
            query = query.where(FrameRow.received_at >= since)
        with self._reads() as session:
            return [_copy(DecisionRecord, *rows, key=rows[0].id) for rows in session.execute(query.limit(limit))]

    def decision_for(self, line: int, frame_id: str) -> DecisionRecord | None:
        """The decision on a frame id of a line (the newest, should a camera have resent it), or None."""
        with self._reads() as session:
            rows = session.execute(self._decisions(line).where(FrameRow.frame_id == frame_id).limit(1)).first()
        return None if rows is None else _copy(DecisionRecord, *rows, key=rows[0].id)

    @staticmethod
    def _decisions(line: int) -> Select[tuple[FrameRow, DecisionRow]]:
        return (
            select(FrameRow, DecisionRow)
            .join(DecisionRow, DecisionRow.frame == FrameRow.id)
            .where(FrameRow.line == line)
            .order_by(FrameRow.received_at.desc(), FrameRow.id.desc())
        )

    # Corrections ----------------------------------------------------------------------------------------------

    def add_correction(
        self,
        line: int,
        frame_id: str,
        verdict: str,
        operator: str,
        previous_label: str,
        defect_label: str | None = None,
        note: str | None = None,
    ) -> int:
        """Record an operator's verdict on a decided frame; one active correction per frame until it is undone."""
        _check(verdict, VERDICTS, "verdict")
        _check(previous_label, LABELS, "previous_label")
        if defect_label is not None and verdict != "defect":
            raise ValueError("a defect label goes with a 'defect' verdict only")
        if not operator:
            raise ValueError("every correction names its operator")
        with self._writes.begin() as session:
            self._require_decided(session, line, frame_id)
            active = session.scalars(
                select(CorrectionRow).where(
                    CorrectionRow.line == line,
                    CorrectionRow.frame_id == frame_id,
                    CorrectionRow.undone_at.is_(None),
                    CorrectionRow.undoes.is_(None),
                )
            ).first()
            if active is not None:
                raise ConflictError(
                    f"frame {frame_id!r} on line {line} is already corrected to {active.verdict!r} by "
                    f"{active.operator} (correction {active.id}); undo that correction first"
                )
            row = CorrectionRow(
                line=line,
                frame_id=frame_id,
                verdict=verdict,
                defect_label=defect_label,
                note=note,
                operator=operator,
                created_at=time.time(),
                previous_label=previous_label,
            )
            session.add(row)
            try:
                session.flush()
            except IntegrityError as error:  # another writer marked the frame between our check and our insert
                raise ConflictError(f"frame {frame_id!r} on line {line} was just corrected by someone else") from error
            return row.id

    @staticmethod
    def _require_decided(session: Session, line: int, frame_id: str) -> None:
        seen = session.execute(select(FrameRow.line, FrameRow.status).where(FrameRow.frame_id == frame_id)).all()
        if any(seen_line == line and status == "decided" for seen_line, status in seen):
            return
        here = sorted({status for seen_line, status in seen if seen_line == line})
        elsewhere = sorted({seen_line for seen_line, _ in seen if seen_line != line})
        detail = f" (it is {'/'.join(here)} here)" if here else ""
        detail += f" (it was seen on line {', '.join(map(str, elsewhere))})" if elsewhere else ""
        raise NotFoundError(f"no decided frame {frame_id!r} on line {line}{detail}")

    def undo_correction(self, correction_id: int, operator: str) -> int:
        """Undo a correction: mark it undone and add an undo record (pending, for the daemon to revert); returns its id.

        The daemon reverts an undo record only if the correction it undoes had been applied.
        """
        if not operator:
            raise ValueError("every undo names its operator")
        with self._writes.begin() as session:
            original = session.get(CorrectionRow, correction_id, with_for_update=True)
            if original is None:
                raise NotFoundError(f"no correction {correction_id}")
            if original.undoes is not None:
                raise ConflictError(f"correction {correction_id} is itself an undo; mark the frame again instead")
            if original.undone_at is not None:
                raise ConflictError(f"correction {correction_id} was already undone")
            now = time.time()
            original.undone_at = now
            undo = CorrectionRow(
                line=original.line,
                frame_id=original.frame_id,
                verdict=original.verdict,
                defect_label=original.defect_label,
                operator=operator,
                created_at=now,
                previous_label=original.verdict,
                undoes=original.id,
            )
            session.add(undo)
            session.flush()
            session.add(
                EventRow(
                    line=original.line,
                    at=now,
                    kind="correction_undone",
                    message=f"{operator} undid correction {original.id} ({original.verdict}) of {original.frame_id}",
                    data={"correction": original.id, "undo": undo.id},
                )
            )
            return undo.id

    def pending_corrections(self, line: int) -> list[CorrectionRecord]:
        """Corrections (and undo records) the daemon has not applied yet and nobody undid, oldest first."""
        return self._corrections(*self._pending(line))

    def corrections(self, line: int) -> list[CorrectionRecord]:
        """Every correction and undo record of a line, oldest first."""
        return self._corrections(CorrectionRow.line == line)

    def _corrections(self, *conditions: Any) -> list[CorrectionRecord]:
        query = select(CorrectionRow).where(*conditions).order_by(CorrectionRow.created_at, CorrectionRow.id)
        with self._reads() as session:
            return [_copy(CorrectionRecord, row) for row in session.scalars(query)]

    @staticmethod
    def _pending(line: int) -> tuple[Any, ...]:
        return CorrectionRow.line == line, CorrectionRow.applied_at.is_(None), CorrectionRow.undone_at.is_(None)

    def mark_applied(self, correction_id: int, audit: dict[str, Any]) -> None:
        """Mark a correction applied by the daemon, with an audit of what it changed; once only."""
        with self._writes.begin() as session:
            row = session.get(CorrectionRow, correction_id, with_for_update=True)
            if row is None:
                raise NotFoundError(f"no correction {correction_id}")
            if row.applied_at is not None:
                raise ConflictError(f"correction {correction_id} was already applied")
            row.applied_at = time.time()
            row.audit = audit

    # Judges and events ----------------------------------------------------------------------------------------

    def add_judge(self, line: int, judge_id: str, source: str) -> None:
        """Record a frame joining the line's judge bank; an id is in the bank once at a time."""
        _check(source, JUDGE_SOURCES, "source")
        with self._writes.begin() as session:
            if self._active_judge(session, line, judge_id) is not None:
                raise ConflictError(f"judge {judge_id!r} is already in the bank of line {line}")
            session.add(JudgeRow(line=line, judge_id=judge_id, source=source, added_at=time.time()))
            try:
                session.flush()
            except IntegrityError as error:
                raise ConflictError(f"judge {judge_id!r} was just added to line {line} by someone else") from error

    def remove_judge(self, line: int, judge_id: str) -> None:
        """Record a judge leaving the line's bank (its history stays)."""
        with self._writes.begin() as session:
            row = self._active_judge(session, line, judge_id)
            if row is None:
                raise NotFoundError(f"judge {judge_id!r} is not in the bank of line {line}")
            row.removed_at = time.time()

    def sync_judge(self, line: int, judge_id: str, in_bank: bool, source: str) -> None:
        """Make the record of a judge agree with the scorer's bank: added when it is in it, removed when not."""
        _check(source, JUDGE_SOURCES, "source")
        with self._writes.begin() as session:
            row = self._active_judge(session, line, judge_id)
            if in_bank and row is None:
                session.add(JudgeRow(line=line, judge_id=judge_id, source=source, added_at=time.time()))
            elif not in_bank and row is not None:
                row.removed_at = time.time()

    @staticmethod
    def _active_judge(session: Session, line: int, judge_id: str) -> JudgeRow | None:
        query = select(JudgeRow).where(
            JudgeRow.line == line, JudgeRow.judge_id == judge_id, JudgeRow.removed_at.is_(None)
        )
        return session.scalars(query.with_for_update()).first()

    def judges(self, line: int, include_removed: bool = False) -> list[JudgeRecord]:
        """The line's judges, oldest first; removed ones too when asked."""
        query = select(JudgeRow).where(JudgeRow.line == line).order_by(JudgeRow.added_at, JudgeRow.id)
        if not include_removed:
            query = query.where(JudgeRow.removed_at.is_(None))
        with self._reads() as session:
            return [_copy(JudgeRecord, row) for row in session.scalars(query)]

    def log_event(self, line: int, kind: str, message: str, data: Any | None = None) -> int:
        """Record an event (a JSON-able `data` travels with it) and return its id."""
        with self._writes.begin() as session:
            row = EventRow(line=line, at=time.time(), kind=kind, message=message, data=data)
            session.add(row)
            session.flush()
            return row.id

    def events(self, line: int, limit: int = 100, kind_prefix: str = "") -> list[EventRecord]:
        """The line's latest events (those whose kind starts with ``kind_prefix``), newest first."""
        query = select(EventRow).where(EventRow.line == line).order_by(EventRow.at.desc(), EventRow.id.desc())
        if kind_prefix:
            query = query.where(EventRow.kind.startswith(kind_prefix))
        with self._reads() as session:
            return [_copy(EventRecord, row) for row in session.scalars(query.limit(limit))]
