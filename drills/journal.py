"""The journal: every delivery, appended the moment it completes (SQLite, WAL).

Nothing recorded is lost: each delivery is its own committed transaction, so
a drill killed with SIGKILL half-way keeps every delivery completed before the
kill. The next run finds the dead run still ``running`` with a dead pid and
marks it ``incomplete``.

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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from drills.delivery import Delivery, Outcome

__all__ = ["Journal", "RunStatus"]


class RunStatus:
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    INCOMPLETE = "incomplete"


_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id      TEXT PRIMARY KEY,
    scenario    TEXT NOT NULL DEFAULT '',
    vantage     TEXT NOT NULL DEFAULT 'default',
    started_at  REAL NOT NULL,
    finished_at REAL,
    status      TEXT NOT NULL,
    pid         INTEGER,
    host        TEXT,
    meta        TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS deliveries (
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
    extra             TEXT NOT NULL DEFAULT '{}',
    evidence          TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_run ON deliveries(run_id);
CREATE INDEX IF NOT EXISTS runs_scenario ON runs(scenario, started_at);
CREATE TABLE IF NOT EXISTS events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id  TEXT NOT NULL REFERENCES runs(run_id),
    at      REAL NOT NULL,
    kind    TEXT NOT NULL,
    data    TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS events_run ON events(run_id, kind);
"""

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


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


class Journal:
    """An append-only record of runs, deliveries and step events."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        self.db.row_factory = sqlite3.Row
        if self.path != ":memory:":
            self.db.execute("PRAGMA journal_mode=WAL")
        # NORMAL + WAL: a committed row survives the process being killed.
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        columns = {r["name"] for r in self.db.execute("PRAGMA table_info(deliveries)")}
        if "evidence" not in columns:  # a journal from before evidence levels
            self.db.execute("ALTER TABLE deliveries ADD COLUMN evidence TEXT")

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
                json.dumps(meta or {}, ensure_ascii=False),
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
        data = delivery.to_dict()
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
            (run_id, time.time(), kind, json.dumps(data, ensure_ascii=False, default=str)),
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
    ) -> list[dict[str, Any]]:
        """Runs, oldest first, optionally filtered."""
        sql = "SELECT * FROM runs WHERE 1=1"
        args: list[Any] = []
        for column, op, value in (
            ("scenario", "=", scenario),
            ("started_at", ">=", since),
            ("started_at", "<", until),
            ("status", "=", status),
        ):
            if value is not None:
                sql += f" AND {column} {op} ?"
                args.append(value)
        rows = self.db.execute(sql + " ORDER BY started_at, rowid", args).fetchall()
        return [{**dict(r), "meta": json.loads(r["meta"])} for r in rows]

    def latest_run(self, scenario: str | None = None) -> dict[str, Any] | None:
        runs = self.runs(scenario=scenario)
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

    @staticmethod
    def _delivery(row: sqlite3.Row) -> Delivery:
        data = {c: row[c] for c in _DELIVERY_COLUMNS}
        data["outcome"] = Outcome(data["outcome"])
        data["extra"] = json.loads(data["extra"])
        return Delivery(**data)
