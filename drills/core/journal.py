"""The journal: every delivery, appended the moment it completes (SQLite, WAL).

Nothing recorded is lost: each delivery is its own committed transaction, so
a drill killed with SIGKILL half-way keeps every delivery completed before the
kill. The next run finds the dead run still ``running`` with a dead pid and
marks it ``incomplete``.

Besides what happened (``runs``, ``deliveries``, ``events``) it keeps what
the readers derived from it, so reading does not grow with history:
``digests`` (one per ended run, :mod:`drills.metrics.digest`) and ``totals`` (the
metrics' fold of each scenario × vantage, :mod:`drills.metrics.state`). Both
can be deleted at any time; they are made again from the rest.

*Run ids* are the run's start in Asia/Tokyo, marked ``JST``
(``20261205T030525JST-3fa2c1``): the same zone as every time an operator is
shown (scorecards, logs, the ``lock_busy`` message), so the id and the start
time printed beside it agree; the mark tells them from the older ids, which were
UTC without a mark (``20261204T180525-3fa2c1``). Both kinds are opaque keys here
(``--run`` and ``runs/<run_id>/`` take either); :func:`run_id_time` reads either.

    >>> j = Journal(":memory:")
    >>> run = j.begin_run(scenario="demo")
    >>> j.finish_run(run)
    >>> j.run(run)["status"]
    'finished'
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from drills.core.delivery import Delivery, Outcome
from drills.core.errors import JournalTooNew
from drills.core.journal_faults import JournalUnusable
from probes.redact import redact, redact_data

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Journal",
    "JournalStats",
    "JournalTooNew",
    "JournalUnusable",
    "PruneResult",
    "RunStatus",
]


class RunStatus:
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    INCOMPLETE = "incomplete"
    """The process died (SIGKILL, power) while running: found by the next run."""
    INTERRUPTED = "interrupted"
    """Stopped on purpose by SIGTERM/SIGINT (:mod:`drills.core.interrupt`): not a complete drill."""

    ENDED = (FINISHED, FAILED, INCOMPLETE, INTERRUPTED)


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


def _user_version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def _migrate(db: sqlite3.Connection, path: str) -> int:
    """Bring *db* to :data:`SCHEMA_VERSION`; refuse a file newer than the code."""
    found = _user_version(db)
    if found > SCHEMA_VERSION:
        raise JournalTooNew(path, found, SCHEMA_VERSION)
    if found == SCHEMA_VERSION:
        return found
    # One write transaction for all steps: a crash leaves the old version intact,
    # and a second process opening the file at the same time waits, then finds
    # the work done.
    db.execute("BEGIN IMMEDIATE")
    try:
        found = _user_version(db)
        if found > SCHEMA_VERSION:
            raise JournalTooNew(path, found, SCHEMA_VERSION)
        for _, step in MIGRATIONS[found:]:
            step(db)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return SCHEMA_VERSION


@dataclass(frozen=True, slots=True)
class PruneResult:
    """What :meth:`Journal.prune` removed (or, with ``dry_run``, would remove)."""

    cutoff: float
    """Runs started before this epoch time were candidates."""
    runs: int
    deliveries: int
    events: int
    digests: int
    kept_latest: int
    """Runs older than the cutoff kept because each is its scenario × vantage's latest."""
    dry_run: bool = False

    def to_data(self) -> dict[str, Any]:
        return {
            "cutoff": self.cutoff,
            "runs": self.runs,
            "deliveries": self.deliveries,
            "events": self.events,
            "digests": self.digests,
            "kept_latest": self.kept_latest,
            "dry_run": self.dry_run,
        }


@dataclass(frozen=True, slots=True)
class JournalStats:
    """The size and span of a journal (:meth:`Journal.stats`)."""

    schema_version: int
    runs_by_status: Mapping[str, int] = field(default_factory=dict)
    deliveries: int = 0
    events: int = 0
    digests: int = 0
    file_bytes: int = 0
    """The database file plus its write-ahead log."""
    oldest_run_at: float | None = None
    newest_run_at: float | None = None

    @property
    def runs(self) -> int:
        return sum(self.runs_by_status.values())

    def to_data(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "runs": self.runs,
            "runs_by_status": dict(self.runs_by_status),
            "deliveries": self.deliveries,
            "events": self.events,
            "digests": self.digests,
            "file_bytes": self.file_bytes,
            "oldest_run_at": self.oldest_run_at,
            "newest_run_at": self.newest_run_at,
        }


_DELIVERY_COLUMNS = (
    "run_id step municipality_code municipality_name channel_id kind recipient token outcome "
    "reason sent_at accepted_at delivered_at latency_s accept_latency_s error_bound_s "
    "slo_latency_s throttled vantage scenario extra evidence"
).split()


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


TOKYO = ZoneInfo("Asia/Tokyo")
RUN_ID_ZONE = "JST"


def new_run_id(now: float | None = None) -> str:
    """A new run id: the start in Asia/Tokyo (as every time shown to people), marked ``JST``.

    >>> new_run_id(1796407525.0)[:-7]
    '20261205T030525JST'

    Ids written before were UTC without a mark (``20261204T180525-3fa2c1``); both are
    opaque keys to the journal, and :func:`run_id_time` reads either.
    """
    at = datetime.fromtimestamp(time.time() if now is None else now, TOKYO)
    return at.strftime("%Y%m%dT%H%M%S") + RUN_ID_ZONE + "-" + secrets.token_hex(3)


def run_id_time(run_id: str) -> datetime | None:
    """When *run_id* was made (aware, Asia/Tokyo), from either form of id; None if neither.

    >>> str(run_id_time("20261205T030525JST-3fa2c1")), str(run_id_time("20261204T180525-3fa2c1"))
    ('2026-12-05 03:05:25+09:00', '2026-12-05 03:05:25+09:00')
    """
    stamp = run_id.split("-", 1)[0]
    zone = TOKYO if stamp.endswith(RUN_ID_ZONE) else UTC
    try:
        at = datetime.strptime(stamp.removesuffix(RUN_ID_ZONE), "%Y%m%dT%H%M%S")
    except ValueError:
        return None
    return at.replace(tzinfo=zone).astimezone(TOKYO)


class Journal:
    """An append-only record of runs, deliveries and step events.

    ``Journal(path, read_only=True)`` is for readers (``scorecard``, ``serve``): it opens
    the file with SQLite's ``mode=ro`` (no WAL pragma, no migration, nothing written —
    a journal on a read-only mount or owned by another user can be read) and keeps
    derived ``digests``/``totals`` in this process instead of the file, so a long-lived
    reader (``serve``) still does not recompute them on every read. A journal older
    than this code is brought up to date once (that writes).
    A file that cannot be used — a folder, not SQLite, read-only for a writer, a full
    disk — raises :class:`JournalUnusable` naming it, never a bare ``sqlite3`` error.
    """

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        self.path = str(path)
        self.read_only = read_only and self.path != ":memory:"
        # Read-only: derived rows are kept in this process instead of the file.
        self._memo: dict[tuple[str, ...], tuple[str, dict[str, Any]]] = {}
        try:
            self.db = self._connect()
        except (sqlite3.Error, OSError) as exc:
            raise JournalUnusable.from_error(self.path, exc, writing=not self.read_only) from None
        try:
            if self.read_only:
                self.schema_version = _user_version(self.db)
                if self.schema_version > SCHEMA_VERSION:
                    raise JournalTooNew(self.path, self.schema_version, SCHEMA_VERSION)
                if self.schema_version < SCHEMA_VERSION:  # older: brought up to date once
                    self.db.close()
                    Journal(self.path).close()
                    self.db = self._connect()
                    self.schema_version = _user_version(self.db)
                self.db.execute("SELECT COUNT(*) FROM runs").fetchone()
            else:
                self.schema_version = _migrate(self.db, self.path)
        except sqlite3.Error as exc:
            self.db.close()
            raise JournalUnusable.from_error(self.path, exc, writing=not self.read_only) from None
        except BaseException:
            self.db.close()
            raise

    def _connect(self) -> sqlite3.Connection:
        if self.path == ":memory:":
            db = sqlite3.connect(self.path, isolation_level=None)
        elif self.read_only:
            if Path(self.path).is_dir():
                raise IsADirectoryError(self.path)
            if not Path(self.path).is_file():
                raise FileNotFoundError(self.path)
            uri = Path(self.path).absolute().as_uri()
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
            if Path(self.path).is_dir():
                raise IsADirectoryError(self.path)
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        db.row_factory = sqlite3.Row
        try:
            if self.path != ":memory:" and not self.read_only:
                db.execute("PRAGMA journal_mode=WAL")
            if not self.read_only:
                # NORMAL + WAL: a committed row survives the process being killed.
                db.execute("PRAGMA synchronous=NORMAL")
        except BaseException:
            db.close()
            raise
        return db

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writing

    def mark_dead_runs(self) -> list[str]:
        """Mark runs left ``running`` by a dead process as ``incomplete``."""
        host = socket.gethostname()
        dead = [
            row["run_id"]
            for row in self.db.execute(
                "SELECT run_id, pid, host FROM runs WHERE status = ?", (RunStatus.RUNNING,)
            )
            if row["host"] == host and not _pid_alive(row["pid"])
        ]
        for run_id in dead:
            last = self.db.execute(
                "SELECT MAX(COALESCE(delivered_at, accepted_at, sent_at)) FROM deliveries WHERE run_id = ?",
                (run_id,),
            ).fetchone()[0]
            self.db.execute(
                "UPDATE runs SET status = ?, finished_at = ? WHERE run_id = ?",
                (RunStatus.INCOMPLETE, last, run_id),
            )
        return dead

    def begin_run(
        self,
        scenario: str = "",
        vantage: str = "default",
        meta: dict[str, Any] | None = None,
        run_id: str | None = None,
    ) -> str:
        self.mark_dead_runs()
        run_id = run_id or new_run_id()
        self.db.execute(
            "INSERT INTO runs (run_id, scenario, vantage, started_at, status, pid, host, meta) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id,
                scenario,
                vantage,
                time.time(),
                RunStatus.RUNNING,
                os.getpid(),
                socket.gethostname(),
                json.dumps(redact_data(meta or {}), ensure_ascii=False),
            ),
        )
        return run_id

    def finish_run(self, run_id: str, status: str = RunStatus.FINISHED) -> None:
        self.db.execute(
            "UPDATE runs SET status = ?, finished_at = ? WHERE run_id = ?",
            (status, time.time(), run_id),
        )

    def record(self, delivery: Delivery) -> None:
        """Append one delivery and commit it (autocommit: one transaction)."""
        data = redact_data(delivery.to_dict())  # no secret is ever journalled
        data["extra"] = json.dumps(data["extra"], ensure_ascii=False, default=str)
        self.db.execute(
            f"INSERT INTO deliveries ({', '.join(_DELIVERY_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(_DELIVERY_COLUMNS))})",
            [data[c] for c in _DELIVERY_COLUMNS],
        )

    def record_event(self, run_id: str, kind: str, data: dict[str, Any]) -> None:
        """Append a step result that is not a delivery (roll call, surge stats, …)."""
        self.db.execute(
            "INSERT INTO events (run_id, at, kind, data) VALUES (?, ?, ?, ?)",
            (
                run_id,
                time.time(),
                kind,
                redact(json.dumps(redact_data(data), ensure_ascii=False, default=str)),
            ),
        )

    # ------------------------------------------------------------------ reading

    def run(self, run_id: str) -> dict[str, Any]:
        row = self.db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise KeyError(run_id)
        out = dict(row)
        out["meta"] = json.loads(out["meta"])
        return out

    def runs(
        self,
        scenario: str | None = None,
        since: float | None = None,
        until: float | None = None,
        status: str | None = None,
        *,
        vantage: str | None = None,
        last: int | None = None,
    ) -> list[dict[str, Any]]:
        """Runs, oldest first, optionally filtered; with *last*, only the newest *last* of them
        (read newest first with a LIMIT, so the cost does not grow with the history)."""
        sql = "SELECT * FROM runs WHERE 1=1"
        args: list[Any] = []
        for column, op, value in (
            ("scenario", "=", scenario),
            ("vantage", "=", vantage),
            ("started_at", ">=", since),
            ("started_at", "<", until),
            ("status", "=", status),
        ):
            if value is not None:
                sql += f" AND {column} {op} ?"
                args.append(value)
        if last is not None:
            newest = self.db.execute(
                sql + " ORDER BY started_at DESC, rowid DESC LIMIT ?", [*args, max(0, last)]
            ).fetchall()
            rows = newest[::-1]
        else:
            rows = self.db.execute(sql + " ORDER BY started_at, rowid", args).fetchall()
        return [{**dict(r), "meta": json.loads(r["meta"])} for r in rows]

    def latest_run(self, scenario: str | None = None) -> dict[str, Any] | None:
        runs = self.runs(scenario=scenario, last=1)
        return runs[-1] if runs else None

    def previous_run(self, run_id: str) -> dict[str, Any] | None:
        """The run of the same scenario (and vantage) before *run_id*, if any."""
        this = self.run(run_id)
        row = self.db.execute(
            "SELECT * FROM runs WHERE scenario = ? AND vantage = ? AND started_at < ? "
            "AND run_id != ? ORDER BY started_at DESC LIMIT 1",
            (this["scenario"], this["vantage"], this["started_at"], run_id),
        ).fetchone()
        return {**dict(row), "meta": json.loads(row["meta"])} if row else None

    def deliveries(self, run_id: str | None = None) -> list[Delivery]:
        sql = "SELECT * FROM deliveries"
        args: tuple[Any, ...] = ()
        if run_id is not None:
            sql += " WHERE run_id = ?"
            args = (run_id,)
        return [self._delivery(r) for r in self.db.execute(sql + " ORDER BY id", args)]

    def iter_deliveries(self, run_ids: list[str]) -> Iterator[Delivery]:
        for run_id in run_ids:
            yield from self.deliveries(run_id)

    def events(self, run_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM events WHERE run_id = ?", [run_id]
        if kind is not None:
            sql += " AND kind = ?"
            args.append(kind)
        return [
            {**dict(r), "data": json.loads(r["data"])}
            for r in self.db.execute(sql + " ORDER BY id", args)
        ]

    # ------------------------------------------------------------------ digests

    def put_digest(self, run_id: str, model_version: str, data: dict[str, Any]) -> None:
        """Store (or replace) the digest of *run_id*, computed by scoring model *model_version*
        (not when read-only: it is made again on the next read)."""
        if self.read_only:
            self._memo[("digest", run_id)] = (model_version, data)
            return
        self.db.execute(
            "INSERT OR REPLACE INTO digests (run_id, model_version, data, at) VALUES (?, ?, ?, ?)",
            (run_id, model_version, json.dumps(data, ensure_ascii=False), time.time()),
        )

    def digest(self, run_id: str) -> tuple[str, dict[str, Any]] | None:
        """``(model_version, data)`` of the stored digest of *run_id*, or None."""
        if ("digest", run_id) in self._memo:
            return self._memo[("digest", run_id)]
        row = self.db.execute(
            "SELECT model_version, data FROM digests WHERE run_id = ?", (run_id,)
        ).fetchone()
        if row is None:
            return None
        return str(row["model_version"]), json.loads(row["data"])

    def put_totals(
        self, scenario: str, vantage: str, model_version: str, data: dict[str, Any]
    ) -> None:
        """Store (or replace) the metrics' fold of *scenario* × *vantage*
        (:class:`drills.metrics.state.History`): one row per scenario × vantage (not when
        read-only)."""
        if self.read_only:
            self._memo[("totals", scenario, vantage)] = (model_version, data)
            return
        self.db.execute(
            "INSERT OR REPLACE INTO totals (scenario, vantage, model_version, data, at)"
            " VALUES (?, ?, ?, ?, ?)",
            (scenario, vantage, model_version, json.dumps(data, ensure_ascii=False), time.time()),
        )

    def totals(self, scenario: str, vantage: str) -> tuple[str, dict[str, Any]] | None:
        """``(model_version, data)`` of the stored fold of *scenario* × *vantage*, or None."""
        if ("totals", scenario, vantage) in self._memo:
            return self._memo[("totals", scenario, vantage)]
        row = self.db.execute(
            "SELECT model_version, data FROM totals WHERE scenario = ? AND vantage = ?",
            (scenario, vantage),
        ).fetchone()
        if row is None:
            return None
        return str(row["model_version"]), json.loads(row["data"])

    def delete_digest(self, run_id: str) -> None:
        """Forget the digest of *run_id* (it is recomputed on the next read)."""
        self._memo.pop(("digest", run_id), None)
        if self.read_only:
            return
        self.db.execute("DELETE FROM digests WHERE run_id = ?", (run_id,))

    # ------------------------------------------------------------------ upkeep

    def prune(
        self,
        older_than_s: float,
        now: float | None = None,
        *,
        dry_run: bool = False,
    ) -> PruneResult:
        """Delete runs started more than *older_than_s* ago, with their deliveries,
        events and digests, in one transaction.

        The latest run of every scenario × vantage is always kept, however old,
        so the scorecard and the metrics of a drill held once a year still have
        something to show. Runs still ``running`` are never removed. The file
        does not shrink until :meth:`vacuum`.

            >>> j = Journal(":memory:")
            >>> j.prune(400 * 86400).runs
            0
        """
        cutoff = (time.time() if now is None else now) - older_than_s
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.execute("DROP TABLE IF EXISTS temp.doomed")
            # Rank 1 is the latest run of its scenario × vantage: never a candidate.
            self.db.execute(
                "CREATE TEMP TABLE doomed AS SELECT run_id, rank FROM ("
                "  SELECT run_id, started_at, status, ROW_NUMBER() OVER ("
                "    PARTITION BY scenario, vantage ORDER BY started_at DESC, rowid DESC"
                "  ) AS rank FROM runs"
                ") WHERE started_at < ? AND status != ?",
                (cutoff, RunStatus.RUNNING),
            )
            kept_latest = self._count("SELECT COUNT(*) FROM temp.doomed WHERE rank = 1")
            self.db.execute("DELETE FROM temp.doomed WHERE rank = 1")
            counts = {
                table: self._count(
                    f"SELECT COUNT(*) FROM {table} WHERE run_id IN (SELECT run_id FROM temp.doomed)"
                )
                for table in ("runs", "deliveries", "events", "digests")
            }
            if not dry_run:
                for table in ("deliveries", "events", "digests", "runs"):
                    self.db.execute(
                        f"DELETE FROM {table} WHERE run_id IN (SELECT run_id FROM temp.doomed)"
                    )
            self.db.execute("DROP TABLE temp.doomed")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        return PruneResult(cutoff=cutoff, kept_latest=kept_latest, dry_run=dry_run, **counts)

    def vacuum(self) -> None:
        """Give the space of deleted rows back to the file system (rewrites the file)."""
        self.db.execute("VACUUM")
        if self.path != ":memory:":
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def stats(self) -> JournalStats:
        """Counts, span and size of the journal."""
        by_status = {
            str(row[0]): int(row[1])
            for row in self.db.execute(
                "SELECT status, COUNT(*) FROM runs GROUP BY status ORDER BY status"
            )
        }
        oldest, newest = self.db.execute(
            "SELECT MIN(started_at), MAX(started_at) FROM runs"
        ).fetchone()
        size = 0
        if self.path != ":memory:":
            for suffix in ("", "-wal"):
                try:
                    size += os.path.getsize(self.path + suffix)
                except OSError:
                    pass
        return JournalStats(
            schema_version=_user_version(self.db),
            runs_by_status=by_status,
            deliveries=self._count("SELECT COUNT(*) FROM deliveries"),
            events=self._count("SELECT COUNT(*) FROM events"),
            digests=self._count("SELECT COUNT(*) FROM digests"),
            file_bytes=size,
            oldest_run_at=oldest,
            newest_run_at=newest,
        )

    def _count(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        return int(self.db.execute(sql, args).fetchone()[0])

    @staticmethod
    def _delivery(row: sqlite3.Row) -> Delivery:
        data = {c: row[c] for c in _DELIVERY_COLUMNS}
        data["outcome"] = Outcome(data["outcome"])
        data["extra"] = json.loads(data["extra"])
        return Delivery(**data)
