"""Where a journal is: a SQLite file, or a PostgreSQL database named by a URL.

``--journal``, the ini setting ``tsunagari_journal`` and ``TSUNAGARI_JOURNAL`` all take
one of::

    tsunagari-out/journal.sqlite              a file (SQLite)
    sqlite:////srv/drills/journal.sqlite      SQLite, as a URL (as SQLAlchemy: ``sqlite:///`` and
                                              a relative path, or a fourth slash and an absolute one)
    postgresql://tsunagari@db/tsunagari       PostgreSQL (``postgres://`` too)

A PostgreSQL URL never needs to carry the password itself. ``password=env:NAME`` reads it
from the environment variable *NAME*, ``password=file:PATH`` from the first line of a file;
without either, libpq's own ``PGPASSWORD``, ``PGPASSFILE`` (``~/.pgpass``) and
``PGSERVICE`` apply as for ``psql``. Every other query parameter (``sslmode``,
``sslrootcert``, ``connect_timeout``, ``application_name`` …) passes through to libpq.

The password, however it was given, is registered with :mod:`probes.redact` the moment
it is read, and :attr:`JournalTarget.display` — the only form any message, log line
or error shows — never holds it::

    >>> t = parse_target("postgresql://tsu:hunter2hunter2@db:5433/drills?sslmode=require")
    >>> t.display
    'postgresql://tsu:***@db:5433/drills?sslmode=require'
    >>> parse_target("out/journal.sqlite").path
    'out/journal.sqlite'
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from drills.core.errors import HarnessError
from probes.redact import MASK, redact, register

__all__ = [
    "JournalTarget",
    "JournalTargetError",
    "is_url",
    "parse_target",
    "redact_target",
    "sqlite_url",
]

Backend = Literal["sqlite", "postgresql"]

_PG_SCHEMES = ("postgresql", "postgres")
_URL = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*)://")


class JournalTargetError(HarnessError):
    """A journal URL that cannot be used (an unknown scheme, a password reference that
    cannot be read). ``str(exc)`` is ``"日本語 / English"`` with the URL redacted; exit 3."""


def is_url(target: str | Path) -> bool:
    """Is *target* a URL (``scheme://…``) rather than a file path?

    >>> is_url("postgresql://db/x"), is_url("out/journal.sqlite"), is_url(Path("a"))
    (True, False, False)
    """
    return isinstance(target, str) and _URL.match(target) is not None


@dataclass(frozen=True)
class JournalTarget:
    """A parsed ``--journal``: which backend, and how to reach it."""

    backend: Backend
    display: str
    """The target as messages show it: the password, if any, replaced by ``***``."""
    path: str = ""
    """SQLite: the file (or ``:memory:``)."""
    conninfo: dict[str, str] = field(default_factory=dict)
    """PostgreSQL: libpq keywords (``host``, ``dbname``, ``sslmode`` …), the password
    resolved from its reference. Never printed."""

    @property
    def is_postgres(self) -> bool:
        return self.backend == "postgresql"

    def __str__(self) -> str:
        return self.display


def redact_target(target: str | Path) -> str:
    """*target* fit to print: a URL's password (and any registered secret) masked.

    >>> redact_target("postgres://u:s3cr3t-pass@h/d?password=env:PW")
    'postgres://u:***@h/d?password=env:PW'
    """
    text = str(target)
    if not is_url(text):
        return redact(text)
    parts = urlsplit(text)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, hostport = netloc.rsplit("@", 1)
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":" + MASK
        netloc = f"{userinfo}@{hostport}"
    query = [
        (k, v if k != "password" or _reference(v) else MASK)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    ]
    shown = urlunsplit((parts.scheme, netloc, parts.path, urlencode(query, safe=":/*"), ""))
    return redact(shown)


def _reference(value: str) -> bool:
    return value.startswith(("env:", "file:"))


def parse_target(target: str | Path) -> JournalTarget:
    """The backend and address of *target* (a path or a URL); the password reference read.

    Raises :class:`JournalTargetError` for a scheme that is neither SQLite nor PostgreSQL,
    or a password reference that cannot be read.
    """
    if not is_url(target):
        path = str(target)
        return JournalTarget("sqlite", display=path, path=path)
    text = str(target)
    scheme = text.split("://", 1)[0].lower()
    if scheme == "sqlite":  # as SQLAlchemy: sqlite:///relative, sqlite:////absolute
        path = unquote(text.split("://", 1)[1].removeprefix("/")) or ":memory:"
        return JournalTarget("sqlite", display=path, path=path)
    display = redact_target(text)
    if scheme not in _PG_SCHEMES:
        raise JournalTargetError(
            f"記録の URL は postgresql:// か sqlite:/// で始めてください: {display}"
            f" / a journal URL must start with postgresql:// or sqlite:///: {display}"
        )
    from psycopg.conninfo import conninfo_to_dict

    try:
        raw = conninfo_to_dict(text)
    except Exception as exc:  # psycopg.ProgrammingError: libpq could not parse it
        why = redact(str(exc)).strip()
        raise JournalTargetError(
            f"記録の URL を読めません（{why}）: {display}"
            f" / cannot read the journal URL ({why}): {display}"
        ) from None
    conninfo = {k: str(v) for k, v in raw.items() if v is not None}
    password = conninfo.get("password")
    if password is not None:
        conninfo["password"] = _resolve(password, display)
        register(conninfo["password"])
    return JournalTarget("postgresql", display=display, conninfo=conninfo)


def _resolve(value: str, display: str) -> str:
    """The password a reference (``env:NAME``, ``file:PATH``) points at; a literal as is."""
    if value.startswith("env:"):
        name = value.removeprefix("env:")
        found = os.environ.get(name)
        if not found:
            raise JournalTargetError(
                f"記録のパスワードの環境変数 {name} が設定されていません: {display}"
                f" / the journal password's environment variable {name} is not set: {display}"
            )
        return found
    if value.startswith("file:"):
        path = Path(unquote(value.removeprefix("file:"))).expanduser()
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            raise JournalTargetError(
                f"記録のパスワードのファイル {path} を読めません（{why}）: {display}"
                f" / cannot read the journal password file {path} ({why}): {display}"
            ) from None
        if not lines or not lines[0].strip():
            raise JournalTargetError(
                f"記録のパスワードのファイル {path} が空です: {display}"
                f" / the journal password file {path} is empty: {display}"
            )
        return lines[0].strip()
    return value


def sqlite_url(path: str | Path) -> str:
    """A file as a ``sqlite:///`` URL (what ``journal copy`` prints).

    >>> sqlite_url("/srv/j.sqlite")
    'sqlite:////srv/j.sqlite'
    """
    return "sqlite:///" + quote(str(Path(path).absolute()))
