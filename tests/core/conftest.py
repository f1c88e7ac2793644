"""Fixtures of the journal's tests: one real PostgreSQL for the session, a fresh database
per test, and ``journal_target`` — the same test against SQLite and PostgreSQL.

The server starts (about 1 s) the first time a test asks for it and stops at the end of
the session. It is skipped with its reason only when the binaries (Debian's
``postgresql``) or psycopg are missing — and never in CI (``CI`` set), where
``scripts/bootstrap.sh test`` installs both: there a missing server fails.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers.postgres import Postgres, missing_reason

_names = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    reason = missing_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL tests: {reason}")
        pytest.skip(reason)
    server = Postgres().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(postgres_server: Postgres) -> Iterator[str]:
    """The URL of a new, empty database of the session's server (dropped afterwards)."""
    name = f"t{os.getpid()}_{next(_names)}"
    url = postgres_server.create_database(name)
    yield url
    postgres_server.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def journal_target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a journal lives, once per backend: a SQLite file path, a PostgreSQL URL."""
    if request.param == "sqlite":
        return str(tmp_path / "journal.sqlite")
    return str(request.getfixturevalue("pg_url"))
