"""What a journal file holds: the tables, and the ordered migrations that build them.

A file's ``PRAGMA user_version`` is its schema version: the number of
:data:`MIGRATIONS` applied to it. Opening a file brings it up to
:data:`SCHEMA_VERSION` (:func:`migrate`); a file newer than this code is refused
(:class:`~drills.core.errors.JournalTooNew`), never guessed at.

The statements are SQLite's. A PostgreSQL journal would keep the same tables and
the same version numbers in a schema of its own beside this one.

    >>> import sqlite3
    >>> db = sqlite3.connect(":memory:", isolation_level=None)
    >>> migrate(db, ":memory:") == SCHEMA_VERSION == user_version(db)
    True
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from drills.core.errors import JournalTooNew

__all__ = [
    "DELIVERY_COLUMNS",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "current_version",
    "migrate",
    "user_version",
]

# Version 1: the tables as they were before the schema was versioned (that
# code wrote no ``user_version``). Every statement is idempotent, so an
# unversioned file of any age passes through it unchanged.
_V1 = (
    """CREATE TABLE IF NOT EXISTS runs (
    run_id      TEXT PRIMARY KEY,
    scenario    TEXT NOT NULL DEFAULT '',
    vantage     TEXT NOT NULL DEFAULT 'default',
    started_at  REAL NOT NULL,
    finished_at REAL,
    status      TEXT NOT NULL,
    pid         INTEGER,
    host        TEXT,
    meta        TEXT NOT NULL DEFAULT '{}'
)""",
    """CREATE TABLE IF NOT EXISTS deliveries (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id            TEXT NOT NULL REFERENCES runs(run_id),
    step              TEXT NOT NULL,
    municipality_code TEXT NOT NULL,
    municipality_name TEXT NOT NULL,
    channel_id        TEXT NOT NULL,
    kind              TEXT NOT NULL,
    recipient         TEXT,
    token             TEXT NOT NULL,
    outcome           TEXT NOT NULL,
    reason            TEXT NOT NULL DEFAULT '',
    sent_at           REAL,
    accepted_at       REAL,
    delivered_at      REAL,
    latency_s         REAL,
    accept_latency_s  REAL,
    error_bound_s     REAL,
    slo_latency_s     REAL,
    throttled         INTEGER NOT NULL DEFAULT 0,
    vantage           TEXT NOT NULL DEFAULT 'default',
    scenario          TEXT NOT NULL DEFAULT '',
    extra             TEXT NOT NULL DEFAULT '{}'
)""",
    "CREATE INDEX IF NOT EXISTS deliveries_run ON deliveries(run_id)",
    "CREATE INDEX IF NOT EXISTS runs_scenario ON runs(scenario, started_at)",
    """CREATE TABLE IF NOT EXISTS events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id  TEXT NOT NULL REFERENCES runs(run_id),
    at      REAL NOT NULL,
    kind    TEXT NOT NULL,
    data    TEXT NOT NULL DEFAULT '{}'
)""",
    "CREATE INDEX IF NOT EXISTS events_run ON events(run_id, kind)",
)


def _v1(db: sqlite3.Connection) -> None:
    for statement in _V1:
        db.execute(statement)


def _v2(db: sqlite3.Connection) -> None:
    # Files written between evidence levels and schema versions already have it.
    columns = {row[1] for row in db.execute("PRAGMA table_info(deliveries)")}
    if "evidence" not in columns:
        db.execute("ALTER TABLE deliveries ADD COLUMN evidence TEXT")


def _v3(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE IF NOT EXISTS digests (
    run_id        TEXT PRIMARY KEY REFERENCES runs(run_id),
    model_version TEXT NOT NULL,
    data          TEXT NOT NULL,
    at            REAL NOT NULL
)"""
    )


def _v4(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE IF NOT EXISTS totals (
    scenario      TEXT NOT NULL,
    vantage       TEXT NOT NULL,
    model_version TEXT NOT NULL,
    data          TEXT NOT NULL,
    at            REAL NOT NULL,
    PRIMARY KEY (scenario, vantage)
)"""
    )


# The one ordered list of migrations: entry i takes a file from version i to
# version i + 1. Append only; never edit a migration that has shipped.
MIGRATIONS: tuple[tuple[str, Callable[[sqlite3.Connection], None]], ...] = (
    ("runs, deliveries and events", _v1),
    ("evidence level of each delivery", _v2),
    ("digests: one stored digest per run", _v3),
    ("totals: the metrics' fold of each scenario × vantage", _v4),
)
SCHEMA_VERSION = len(MIGRATIONS)

# The ``deliveries`` columns a :class:`~drills.core.delivery.Delivery` is written to and
# read from, in order (``id`` is the table's own).
DELIVERY_COLUMNS = (
    "run_id step municipality_code municipality_name channel_id kind recipient token outcome "
    "reason sent_at accepted_at delivered_at latency_s accept_latency_s error_bound_s "
    "slo_latency_s throttled vantage scenario extra evidence"
).split()


def user_version(db: sqlite3.Connection) -> int:
    """The schema version written in *db* (0 for a file from before versions)."""
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def current_version(db: sqlite3.Connection, path: str) -> int:
    """The schema version of *db*; :class:`JournalTooNew` if it is newer than this code."""
    found = user_version(db)
    if found > SCHEMA_VERSION:
        raise JournalTooNew(path, found, SCHEMA_VERSION)
    return found


def migrate(db: sqlite3.Connection, path: str) -> int:
    """Bring *db* to :data:`SCHEMA_VERSION`; refuse a file newer than the code."""
    found = current_version(db, path)
    if found == SCHEMA_VERSION:
        return found
    # One write transaction for all steps: a crash leaves the old version intact,
    # and a second process opening the file at the same time waits, then finds
    # the work done.
    db.execute("BEGIN IMMEDIATE")
    try:
        found = current_version(db, path)
        for _, step in MIGRATIONS[found:]:
            step(db)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return SCHEMA_VERSION
