"""What the store hands out and takes in: record types, the entries a line writes, errors, enumerations.

Plain dataclasses, free of SQLAlchemy, so callers never hold a database row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, TypedDict, TypeVar

LABELS = ("ok", "unsure", "defect")
VERDICTS = ("ok", "defect")
JUDGE_SOURCES = ("seed", "correction", "import")
FRAME_STATUSES = ("pending", "decided", "refused")
INTERRUPTED = "interrupted"  # the refusal code of frames a crash left undecided
ROLES = ("viewer", "operator")  # review station accounts: viewers look, operators also correct


class StoreError(Exception):
    """The store refused an operation; the message says why and what to do instead."""


class NotFoundError(StoreError, LookupError):
    """The frame, correction or judge named does not exist (on that line)."""


class ConflictError(StoreError):
    """The operation clashes with what is recorded: a second active correction, an undo twice, and the like."""


class StoreUnavailableError(StoreError):
    """The database cannot be reached now (server down, network, credentials): worth trying again later."""


class SchemaVersionError(StoreError):
    """The database was written by a newer musc-online, or is not a musc-online store at all."""


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


def record_from(cls: type[_Record], *rows: Any, **values: Any) -> _Record:
    """Build a plain record from ORM rows: each field from `values`, else from the first row that has it."""
    for field in fields(cls):  # type: ignore[arg-type]
        if field.name not in values:
            values[field.name] = next(getattr(row, field.name) for row in rows if hasattr(row, field.name))
    return cls(**values)


def check_choice(value: str, allowed: Sequence[str], what: str) -> None:
    """Refuse a value outside its enumeration with a message that lists the allowed ones."""
    if value not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(allowed)}, not {value!r}")


@dataclass(frozen=True)
class LineReport:
    """A line daemon's latest report to the store."""

    line: int
    host: str
    reported_at: float
    status: Any | None


@dataclass(frozen=True)
class AccountRecord:
    """A review station account (the hash, never the password)."""

    name: str
    role: str
    password_hash: str
    created_at: float


@dataclass(frozen=True)
class JudgeBankSummary:
    """A judge bank in the store: an export of ``judges`` judges of ``from_line``, with its fingerprint."""

    name: str
    from_line: int
    judges: int
    fingerprint: Any
    created_at: float


@dataclass(frozen=True)
class JudgeBankRecord(JudgeBankSummary):
    """A judge bank in the store with its export (the zip ``judges export`` writes)."""

    data: bytes
