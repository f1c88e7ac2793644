"""The journal in PostgreSQL (psycopg 3, synchronous): many machines, one journal.

:class:`PostgresJournal` is :class:`~drills.core.journal.Journal` with a PostgreSQL
connection: the same methods, the same SQL (``?`` placeholders turned into psycopg's
by :mod:`drills.core.journal.dialect`), the same guarantees.

**Each delivery is committed as it completes**: the connection is in autocommit, so
every ``INSERT`` is its own transaction, as on SQLite.

**Dead runs, on any machine: PostgreSQL session state, not a lease.** A run's journal
connection takes the session advisory lock ``run:<run_id>``
(:mod:`drills.core.journal.advisory`) *before* it inserts the run, and holds it until
the run ends or the connection closes. When the process dies — SIGKILL, a crash, the
power — its connection goes, and the server drops the lock with it. A run still
``running`` whose lock nobody holds is therefore dead, whichever machine ran it:
the next run anywhere (:meth:`Journal.mark_dead_runs`) marks it ``incomplete``, and
readers (:meth:`PostgresJournal.run_alive`) stop counting it as running. Chosen over
a heartbeat because it is exact and needs no clock: a lease must guess how late a
heartbeat may be (a stalled but living run would be declared dead, or a dead one
counted alive for N intervals), needs a writer thread, and compares clocks of
different machines. What it relies on is the server noticing the lost connection:
at once for a killed process (the kernel closes its socket); for a machine that
loses power or network, after the server's TCP keepalive
(``tcp_keepalives_idle`` and friends in ``postgresql.conf``). SQLite keeps host + pid:
one file is on one machine.

**Schema**: the same ordered migrations as SQLite (:mod:`drills.core.journal.schema`,
PostgreSQL's statements), the version in the one-row table ``tsunagari_schema``,
applied on open in one transaction under the advisory lock ``migrate``, so two
machines opening an old database at once migrate it once. A database newer than
this code is refused (:class:`~drills.core.errors.JournalTooNew`).

**Readers** (``read_only=True``: ``scorecard``, ``serve``) run every statement in a
read-only transaction; :meth:`PostgresJournal.snapshot` (a scorecard, one scrape) is one
``REPEATABLE READ`` transaction, one consistent view while runners write. A reader whose
connection the server dropped (a restart) connects again between transactions; a writer
does not (its run's session lock went with the connection: the run is over).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from drills.core.errors import JournalTooNew
from drills.core.journal import Journal
from drills.core.journal.advisory import MIGRATE_KEY, advisory_key, halves, held_keys
from drills.core.journal.dialect import POSTGRES
from drills.core.journal.faults import JournalUnusable
from drills.core.journal.runs import RunStatus
from drills.core.journal.schema import MIGRATIONS, SCHEMA_VERSION
from drills.core.journal.target import JournalTarget, parse_target
from drills.core.journal.upkeep import JournalStats
from probes.redact import redact

if TYPE_CHECKING:
    import psycopg

__all__ = ["PgDatabase", "PgRow", "PostgresJournal", "connect", "schema_version"]

_TABLES = ("runs", "deliveries", "events", "digests", "totals", "tsunagari_schema")


class PgRow(tuple[Any, ...]):
    """A row read by position (``row[0]``, unpacking) or by name (``row["run_id"]``,
    ``dict(row)``), as :class:`sqlite3.Row` is."""

    _index: dict[str, int]

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


def _row_factory(cursor: Any) -> Callable[[Sequence[Any]], PgRow]:
    index = {c.name: i for i, c in enumerate(cursor.description or ())}

    def make(values: Sequence[Any]) -> PgRow:
        row = PgRow(values)
        row._index = index
        return row

    return make


class PgDatabase:
    """A psycopg connection that takes the journal's SQL as written for sqlite3:
    ``?`` placeholders (:data:`~drills.core.journal.dialect.POSTGRES`), booleans stored
    as 0/1 (as SQLite stores them), rows by name or position (:class:`PgRow`)."""

    def __init__(self, conn: psycopg.Connection[PgRow], display: str) -> None:
        self.conn = conn
        self.display = display
        self.reopen: Callable[[], PgDatabase] | None = None
        """A reader's way back after the server restarted or dropped the connection (a
        writer has none: its run's session lock went with the connection)."""

    def execute(self, sql: str, args: Sequence[Any] | None = None) -> psycopg.Cursor[PgRow]:
        import psycopg
        from psycopg.pq import TransactionStatus

        idle = self.conn.info.transaction_status == TransactionStatus.IDLE
        try:
            return self._execute(sql, args)
        except psycopg.OperationalError:
            # Only a reader, only between transactions: nothing is lost by asking again.
            if self.reopen is None or not idle or not self.conn.broken:
                raise
            self.conn.close()
            self.conn = self.reopen().conn
            return self._execute(sql, args)

    def _execute(self, sql: str, args: Sequence[Any] | None) -> psycopg.Cursor[PgRow]:
        if not args:
            return self.conn.execute(sql.encode("utf-8"))  # no placeholders: sent as written
        values = [int(a) if isinstance(a, bool) else a for a in args]
        return self.conn.execute(POSTGRES.sql(sql).encode("utf-8"), values)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """One statement for many rows (a group commit), inside the caller's transaction."""
        values = [[int(a) if isinstance(a, bool) else a for a in row] for row in rows]
        with self.conn.cursor() as cur:
            cur.executemany(POSTGRES.sql(sql).encode("utf-8"), values)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.conn.transaction():
            yield

    def close(self) -> None:
        self.conn.close()


def application_name() -> str:
    """How this process names its connections (``pg_stat_activity``): host and pid, so a
    refused run can say which machine holds the lock."""
    return f"tsunagari@{socket.gethostname()}:{os.getpid()}"[:63]


def connect(target: JournalTarget, *, read_only: bool = False) -> PgDatabase:
    """A connection to the journal database (autocommit), or :class:`JournalUnusable`."""
    import psycopg

    params: dict[str, Any] = dict(target.conninfo)
    params.setdefault("application_name", application_name())
    params.setdefault("connect_timeout", "10")
    try:
        conn = psycopg.connect(autocommit=True, row_factory=_row_factory, **params)
    except psycopg.Error as exc:
        raise unusable(target.display, exc, writing=not read_only) from None
    return PgDatabase(conn, target.display)


def unusable(display: str, exc: BaseException, *, writing: bool) -> JournalUnusable:
    """Plain words for what PostgreSQL or libpq said (redacted: no password ever shows)."""
    text = redact(str(exc)).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    low = text.lower()
    if "password" in low or "authentication" in low:
        return JournalUnusable(
            display,
            f"ログインできません（利用者名かパスワードが違います: {text}）",
            f"cannot log in (wrong user or password: {text})",
        )
    if "connect" in low or "connection" in low or "timeout" in low or "resolve" in low:
        return JournalUnusable(
            display,
            f"データベースに接続できません（{text}）",
            f"cannot connect to the database ({text})",
        )
    if "read-only" in low or "permission denied" in low:
        return JournalUnusable(
            display,
            f"書き込めません（読み取り専用か権限がありません: {text}）",
            f"it cannot be written (read-only or no permission: {text})",
        )
    verb_ja, verb_en = (
        ("書き込めません", "cannot be written") if writing else ("読めません", "cannot be read")
    )
    return JournalUnusable(display, f"{verb_ja}（{text}）", f"{verb_en} ({text})")


def schema_version(db: PgDatabase) -> int:
    """The version written in the database (0: no journal there yet)."""
    exists = db.execute("SELECT to_regclass('tsunagari_schema')").fetchone()
    if exists is None or exists[0] is None:
        return 0
    row = db.execute("SELECT MAX(version) FROM tsunagari_schema").fetchone()
    return int(row[0]) if row is not None and row[0] is not None else 0


def migrate(db: PgDatabase) -> int:
    """Bring the database to :data:`SCHEMA_VERSION` in one transaction, one migrator at a
    time (advisory lock); refuse a database newer than the code."""
    found = schema_version(db)
    if found > SCHEMA_VERSION:
        raise JournalTooNew(db.display, found, SCHEMA_VERSION)
    if found == SCHEMA_VERSION:
        return found
    with db.transaction():
        db.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATE_KEY,))
        found = schema_version(db)  # another machine may have done it while we waited
        if found > SCHEMA_VERSION:
            raise JournalTooNew(db.display, found, SCHEMA_VERSION)
        for migration in MIGRATIONS[found:]:
            for statement in migration.postgres:
                db.execute(statement)
        db.execute("CREATE TABLE IF NOT EXISTS tsunagari_schema (version INTEGER NOT NULL)")
        db.execute("DELETE FROM tsunagari_schema")
        db.execute("INSERT INTO tsunagari_schema (version) VALUES (?)", (SCHEMA_VERSION,))
    return SCHEMA_VERSION


def open_database(target: JournalTarget, *, read_only: bool = False) -> tuple[PgDatabase, int]:
    """A connection whose schema is current, and its version (as :func:`sqlite.open_database`).

    A reader's database older than this code is brought up to date once (that writes);
    then every statement of the reader runs read-only.
    """
    import psycopg

    db = connect(target, read_only=read_only)
    try:
        version = migrate(db)
        if read_only:
            db.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
    except psycopg.Error as exc:
        db.close()
        raise unusable(target.display, exc, writing=True) from None
    except BaseException:
        db.close()
        raise
    return db, version


class PostgresJournal(Journal):
    """The :class:`~drills.core.journal.Journal` interface on PostgreSQL."""

    dialect = POSTGRES
    db: PgDatabase  # type: ignore[assignment]  # the same statements as sqlite3's

    def __init__(self, target: JournalTarget | str, *, read_only: bool = False) -> None:
        self.target = target if isinstance(target, JournalTarget) else parse_target(target)
        self.path = self.target.display
        self.read_only = read_only
        self._memo: dict[tuple[str, ...], tuple[str, dict[str, Any]]] = {}
        self.db, self.schema_version = open_database(self.target, read_only=read_only)
        if read_only:  # a long-lived reader (serve) outlives a restart of the server
            self.db.reopen = lambda: open_database(self.target, read_only=True)[0]
        self._own: set[str] = set()

    # ------------------------------------------------------------------ liveness

    def run_alive(self, run: dict[str, Any] | Any) -> bool:
        """Is *run* running and its process alive? Its ``run:`` lock is held (any machine)."""
        if run["status"] != RunStatus.RUNNING:
            return False
        return halves(advisory_key("run", run["run_id"])) in held_keys(self.db)

    def mark_dead_runs(self) -> list[str]:
        """Mark ``incomplete`` every ``running`` run whose session lock nobody holds."""
        rows = self.db.execute("SELECT run_id FROM runs WHERE status = ?", (RunStatus.RUNNING,))
        running = [str(r[0]) for r in rows.fetchall()]
        if not running:
            return []
        held = held_keys(self.db)
        dead = [r for r in running if halves(advisory_key("run", r)) not in held]
        for run_id in dead:
            self.db.execute(
                "UPDATE runs SET status = ?, finished_at = (SELECT MAX(COALESCE(delivered_at,"
                " accepted_at, sent_at)) FROM deliveries WHERE run_id = ?)"
                " WHERE run_id = ? AND status = ?",
                (RunStatus.INCOMPLETE, run_id, run_id, RunStatus.RUNNING),
            )
        return dead

    def _claim(self, run_id: str) -> None:
        self.db.execute("SELECT pg_advisory_lock(?)", (advisory_key("run", run_id),))
        self._own.add(run_id)

    def _release(self, run_id: str) -> None:
        if run_id in self._own:
            self._own.discard(run_id)
            self.db.execute("SELECT pg_advisory_unlock(?)", (advisory_key("run", run_id),))

    # ------------------------------------------------------------------ upkeep

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.db.transaction():
            yield

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """As :meth:`Journal.snapshot`: one ``REPEATABLE READ, READ ONLY`` transaction."""
        from psycopg.pq import TransactionStatus

        if not self.read_only or self.db.conn.info.transaction_status != TransactionStatus.IDLE:
            yield
            return
        self.db.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        try:
            yield
        except BaseException:
            if not self.db.conn.broken:
                self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def insert_rows(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        """As :meth:`Journal.insert_rows`, in one pipelined batch (psycopg's ``executemany``)."""
        if not rows:
            return
        marks = ", ".join("?" * len(columns))
        sql = POSTGRES.sql(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})")
        with self.db.conn.cursor() as cursor:
            cursor.executemany(
                sql.encode("utf-8"),
                [[int(v) if isinstance(v, bool) else v for v in row] for row in rows],
            )

    def vacuum(self) -> None:
        """Make the space of deleted rows reusable (``VACUUM ANALYZE`` of the journal's
        tables). Not ``VACUUM FULL``: that would lock out every runner writing to the shared
        journal while it rewrites the tables; run it in a maintenance window if the
        database must shrink on disk."""
        for table in _TABLES[:-1]:
            self.db.execute(f"VACUUM (ANALYZE) {table}")

    def stats(self) -> JournalStats:
        """Counts, span and size (``file_bytes``: the tables with their indexes)."""
        by_status = {
            str(row[0]): int(row[1])
            for row in self.db.execute(
                "SELECT status, COUNT(*) FROM runs GROUP BY status ORDER BY status"
            )
        }
        span = self.db.execute("SELECT MIN(started_at), MAX(started_at) FROM runs").fetchone()
        size = self.db.execute(
            "SELECT " + " + ".join(f"pg_total_relation_size('{t}')" for t in _TABLES)
        ).fetchone()
        return JournalStats(
            schema_version=schema_version(self.db),
            runs_by_status=by_status,
            deliveries=self._count("SELECT COUNT(*) FROM deliveries"),
            events=self._count("SELECT COUNT(*) FROM events"),
            digests=self._count("SELECT COUNT(*) FROM digests"),
            file_bytes=int(size[0]) if size is not None else 0,
            oldest_run_at=span[0] if span is not None else None,
            newest_run_at=span[1] if span is not None else None,
        )
