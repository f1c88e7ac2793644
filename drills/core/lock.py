"""The run lock: overlapping drill runs (cron firing again too soon) cannot collide.

    with RunLock("tsunagari-out/journal.sqlite.lock"):
        ...                       # a second process gets LockBusy at once

The lock is an OS file lock (``filelock``): it goes away with the process, so a
killed run never leaves a stale lock behind. Who holds it is written beside it
(``<lock>.holder``) so the refused run can say which process it was and since
when, in Asia/Tokyo (:func:`tokyo_time`). A lock that cannot be made at all (its
folder read-only, immutable or full) is :class:`LockUnusable`, never a bare
``OSError``. Within one
process the lock is re-entrant (``tsunagari run`` and its pytest plugin share it).

A journal in PostgreSQL is shared by machines, so its run lock is in PostgreSQL too
(:class:`PgRunLock`): the session advisory lock ``run-lock:<vantage>``
(:mod:`drills.core.journal.advisory`), held on a connection of its own for the run's
life. Two machines drilling from the same vantage cannot run at once; different
vantages can. The server drops it with the connection, so a killed run leaves
nothing stale here either; the refused run names the holder's host and pid (the
holder's ``application_name``). :func:`run_lock` picks the lock for a journal::

    with run_lock("postgresql://tsunagari@db/drills", vantage="LGWAN"):
        ...
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from filelock import FileLock, Timeout

from drills.core.errors import HarnessError, LockBusy

__all__ = ["LockUnusable", "PgRunLock", "RunLock", "holder_of", "run_lock", "tokyo_time"]

TOKYO = ZoneInfo("Asia/Tokyo")


class LockUnusable(HarnessError):
    """The lock file cannot be made (its folder is read-only, immutable, full): exit 3.
    ``str(exc)`` is ``"日本語 / English"`` and names the file."""


def tokyo_time(epoch: float) -> str:
    """*epoch* as people here read it: ``2026-12-05 03:05:25 JST`` (Asia/Tokyo, whatever the
    machine's zone).

    >>> tokyo_time(1796407525.0)
    '2026-12-05 03:05:25 JST'
    """
    return datetime.fromtimestamp(epoch, TOKYO).strftime("%Y-%m-%d %H:%M:%S JST")


# Locks held by this process: path → (lock, depth).
_HELD: dict[str, tuple[FileLock, int]] = {}


def holder_of(path: Path) -> dict[str, Any]:
    """What the holder wrote about itself (empty if unknown)."""
    try:
        data = json.loads(Path(str(path) + ".holder").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class RunLock:
    """An exclusive, non-blocking, per-path lock on drill runs."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).absolute()
        self.held = False

    def acquire(self) -> RunLock:
        key = str(self.path)
        if key in _HELD:
            lock, depth = _HELD[key]
            _HELD[key] = (lock, depth + 1)
            self.held = True
            return self
        lock = FileLock(key, timeout=0)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock.acquire(timeout=0)
        except Timeout:
            raise self._busy() from None
        except OSError as exc:
            raise self._unusable(exc) from None
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": time.time(),
            "argv": sys.argv[:8],
        }
        try:
            Path(key + ".holder").write_text(json.dumps(info), encoding="utf-8")
        except OSError as exc:
            lock.release()
            raise self._unusable(exc) from None
        _HELD[key] = (lock, 1)
        self.held = True
        return self

    def _unusable(self, exc: OSError) -> LockUnusable:
        why = exc.strerror or type(exc).__name__
        return LockUnusable(
            f"実行ロック {self.path} を作れません（{why}）。フォルダが書き込めるか確かめてください。"
            f"訓練は実行していません / cannot make the run lock {self.path} ({why}); check that "
            "its folder can be written. No drill was run."
        )

    def _busy(self) -> LockBusy:
        who = holder_of(self.path)
        pid = who.get("pid", "?")
        since = who.get("started_at")
        at = tokyo_time(since) if isinstance(since, int | float) else "?"
        exc = LockBusy(
            f"別の訓練が実行中です（PID {pid}、{at} 開始）。今回は実行しません。ロック: {self.path}"
            f" / another drill run is in progress (pid {pid}, started {at}); this run did not start."
            f" Lock: {self.path}"
        )
        exc.holder = who  # type: ignore[attr-defined]
        return exc

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        key = str(self.path)
        lock, depth = _HELD[key]
        if depth > 1:
            _HELD[key] = (lock, depth - 1)
            return
        del _HELD[key]
        try:
            Path(key + ".holder").unlink(missing_ok=True)
        finally:
            lock.release()

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


# PostgreSQL run locks held by this process: (database, vantage) → (lock, depth).
_PG_HELD: dict[tuple[str, str], tuple[PgRunLock, int]] = {}


class PgRunLock:
    """The run lock of one vantage in a PostgreSQL journal (an advisory lock): exclusive
    across machines, non-blocking, re-entrant in this process."""

    def __init__(self, target: Any, vantage: str = "default") -> None:
        from drills.core.journal.target import parse_target

        self.target = parse_target(target) if isinstance(target, str | Path) else target
        self.vantage = vantage
        self.held = False
        self._db: Any = None
        self.path = f"{self.target.display} (vantage {vantage})"

    @property
    def key(self) -> int:
        from drills.core.journal.advisory import advisory_key

        return advisory_key("run-lock", self.vantage)

    def acquire(self) -> PgRunLock:
        import psycopg

        from drills.core.journal.postgres import connect, unusable

        slot = (self.target.display, self.vantage)
        if slot in _PG_HELD:
            lock, depth = _PG_HELD[slot]
            _PG_HELD[slot] = (lock, depth + 1)
            self.held = True
            return self
        db = connect(self.target)
        try:
            row = db.execute("SELECT pg_try_advisory_lock(?)", (self.key,)).fetchone()
            if row is None or not row[0]:
                raise self._busy(db)
        except psycopg.Error as exc:
            db.close()
            raise unusable(self.target.display, exc, writing=True) from None
        except BaseException:
            db.close()
            raise
        self._db = db
        _PG_HELD[slot] = (self, 1)
        self.held = True
        return self

    def _busy(self, db: Any) -> LockBusy:
        from drills.core.journal.advisory import holder_of_key

        found = holder_of_key(db, self.key) or {}
        name = str(found.get("application_name") or "")
        host, _, pid = name.removeprefix("tsunagari@").rpartition(":")
        started = found.get("backend_start")
        since = started.timestamp() if isinstance(started, datetime) else None
        who = {"host": host or "?", "pid": pid or "?", "started_at": since}
        at = tokyo_time(since) if since is not None else "?"
        exc = LockBusy(
            f"別の訓練が実行中です（{who['host']} の PID {who['pid']}、{at} 開始）。今回は実行しません。"
            f"ロック: {self.path} / another drill run is in progress (pid {who['pid']} on "
            f"{who['host']}, started {at}); this run did not start. Lock: {self.path}"
        )
        exc.holder = who  # type: ignore[attr-defined]
        return exc

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        slot = (self.target.display, self.vantage)
        lock, depth = _PG_HELD[slot]
        if depth > 1:
            _PG_HELD[slot] = (lock, depth - 1)
            return
        del _PG_HELD[slot]
        if lock._db is not None:
            lock._db.close()  # the server drops the advisory lock with the session
            lock._db = None

    def __enter__(self) -> PgRunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def run_lock(
    journal: str | Path, vantage: str = "default", lock: str | Path | None = None
) -> RunLock | PgRunLock:
    """The run lock for drills into *journal*: PostgreSQL's advisory lock of *vantage* for a
    ``postgresql://`` journal, else the file lock *lock* (default: ``<journal>.lock``)."""
    from drills.core.journal.target import is_url, parse_target

    if is_url(journal):
        target = parse_target(journal)
        if target.is_postgres:
            return PgRunLock(target, vantage)
        journal = target.path
    return RunLock(lock if lock is not None else Path(str(journal) + ".lock"))
