"""Opening a SQLite journal file: WAL for writers, ``mode=ro`` for readers, schema up to date.

:func:`open_database` is the one way in: it hands :class:`~drills.core.journal.Journal`
a connection whose schema is current (:mod:`drills.core.journal.schema`), or raises
:class:`~drills.core.journal.faults.JournalUnusable` naming the file — never a bare
``sqlite3`` error. A PostgreSQL journal is opened by :mod:`drills.core.journal.postgres`.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from drills.core.errors import JournalTooNew
from drills.core.journal.faults import JournalUnusable
from drills.core.journal.schema import SCHEMA_VERSION, migrate, user_version

__all__ = ["connect", "open_database"]


def open_database(path: str, *, read_only: bool = False) -> tuple[sqlite3.Connection, int]:
    """The connection to *path* and its schema version (:data:`SCHEMA_VERSION` once open).

    A writer's file is migrated. A reader's is opened ``mode=ro`` and written only
    when it is older than this code: it is brought up to date once (that writes),
    then opened read-only again. ``":memory:"`` is never read-only.
    """
    read_only = read_only and path != ":memory:"
    try:
        db = connect(path, read_only=read_only)
    except (sqlite3.Error, OSError) as exc:
        raise JournalUnusable.from_error(path, exc, writing=not read_only) from None
    try:
        if read_only:
            version = user_version(db)
            if version > SCHEMA_VERSION:
                raise JournalTooNew(path, version, SCHEMA_VERSION)
            if version < SCHEMA_VERSION:  # older: brought up to date once
                db.close()
                open_database(path)[0].close()
                db = connect(path, read_only=True)
                version = user_version(db)
            db.execute("SELECT COUNT(*) FROM runs").fetchone()
        else:
            version = migrate(db, path)
    except sqlite3.Error as exc:
        db.close()
        raise JournalUnusable.from_error(path, exc, writing=not read_only) from None
    except BaseException:
        db.close()
        raise
    return db, version


def connect(path: str, *, read_only: bool = False) -> sqlite3.Connection:
    """A connection to *path* (autocommit, rows by name), its schema as it is on disk."""
    if path == ":memory:":
        db = sqlite3.connect(path, isolation_level=None)
    elif read_only:
        if Path(path).is_dir():
            raise IsADirectoryError(path)
        if not Path(path).is_file():
            raise FileNotFoundError(path)
        uri = Path(path).absolute().as_uri()
        db = sqlite3.connect(f"{uri}?mode=ro", uri=True, isolation_level=None, timeout=30.0)
        try:
            db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        except sqlite3.OperationalError:
            # A WAL file in a folder nobody may write: SQLite cannot make the
            # shared-memory file, so read it as it is on disk (nobody writes there).
            db.close()
            db = sqlite3.connect(
                f"{uri}?mode=ro&immutable=1", uri=True, isolation_level=None, timeout=30.0
            )
    else:
        if Path(path).is_dir():
            raise IsADirectoryError(path)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None, timeout=30.0)
    db.row_factory = sqlite3.Row
    try:
        if path != ":memory:" and not read_only:
            db.execute("PRAGMA journal_mode=WAL")
        if not read_only:
            # NORMAL + WAL: a committed row survives the process being killed.
            db.execute("PRAGMA synchronous=NORMAL")
    except BaseException:
        db.close()
        raise
    return db
