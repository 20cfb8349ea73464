"""The store's tables (the latest schema) and the forward-only migrations that bring an older store to it."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Connection,
    ForeignKey,
    Index,
    LargeBinary,
    Text,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from daemon.store.records import FRAME_STATUSES, INTERRUPTED, JUDGE_SOURCES, LABELS, ROLES, VERDICTS

SCHEMA_VERSION = 6


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


PENDING = text("status = 'pending'")  # frames received and not yet answered (a literal: partial indexes match it)


class Base(DeclarativeBase):
    """Declarative base of the store's tables (the latest schema; older ones are upgraded to it)."""


class FrameRow(Base):
    """Every frame the line received, decided or refused; `id` is the internal key (frame ids may repeat)."""

    __tablename__ = "frames"
    __table_args__ = (
        Index("ix_frames_line_frame_id", "line", "frame_id"),
        Index("ix_frames_line_received_at", "line", "received_at"),
        Index("ix_frames_frame_id", "frame_id"),  # a mark names a frame id alone; on which line is checked after
        Index("ix_frames_pending", "line", sqlite_where=PENDING, postgresql_where=PENDING),  # crash recovery's few
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
    __table_args__ = (
        _one_of("label", LABELS),
        Index("ix_decisions_label_frame", "label", "frame"),  # the review queue: a label's newest, walked backwards
    )

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
        Index("ix_corrections_line_frame_id", "line", "frame_id"),  # retention keeps every corrected frame
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


class TallyRow(Base):
    """A line's running count of frames by status, of decisions by label and of refusals by code, since the store
    began: status reads it instead of counting a year of frames, and retention leaves it alone."""

    __tablename__ = "tallies"

    line: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(primary_key=True)  # "status", "label" or "refusal"
    key: Mapped[str] = mapped_column(primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)


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


class LineRow(Base):
    """A line daemon's latest report: where it runs and its status, so one station can show every line."""

    __tablename__ = "lines"

    line: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    host: Mapped[str]
    reported_at: Mapped[float]
    status: Mapped[Any | None] = mapped_column(_JSONText)


class AccountRow(Base):
    """Someone who may use the review station: a role and a password hash (never the password)."""

    __tablename__ = "accounts"
    __table_args__ = (_one_of("role", ROLES),)

    name: Mapped[str] = mapped_column(primary_key=True)
    role: Mapped[str]
    password_hash: Mapped[str]
    created_at: Mapped[float]


class JudgeBankRow(Base):
    """A judge bank exported into the store, so another line (on another host) can import it."""

    __tablename__ = "judge_banks"

    name: Mapped[str] = mapped_column(primary_key=True)
    from_line: Mapped[int]
    judges: Mapped[int]
    fingerprint: Mapped[Any] = mapped_column(_JSONText)
    created_at: Mapped[float]
    data: Mapped[bytes] = mapped_column(LargeBinary)


class ReviewSessionRow(Base):
    """A review station login: only the SHA-256 of its token is kept, so a copy of the store opens no session."""

    __tablename__ = "review_sessions"
    __table_args__ = (Index("ix_review_sessions_name", "name"),)

    token_hash: Mapped[str] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(ForeignKey("accounts.name", ondelete="CASCADE"))
    created_at: Mapped[float]
    last_seen: Mapped[float]


class LoginLockoutRow(Base):
    """Failed review station logins of one account or one client address, and until when it is locked out."""

    __tablename__ = "login_lockouts"
    __table_args__ = (_one_of("kind", ("account", "address")),)

    kind: Mapped[str] = mapped_column(primary_key=True)
    subject: Mapped[str] = mapped_column(primary_key=True)
    failures: Mapped[int]
    first_at: Mapped[float]
    last_at: Mapped[float]
    locked_until: Mapped[float | None]


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


def _v4_plant(conn: Connection) -> None:
    """Version 4: a plant's shared store: line reports, review accounts, judge banks passed between lines."""
    Base.metadata.create_all(conn, tables=[LineRow.__table__, AccountRow.__table__, JudgeBankRow.__table__])


def _v5_review_sessions(conn: Connection) -> None:
    """Version 5: the review station's sessions (hashed) and login lockouts, so they outlive a station restart."""
    Base.metadata.create_all(conn, tables=[ReviewSessionRow.__table__, LoginLockoutRow.__table__])


def _v6_tallies(conn: Connection) -> None:
    """Version 6: running counts per line (filled once from the frames recorded so far); the review queue's and
    retention's indexes are created at every open (``database.ensure_indexes``)."""
    TallyRow.__table__.create(conn)
    statuses = select(FrameRow.line, FrameRow.status, func.count()).group_by(FrameRow.line, FrameRow.status)
    labels = (
        select(FrameRow.line, DecisionRow.label, func.count())
        .join(DecisionRow, DecisionRow.frame == FrameRow.id)
        .group_by(FrameRow.line, DecisionRow.label)
    )
    codes = (
        select(FrameRow.line, FrameRow.refusal_code, func.count())
        .where(FrameRow.status == "refused")
        .group_by(FrameRow.line, FrameRow.refusal_code)
    )
    tallies: Counter[tuple[int, str, str]] = Counter()
    for kind, query in (("status", statuses), ("label", labels), ("refusal", codes)):
        for line, key, count in conn.execute(query):
            tallies[line, kind, key or INTERRUPTED] += count  # refusals recorded before codes were: interrupted
    if tallies:
        rows = [{"line": line, "kind": kind, "key": key, "count": n} for (line, kind, key), n in tallies.items()]
        conn.execute(insert(TallyRow), rows)


# Forward-only upgrades, keyed by the version each one produces. Version 1 is the first schema.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {
    2: _v2_sizes_and_audit,
    3: _v3_refusal_codes,
    4: _v4_plant,
    5: _v5_review_sessions,
    6: _v6_tallies,
}


def pending_where(line: int) -> tuple[Any, ...]:
    """The conditions of a line's corrections that wait to be applied: not applied, not undone."""
    return CorrectionRow.line == line, CorrectionRow.applied_at.is_(None), CorrectionRow.undone_at.is_(None)
