"""The line's records: frames, decisions, corrections, judges and events, in any SQLAlchemy database.

The only package that imports SQLAlchemy. SQLite in WAL mode under the line's data folder is the default; a
plant may point every line at one PostgreSQL URL instead (every row carries its line). The schema is versioned
and upgraded forward in place, because corrections are plant data that must outlive releases.

- ``schema``: the tables and the migrations;   - ``records``: what the store hands out and takes in;
- ``database``: engines, sessions, migrating;  - ``frames``, ``corrections``, ``judges``, ``plant``: the queries;
- ``sessions``: the review station's logins and lockouts;  - ``retention``: old frames leave in small batches;
- ``line_lock``: one daemon per line (its folder's lock, and PostgreSQL's advisory lock).
"""

from daemon.store.corrections import CorrectionQueries
from daemon.store.database import scratch_database
from daemon.store.frames import FrameQueries
from daemon.store.judges import JudgeQueries
from daemon.store.line_lock import FolderLock, LineBusyError, LineLocks, StoreLineLock
from daemon.store.plant import PlantQueries
from daemon.store.records import (
    INTERRUPTED,
    JUDGE_SOURCES,
    LABELS,
    ROLES,
    VERDICTS,
    AccountRecord,
    ConflictError,
    CorrectionRecord,
    Counts,
    DecisionRecord,
    EventRecord,
    FrameEntry,
    JudgeBankRecord,
    JudgeBankSummary,
    JudgeRecord,
    LineReport,
    NewDecision,
    NewFrame,
    NewPicture,
    NewRefusal,
    NotFoundError,
    SchemaVersionError,
    StoreError,
    StoreUnavailableError,
)
from daemon.store.retention import Pruned, Retention, RetentionQueries
from daemon.store.schema import MIGRATIONS, SCHEMA_VERSION
from daemon.store.sessions import LockoutRecord, SessionQueries, SessionRecord

__all__ = [
    "INTERRUPTED",
    "JUDGE_SOURCES",
    "LABELS",
    "MIGRATIONS",
    "ROLES",
    "SCHEMA_VERSION",
    "VERDICTS",
    "AccountRecord",
    "ConflictError",
    "CorrectionRecord",
    "Counts",
    "DecisionRecord",
    "EventRecord",
    "FolderLock",
    "FrameEntry",
    "JudgeBankRecord",
    "JudgeBankSummary",
    "JudgeRecord",
    "LineBusyError",
    "LineReport",
    "LockoutRecord",
    "NewDecision",
    "NewFrame",
    "NewPicture",
    "NewRefusal",
    "NotFoundError",
    "Pruned",
    "Retention",
    "SchemaVersionError",
    "SessionRecord",
    "Store",
    "StoreError",
    "StoreLineLock",
    "StoreUnavailableError",
    "scratch_database",
]


class Store(FrameQueries, CorrectionQueries, JudgeQueries, PlantQueries, SessionQueries, RetentionQueries, LineLocks):
    """A line's (or a plant's) records; every method is one short transaction, safe from several threads."""
