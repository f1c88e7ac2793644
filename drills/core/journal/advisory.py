"""PostgreSQL advisory locks: the keys the journal uses, and who holds one.

A key is a signed 64-bit number made from a name (``blake2b``, so every machine and
every Python computes the same one): ``run:<run_id>`` (held by a live run's journal
connection for the run's life) and ``run-lock:<vantage>`` (the run lock of a
vantage, :class:`drills.core.lock.PgRunLock`). ``pg_locks`` shows a 64-bit key as
two 32-bit halves (``classid``, ``objid``, ``objsubid = 1``); :func:`held_keys` reads
them back.

    >>> advisory_key("run", "20261205T030525JST-3fa2c1") == advisory_key("run", "20261205T030525JST-3fa2c1")
    True
    >>> halves(-1)
    (4294967295, 4294967295)
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

__all__ = ["MIGRATE_KEY", "Executes", "advisory_key", "halves", "held_keys", "holder_of_key"]


class Executes(Protocol):
    """What :func:`held_keys` needs of a connection (``PgDatabase`` or a psycopg one)."""

    def execute(self, query: Any, params: Any = ...) -> Any: ...


def advisory_key(kind: str, *parts: str) -> int:
    """The advisory lock key of *kind* and *parts* (a signed bigint, as PostgreSQL takes)."""
    name = "\x1f".join(("tsunagari", kind, *parts)).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(name, digest_size=8).digest(), "big", signed=True)


MIGRATE_KEY = advisory_key("migrate")
"""Held (per transaction) while a journal database is migrated: one migrator at a time."""


def halves(key: int) -> tuple[int, int]:
    """*key* as ``pg_locks`` shows it: ``(classid, objid)``, the high and low 32 bits."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    return unsigned >> 32, unsigned & 0xFFFF_FFFF


_HELD = (
    "SELECT l.classid::bigint, l.objid::bigint, l.pid, a.application_name, a.backend_start"
    " FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid"
    " WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted"
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def held_keys(db: Executes) -> dict[tuple[int, int], dict[str, Any]]:
    """Every advisory lock held in this database now: ``(classid, objid)`` → who holds it
    (``pid`` of the server process, ``application_name``, ``backend_start``)."""
    return {
        (int(r[0]), int(r[1])): {
            "pid": r[2],
            "application_name": r[3] or "",
            "backend_start": r[4],
        }
        for r in db.execute(_HELD).fetchall()
    }


def holder_of_key(db: Executes, key: int) -> dict[str, Any] | None:
    """Who holds *key* now (see :func:`held_keys`), or None when nobody does."""
    return held_keys(db).get(halves(key))
