"""``journal copy``: every row of one journal into another (SQLite ⇄ PostgreSQL).

What is copied, table by table, in the source's order:

- ``runs`` (the source's insertion order is kept: SQLite's ``rowid``, PostgreSQL's
  ``seq``), ``deliveries`` and ``events`` *with their ids* — what happened;
- ``digests`` and ``totals`` — what readers derived. Both could be rebuilt from the
  rest, but they are copied too (same scoring model, same numbers, and the first
  ``serve`` scrape of the new journal is then as cheap as on the old one).

The destination is brought to the current schema first (a source older than this
code is migrated on open, one newer is refused), and everything is written in one
transaction: a copy that fails half-way leaves the destination as it was. A
destination that already holds runs is refused (:class:`DestinationNotEmpty`) unless
*append* is set; then runs already there (same ``run_id``) are left alone, the new
runs' deliveries and events get new ids, and the destination's ``totals`` are
deleted (the metrics fold the merged history again on their next read).

    >>> from drills.core.journal import Journal
    >>> src, dst = Journal(":memory:"), Journal(":memory:")
    >>> run = src.begin_run(scenario="demo")
    >>> copy_rows(src, dst).rows["runs"]
    1
    >>> dst.run(run)["scenario"]
    'demo'
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from drills.core.errors import HarnessError
from drills.core.journal import database_errors
from drills.core.journal.schema import DELIVERY_COLUMNS, RUN_COLUMNS
from probes.redact import redact

if TYPE_CHECKING:
    from drills.core.journal import Journal

__all__ = [
    "TABLES",
    "CopyFailed",
    "CopyResult",
    "DestinationNotEmpty",
    "copy_rows",
    "table_rows",
]

BATCH = 500

# table → (columns copied, the key ordering its rows); ``runs`` is ordered by insertion.
TABLES: dict[str, tuple[tuple[str, ...], str]] = {
    "runs": (RUN_COLUMNS, ""),
    "deliveries": (("id", *DELIVERY_COLUMNS), "id"),
    "events": (("id", "run_id", "at", "kind", "data"), "id"),
    "digests": (("run_id", "model_version", "data", "at"), "run_id"),
    "totals": (("scenario", "vantage", "model_version", "data", "at"), "scenario, vantage"),
}
# Tables whose ``id`` the destination assigns again when appending.
_RENUMBERED = ("deliveries", "events")


class DestinationNotEmpty(HarnessError):
    """The destination already holds runs and *append* was not asked for (exit 2)."""

    def __init__(self, display: str, runs: int) -> None:
        self.display, self.runs = display, runs
        super().__init__(
            f"コピー先の記録には既に {runs} 件の実行があります（追記するなら --append）: {display}"
            f" / the destination journal already holds {runs} runs"
            f" (add --append to add to them): {display}"
        )


class CopyFailed(HarnessError):
    """The destination refused a row (e.g. a delivery of a run the source does not have,
    which SQLite let in and PostgreSQL does not): nothing was written (exit 3)."""

    def __init__(self, display: str, table: str, why: str) -> None:
        super().__init__(
            f"{table} の行をコピーできませんでした（{why}）。コピー先は元のままです: {display}"
            f" / a row of {table} could not be copied ({why}); the destination is unchanged:"
            f" {display}"
        )


@dataclass(frozen=True, slots=True)
class CopyResult:
    """How many rows of each table were written, and how many runs were already there."""

    rows: dict[str, int] = field(default_factory=dict)
    skipped_runs: int = 0
    append: bool = False

    def to_data(self) -> dict[str, Any]:
        return {"rows": dict(self.rows), "skipped_runs": self.skipped_runs, "append": self.append}


def _order(journal: Journal, table: str) -> str:
    key = TABLES[table][1]
    return key or journal.dialect.rowid


def table_rows(journal: Journal, table: str) -> Iterator[tuple[Any, ...]]:
    """Every row of *table* (the columns of :data:`TABLES`), in the journal's order."""
    columns = TABLES[table][0]
    yield from journal.db.execute(
        f"SELECT {', '.join(columns)} FROM {table} ORDER BY {_order(journal, table)}"
    ).fetchall()


def _count(journal: Journal, table: str) -> int:
    return int(journal.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def _insert(dst: Journal, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
    if not rows:
        return
    dst.insert_rows(table, columns, rows)  # PostgreSQL: one pipelined batch


@contextmanager
def _transaction(journal: Journal) -> Iterator[None]:
    """One transaction on either database (SQLite's connection is in autocommit)."""
    with journal.transaction():
        yield


def _restart_identities(dst: Journal) -> None:
    """PostgreSQL: identity columns given explicit values do not move their sequences;
    start each after the largest value copied, so the next run's rows do not collide."""
    for table, column in (("runs", "seq"), ("deliveries", "id"), ("events", "id")):
        dst.db.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'),"
            f" COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)"
        )


def copy_rows(src: Journal, dst: Journal, *, append: bool = False) -> CopyResult:
    """Copy every row of *src* into *dst* in one transaction (see the module's docstring)."""
    present = _count(dst, "runs")
    if present and not append:
        raise DestinationNotEmpty(dst.path, present)
    known = {str(r[0]) for r in dst.db.execute("SELECT run_id FROM runs").fetchall()}
    skipped = 0
    counts = dict.fromkeys(TABLES, 0)
    table = "totals"
    try:
        with _transaction(dst):
            if append:
                dst.db.execute("DELETE FROM totals")
            for table in TABLES:
                counts[table], n = _copy_table(src, dst, table, known, append=append)
                skipped += n
            if dst.dialect.format_style:
                _restart_identities(dst)
    except database_errors() as exc:
        why = redact(str(exc)).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CopyFailed(dst.path, table, why) from None
    return CopyResult(rows=counts, skipped_runs=skipped, append=append)


def _copy_table(
    src: Journal, dst: Journal, table: str, known: set[str], *, append: bool
) -> tuple[int, int]:
    """Copy one table; (rows written, runs skipped as already there)."""
    if append and table == "totals":
        return 0, 0
    columns = TABLES[table][0]
    write = columns[1:] if append and table in _RENUMBERED else columns
    run_at = write.index("run_id") if "run_id" in write else None
    written = skipped = 0
    batch: list[tuple[Any, ...]] = []
    for row in table_rows(src, table):
        values = tuple(row)[len(columns) - len(write) :]
        if run_at is not None and values[run_at] in known:
            skipped += table == "runs"
            continue
        batch.append(values)
        if len(batch) >= BATCH:
            _insert(dst, table, write, batch)
            written += len(batch)
            batch = []
    _insert(dst, table, write, batch)
    return written + len(batch), skipped
