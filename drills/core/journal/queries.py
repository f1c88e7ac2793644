"""The journal's answers to the read model (:mod:`drills.metrics.digest`,
:mod:`drills.metrics.state`): one SQL statement each, written once for both databases.

:class:`~drills.core.journal.Journal` inherits them; the metrics never write SQL, so
they read a SQLite file and a PostgreSQL database alike. The insertion order of runs
(SQLite's ``rowid``) is the dialect's (:mod:`drills.core.journal.dialect`), returned as
``rowid``.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from drills.core.journal.dialect import SQLITE, Dialect
from drills.core.journal.runs import RunStatus
from drills.core.journal.schema import RUN_COLUMNS

__all__ = ["ReadModelQueries"]

_RUNS = ", ".join(RUN_COLUMNS)


class ReadModelQueries:
    """The queries; *db* and *dialect* are the journal's."""

    db: sqlite3.Connection
    dialect: Dialect = SQLITE

    def revision(self, run_id: str) -> dict[str, list[Any]]:
        """How many deliveries and events *run_id* has, and the last of each's id: what a
        stored digest was made from (:mod:`drills.metrics.digest`)."""
        out: dict[str, list[Any]] = {}
        for table in ("deliveries", "events"):
            row = self.db.execute(
                f"SELECT COUNT(*), MAX(id) FROM {table} WHERE run_id = ?", (run_id,)
            ).fetchone()
            out[table] = [int(row[0]), row[1]]
        return out

    def last_event_at(self, run_id: str) -> float | None:
        """When the last event of *run_id* was written (None: none)."""
        at = self.db.execute("SELECT MAX(at) FROM events WHERE run_id = ?", (run_id,)).fetchone()[0]
        return None if at is None else float(at)

    def run_municipalities(self, run_id: str) -> set[str]:
        """Codes of the municipalities with a delivery in *run_id* (one indexed query)."""
        rows = self.db.execute(
            "SELECT DISTINCT municipality_code FROM deliveries WHERE run_id = ?", (run_id,)
        ).fetchall()
        return {str(r[0]) for r in rows}

    def run_starts(self, until: float) -> list[tuple[str, float]]:
        """``(run_id, started_at)`` of the runs started at or before *until*, newest first."""
        rows = self.db.execute(
            "SELECT run_id, started_at FROM runs WHERE started_at <= ? ORDER BY started_at DESC",
            (until,),
        ).fetchall()
        return [(str(r[0]), float(r[1])) for r in rows]

    def scenario_vantages(self) -> list[tuple[str, str]]:
        """Every scenario × vantage with a run, sorted."""
        rows = self.db.execute(
            "SELECT DISTINCT scenario, vantage FROM runs ORDER BY scenario, vantage"
        ).fetchall()
        return [(str(r[0]), str(r[1])) for r in rows]

    def group_runs(
        self,
        scenario: str,
        vantage: str,
        *,
        run_id: str | None = None,
        status: str | None = None,
        after: tuple[float, int] | None = None,
        newest_first: bool = False,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Runs of *scenario* × *vantage* in the order they started (ties: as inserted),
        each with ``rowid`` (that insertion order) and its ``meta`` read; only *run_id*,
        only of *status*, only after the run at ``(started_at, rowid)`` *after*."""
        rowid = self.dialect.rowid
        sql = f"SELECT {rowid} AS rowid, {_RUNS} FROM runs WHERE scenario = ? AND vantage = ?"
        args: list[Any] = [scenario, vantage]
        if run_id is not None:
            sql += " AND run_id = ?"
            args.append(run_id)
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        if after is not None:
            sql += f" AND (started_at > ? OR (started_at = ? AND {rowid} > ?))"
            args += [after[0], after[0], after[1]]
        order = " DESC" if newest_first else ""
        sql += f" ORDER BY started_at{order}, {rowid}{order}"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        rows = self.db.execute(sql, args).fetchall()
        return [{**dict(r), "meta": json.loads(r["meta"])} for r in rows]

    def group_fingerprint(self, scenario: str, vantage: str, head: Any) -> list[Any]:
        """The runs of *scenario* × *vantage* up to *head* (a :meth:`group_runs` row),
        counted: ``[runs, Σ finished_at, finished, running, incomplete]`` — any change
        among them changes it (:mod:`drills.metrics.state`)."""
        rowid = self.dialect.rowid
        count = "SUM(CASE WHEN status = ? THEN 1 ELSE 0 END)"
        row = self.db.execute(
            f"SELECT COUNT(*), COALESCE(SUM(COALESCE(finished_at, 0)), 0), {count}, {count},"
            f" {count} FROM runs WHERE scenario = ? AND vantage = ?"
            f" AND (started_at < ? OR (started_at = ? AND {rowid} <= ?))",
            (
                RunStatus.FINISHED,
                RunStatus.RUNNING,
                RunStatus.INCOMPLETE,
                scenario,
                vantage,
                head["started_at"],
                head["started_at"],
                head["rowid"],
            ),
        ).fetchone()
        return [int(row[0]), float(row[1]), int(row[2] or 0), int(row[3] or 0), int(row[4] or 0)]
