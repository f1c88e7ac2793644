"""The journal: every delivery, appended as it completes (SQLite, WAL).

Nothing acknowledged is lost. :meth:`Journal.record` commits one delivery as
its own transaction; a drill's runner writes through :class:`GroupCommit`
(:mod:`drills.core.journal.group`), which commits the deliveries that complete
within 5 ms together and tells nobody about a delivery (step result, progress,
metrics) before its transaction is committed. A drill killed with SIGKILL
half-way keeps every delivery it had acknowledged — all but those completed in
the last 5 ms. The next run finds the dead run still ``running`` with a dead
pid and marks it ``incomplete``.

Besides what happened (``runs``, ``deliveries``, ``events``) it keeps what
the readers derived from it, so reading does not grow with history:
``digests`` (one per ended run, :mod:`drills.metrics.digest`) and ``totals`` (the
metrics' fold of each scenario × vantage, :mod:`drills.metrics.state`). Both
can be deleted at any time; they are made again from the rest.

:class:`Journal` is the interface every writer and reader uses; its parts are
modules of this package, and every name below is imported from here::

    drills/core/journal/
      __init__.py  Journal: writing, reading, digests, upkeep; open_journal(path or URL)
      group.py     GroupCommit: a drill's deliveries, one transaction per 5 ms
      target.py    --journal: a file, sqlite:///…, or postgresql://… (password references)
      dialect.py   what SQLite and PostgreSQL spell differently (placeholders, rowid)
      postgres.py  PostgresJournal: the same interface on PostgreSQL (psycopg 3)
      advisory.py  PostgreSQL advisory lock keys: live runs, the run lock of a vantage
      queries.py   the read model's queries (drills.metrics): revisions, groups, fingerprints
      runs.py      run ids (Asia/Tokyo, marked JST), RunStatus, is a run's process alive
      schema.py    the tables, MIGRATIONS v1… (SQLite and PostgreSQL), SCHEMA_VERSION
      sqlite.py    opening a file: WAL for writers, mode=ro for readers, migrated
      upkeep.py    PruneResult, JournalStats
      faults.py    JournalUnusable: why a file cannot be used, in plain words

:func:`open_journal` chooses the backend from ``--journal``: a path (or ``sqlite:///…``)
is SQLite, as ``Journal(path)``; ``postgresql://…`` is ``PostgresJournal``. Nothing
above this package knows which it has.

    >>> j = Journal(":memory:")
    >>> run = j.begin_run(scenario="demo")
    >>> j.finish_run(run)
    >>> j.run(run)["status"]
    'finished'
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from drills.core.delivery import Delivery, Outcome
from drills.core.errors import JournalTooNew
from drills.core.journal.faults import JournalUnusable
from drills.core.journal.group import GroupCommit
from drills.core.journal.queries import ReadModelQueries
from drills.core.journal.rows import delivery_row
from drills.core.journal.runs import RunStatus, new_run_id, pid_alive, run_id_time
from drills.core.journal.schema import (
    DELIVERY_COLUMNS,
    MIGRATIONS,
    RUN_COLUMNS,
    SCHEMA_VERSION,
    user_version,
)
from drills.core.journal.sqlite import open_database
from drills.core.journal.target import JournalTarget, parse_target
from drills.core.journal.upkeep import JournalStats, PruneResult
from probes.redact import redact, redact_data

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "GroupCommit",
    "Journal",
    "JournalStats",
    "JournalTooNew",
    "JournalUnusable",
    "PruneResult",
    "RunStatus",
    "database_errors",
    "local_path",
    "new_run_id",
    "open_journal",
    "run_id_time",
]

_RUNS = ", ".join(RUN_COLUMNS)

# The name :mod:`drills.metrics.digest` imports (``_pid_alive``) from before the split.
_pid_alive = pid_alive

_INSERT_DELIVERY = (
    f"INSERT INTO deliveries ({', '.join(DELIVERY_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(DELIVERY_COLUMNS))})"
)


# Kept under its old name: a row with no secret in it (drills.core.journal.rows).
_row = delivery_row


class Journal(ReadModelQueries):
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
        self.target = JournalTarget("sqlite", display=self.path, path=self.path)
        """Where this journal lives, as :func:`open_journal` takes it (a worker reopens it)."""
        self.read_only = read_only and self.path != ":memory:"
        # Read-only: derived rows are kept in this process instead of the file.
        self._memo: dict[tuple[str, ...], tuple[str, dict[str, Any]]] = {}
        self.db, self.schema_version = open_database(self.path, read_only=self.read_only)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writing

    def run_alive(self, run: Any) -> bool:
        """Is *run* (a runs row) running, its process alive? SQLite: a run of another host
        is taken to be alive; on this host, its pid must be."""
        if run["status"] != RunStatus.RUNNING:
            return False
        return run["host"] != socket.gethostname() or pid_alive(run["pid"])

    def _claim(self, run_id: str) -> None:
        """Before a run is inserted: mark it as this process's (PostgreSQL: a session lock)."""

    def _release(self, run_id: str) -> None:
        """After a run ended: let go of what :meth:`_claim` took."""

    def mark_dead_runs(self) -> list[str]:
        """Mark runs left ``running`` by a dead process as ``incomplete``."""
        dead = [
            row["run_id"]
            for row in self.db.execute(
                "SELECT run_id, status, pid, host FROM runs WHERE status = ?", (RunStatus.RUNNING,)
            ).fetchall()
            if not self.run_alive(row)
        ]
        for run_id in dead:
            last = self.db.execute(
                "SELECT MAX(COALESCE(delivered_at, accepted_at, sent_at)) FROM deliveries WHERE run_id = ?",
                (run_id,),
            ).fetchone()[0]
            self.db.execute(
                "UPDATE runs SET status = ?, finished_at = ? WHERE run_id = ? AND status = ?",
                (RunStatus.INCOMPLETE, last, run_id, RunStatus.RUNNING),
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
        self._claim(run_id)
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
        self._release(run_id)

    def record(self, delivery: Delivery) -> None:
        """Append one delivery and commit it (autocommit: one transaction)."""
        self.db.execute(_INSERT_DELIVERY, _row(delivery))

    def record_many(self, deliveries: list[Delivery]) -> None:
        """Append *deliveries* in one transaction (all or none; :class:`GroupCommit`)."""
        rows = [_row(d) for d in deliveries]
        with self.transaction():
            self.db.executemany(_INSERT_DELIVERY, rows)

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
        row = self.db.execute(f"SELECT {_RUNS} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
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
        sql, rowid = f"SELECT {_RUNS} FROM runs WHERE 1=1", self.dialect.rowid
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
                sql + f" ORDER BY started_at DESC, {rowid} DESC LIMIT ?", [*args, max(0, last)]
            ).fetchall()
            rows = newest[::-1]
        else:
            rows = self.db.execute(sql + f" ORDER BY started_at, {rowid}", args).fetchall()
        return [{**dict(r), "meta": json.loads(r["meta"])} for r in rows]

    def latest_run(self, scenario: str | None = None) -> dict[str, Any] | None:
        runs = self.runs(scenario=scenario, last=1)
        return runs[-1] if runs else None

    def previous_run(self, run_id: str) -> dict[str, Any] | None:
        """The run of the same scenario (and vantage) before *run_id*, if any."""
        this = self.run(run_id)
        row = self.db.execute(
            f"SELECT {_RUNS} FROM runs WHERE scenario = ? AND vantage = ? AND started_at < ? "
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
            self.dialect.upsert("digests", ("run_id", "model_version", "data", "at"), ("run_id",)),
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
            self.dialect.upsert(
                "totals",
                ("scenario", "vantage", "model_version", "data", "at"),
                ("scenario", "vantage"),
            ),
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
        with self.transaction():
            self.db.execute("DROP TABLE IF EXISTS doomed")  # a temp table: this session's
            # Rank 1 is the latest run of its scenario × vantage: never a candidate.
            self.db.execute(
                "CREATE TEMP TABLE doomed AS SELECT run_id, rank FROM ("
                "  SELECT run_id, started_at, status, ROW_NUMBER() OVER ("
                f"    PARTITION BY scenario, vantage ORDER BY started_at DESC,"
                f" {self.dialect.rowid} DESC"
                "  ) AS rank FROM runs"
                ") ranked WHERE started_at < ? AND status != ?",
                (cutoff, RunStatus.RUNNING),
            )
            kept_latest = self._count("SELECT COUNT(*) FROM doomed WHERE rank = 1")
            self.db.execute("DELETE FROM doomed WHERE rank = 1")
            counts = {
                table: self._count(
                    f"SELECT COUNT(*) FROM {table} WHERE run_id IN (SELECT run_id FROM doomed)"
                )
                for table in ("runs", "deliveries", "events", "digests")
            }
            if not dry_run:
                for table in ("deliveries", "events", "digests", "runs"):
                    self.db.execute(
                        f"DELETE FROM {table} WHERE run_id IN (SELECT run_id FROM doomed)"
                    )
            self.db.execute("DROP TABLE doomed")
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
            schema_version=user_version(self.db),
            runs_by_status=by_status,
            deliveries=self._count("SELECT COUNT(*) FROM deliveries"),
            events=self._count("SELECT COUNT(*) FROM events"),
            digests=self._count("SELECT COUNT(*) FROM digests"),
            file_bytes=size,
            oldest_run_at=oldest,
            newest_run_at=newest,
        )

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """For a reader: every read inside sees the journal at one moment, however many
        runners write meanwhile (a scorecard, a scrape). A writer reads as it writes."""
        if not self.read_only or self.db.in_transaction:
            yield
            return
        self.db.execute("BEGIN")  # deferred: a read snapshot of the WAL
        try:
            yield
        finally:
            self.db.execute("COMMIT")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction around the statements inside (otherwise each commits alone)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def insert_rows(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        """Insert *rows* (values of *columns*, in order) into *table* as they are
        (``journal copy``: ids and times kept)."""
        marks = ", ".join("?" * len(columns))
        self.db.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)

    def _count(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        return int(self.db.execute(sql, args).fetchone()[0])

    @staticmethod
    def _delivery(row: Any) -> Delivery:
        data = {c: row[c] for c in DELIVERY_COLUMNS}
        data["outcome"] = Outcome(data["outcome"])
        data["extra"] = json.loads(data["extra"])
        return Delivery(**data)


def open_journal(target: str | Path | JournalTarget, *, read_only: bool = False) -> Journal:
    """The journal at *target*: a path or ``sqlite:///…`` (SQLite), or ``postgresql://…``
    (:class:`~drills.core.journal.postgres.PostgresJournal`), as ``--journal`` gives it.

    >>> open_journal("sqlite:///:memory:").dialect.name
    'sqlite'
    """
    parsed = target if isinstance(target, JournalTarget) else parse_target(target)
    if parsed.is_postgres:
        from drills.core.journal.postgres import PostgresJournal

        return PostgresJournal(parsed, read_only=read_only)
    return Journal(parsed.path, read_only=read_only)


def database_errors() -> tuple[type[BaseException], ...]:
    """What a journal's database raises when a write or read fails (sqlite3's, psycopg's
    when a PostgreSQL journal is in use): for callers that turn them into plain words."""
    import sys

    errors: tuple[type[BaseException], ...] = (sqlite3.Error,)
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None:
        errors += (psycopg.Error,)
    return errors


def local_path(target: str | Path) -> Path | None:
    """The file of a SQLite journal (to say "no journal at …" before opening it), or None
    for PostgreSQL (whether it is there is known by connecting).

    >>> local_path("postgresql://db/drills") is None, local_path("sqlite:///out/j.sqlite")
    (True, PosixPath('out/j.sqlite'))
    """
    if isinstance(target, Path):
        return target
    if "://" in target and not target.lower().startswith("sqlite:"):
        return None
    path = parse_target(target).path
    return None if path == ":memory:" else Path(path)
