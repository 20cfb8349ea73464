"""The line's records: frames, decisions, corrections, judges and events, in any SQLAlchemy database.

The only package that imports SQLAlchemy. SQLite in WAL mode under the line's data folder is the default; a
plant may point every line at one PostgreSQL URL instead (every row carries its line). The schema is versioned
and upgraded forward in place, because corrections are plant data that must outlive releases.

- ``schema``: the tables and the migrations;   - ``records``: what the store hands out and takes in;
- ``database``: engines, sessions, migrating;  - ``frames``, ``corrections``, ``judges``, ``plant``: the queries.
"""

from daemon.store.corrections import CorrectionQueries
from daemon.store.database import scratch_database
from daemon.store.frames import FrameQueries
from daemon.store.judges import JudgeQueries
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
from daemon.store.schema import MIGRATIONS, SCHEMA_VERSION

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
    "FrameEntry",
    "JudgeBankRecord",
    "JudgeBankSummary",
    "JudgeRecord",
    "LineReport",
    "NewDecision",
    "NewFrame",
    "NewPicture",
    "NewRefusal",
    "NotFoundError",
    "SchemaVersionError",
    "Store",
    "StoreError",
    "StoreUnavailableError",
    "scratch_database",
]


class Store(FrameQueries, CorrectionQueries, JudgeQueries, PlantQueries):
    """A line's (or a plant's) records; every method is one short transaction, safe from several threads."""
