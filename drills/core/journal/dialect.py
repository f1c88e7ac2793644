"""What differs between SQLite and PostgreSQL in the journal's SQL, in one place.

The journal's statements are written once, with ``?`` placeholders and SQL both
databases speak (``ON CONFLICT … DO UPDATE``, ``CASE``, ``COALESCE``, window
functions). What is left differs here:

- placeholders: psycopg takes ``%s``; :meth:`Dialect.sql` converts ``?`` outside
  quoted text (and doubles a literal ``%``), once per statement (cached);
- the runs' insertion order: SQLite's ``rowid``; PostgreSQL's ``seq`` (an identity
  column, :mod:`drills.core.journal.schema`).

    >>> POSTGRES.sql("SELECT * FROM runs WHERE run_id = ? AND meta LIKE '%?%'")
    "SELECT * FROM runs WHERE run_id = %s AND meta LIKE '%%?%%'"
    >>> SQLITE.sql("SELECT ?") == "SELECT ?"
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

__all__ = ["POSTGRES", "SQLITE", "Dialect", "to_format_style"]


@dataclass(frozen=True, slots=True)
class Dialect:
    """One database's spelling of what the journal's SQL leaves open."""

    name: str
    rowid: str
    """The column that orders runs as they were inserted."""
    format_style: bool = False
    """Placeholders are ``%s`` (psycopg), not ``?`` (sqlite3)."""

    def sql(self, text: str) -> str:
        """*text* (``?`` placeholders) as this database takes it."""
        return to_format_style(text) if self.format_style else text

    def upsert(self, table: str, columns: tuple[str, ...], key: tuple[str, ...]) -> str:
        """Insert a row or replace the one with the same *key* (both databases' syntax).

        >>> SQLITE.upsert("digests", ("run_id", "data"), ("run_id",))
        'INSERT INTO digests (run_id, data) VALUES (?, ?) ON CONFLICT (run_id) DO UPDATE SET data = excluded.data'
        """
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
        return (
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
            f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
        )


SQLITE = Dialect("sqlite", rowid="rowid")
POSTGRES = Dialect("postgresql", rowid="seq", format_style=True)


@lru_cache(maxsize=512)
def to_format_style(text: str) -> str:
    """``?`` → ``%s`` and ``%`` → ``%%`` outside quoted text ('…', "…").

    >>> to_format_style('SELECT "a?" FROM t WHERE x = ? AND y = \\'it\\'\\'s?\\'')
    'SELECT "a?" FROM t WHERE x = %s AND y = \\'it\\'\\'s?\\''
    """
    out: list[str] = []
    quote = ""
    for ch in text:
        if quote:
            if ch == "%":
                out.append("%%")
                continue
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "?":
            out.append("%s")
            continue
        elif ch == "%":
            out.append("%%")
            continue
        out.append(ch)
    return "".join(out)
