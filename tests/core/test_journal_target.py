"""Choosing the journal's backend from ``--journal`` (no server needed): paths and URLs,
password references, redaction, the dialect layer's placeholders, the options and lock
that take a URL.

What needs a running PostgreSQL is in tests/core/test_journal.py (parametrized).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from drills.cli import default_journal, journal_argument, main
from drills.core.journal import Journal, local_path, open_journal
from drills.core.journal.advisory import advisory_key, halves
from drills.core.journal.dialect import POSTGRES, SQLITE, to_format_style
from drills.core.journal.schema import MIGRATIONS, SCHEMA_VERSION
from drills.core.journal.target import JournalTargetError, parse_target, redact_target
from drills.core.lock import PgRunLock, RunLock, run_lock
from drills.operator.session import DrillSettings, SettingsError
from probes.redact import forget_all, redact


@pytest.fixture(autouse=True)
def _clean_redaction() -> object:
    yield
    forget_all()


# --------------------------------------------------------------------------- dialect


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT * FROM runs WHERE run_id = ?", "SELECT * FROM runs WHERE run_id = %s"),
        ("VALUES (?, ?, ?)", "VALUES (%s, %s, %s)"),
        ("WHERE a LIKE '50%?' AND b = ?", "WHERE a LIKE '50%%?' AND b = %s"),
        ("WHERE x = 'it''s ?' AND y = ?", "WHERE x = 'it''s ?' AND y = %s"),
        ('SELECT "odd?name" FROM t WHERE z = ?', 'SELECT "odd?name" FROM t WHERE z = %s'),
        ("SELECT 10 % 3 WHERE a = ?", "SELECT 10 %% 3 WHERE a = %s"),
    ],
)
def test_placeholders_turn_into_psycopgs_outside_quotes(sql: str, expected: str) -> None:
    assert to_format_style(sql) == POSTGRES.sql(sql) == expected
    assert SQLITE.sql(sql) == sql


def test_the_upsert_both_dialects_write_replaces_the_row_in_sqlite() -> None:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (k TEXT PRIMARY KEY, a TEXT, b INTEGER)")
    sql = SQLITE.upsert("t", ("k", "a", "b"), ("k",))
    assert POSTGRES.upsert("t", ("k", "a", "b"), ("k",)) == sql  # one statement for both
    db.execute(sql, ("x", "first", 1))
    db.execute(sql, ("x", "second", 2))
    db.execute(sql, ("y", "other", 3))
    assert db.execute("SELECT k, a, b FROM t ORDER BY k").fetchall() == [
        ("x", "second", 2),
        ("y", "other", 3),
    ]


def test_every_migration_has_postgres_statements_and_the_same_tables() -> None:
    assert len(MIGRATIONS) == SCHEMA_VERSION
    for migration in MIGRATIONS:
        assert migration.postgres, migration.description
        text = " ".join(migration.postgres).upper()
        assert "AUTOINCREMENT" not in text and " REAL" not in text
    # The SQLite side builds the tables the PostgreSQL side names.
    db = sqlite3.connect(":memory:")
    for migration in MIGRATIONS:
        migration.sqlite(db)
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    pg_text = " ".join(s for m in MIGRATIONS for s in m.postgres)
    for table in tables - {"sqlite_sequence"}:
        assert f"CREATE TABLE IF NOT EXISTS {table} (" in pg_text


# --------------------------------------------------------------------------- targets


def test_paths_and_sqlite_urls_are_sqlite(tmp_path: Path) -> None:
    assert parse_target("out/journal.sqlite").path == "out/journal.sqlite"
    assert parse_target(tmp_path / "j.sqlite").path == str(tmp_path / "j.sqlite")
    assert parse_target("sqlite:///out/j.sqlite").path == "out/j.sqlite"  # relative
    assert parse_target(f"sqlite:///{tmp_path}/j.sqlite").path == f"{tmp_path}/j.sqlite"
    assert parse_target("sqlite://").path == ":memory:"
    with open_journal(f"sqlite:///{tmp_path}/u.sqlite") as journal:
        assert isinstance(journal, Journal) and journal.dialect is SQLITE
        journal.finish_run(journal.begin_run("s"))
    assert (tmp_path / "u.sqlite").is_file()
    assert local_path("postgresql://db/x") is None
    assert local_path(f"sqlite:///{tmp_path}/u.sqlite") == tmp_path / "u.sqlite"


def test_a_postgres_url_passes_libpq_options_through() -> None:
    target = parse_target(
        "postgresql://tsunagari@db.example:5433/drills?sslmode=verify-full&sslrootcert=/etc/ca.pem"
    )
    assert target.is_postgres
    assert target.conninfo == {
        "user": "tsunagari",
        "host": "db.example",
        "port": "5433",
        "dbname": "drills",
        "sslmode": "verify-full",
        "sslrootcert": "/etc/ca.pem",
    }
    assert parse_target("postgres://db/drills").is_postgres


def test_password_from_the_environment_is_resolved_registered_and_never_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PGPW_TEST", "s3cret-from-env")
    target = parse_target("postgresql://tsunagari@db/drills?password=env:PGPW_TEST")
    assert target.conninfo["password"] == "s3cret-from-env"
    assert "s3cret-from-env" not in target.display
    assert target.display == "postgresql://tsunagari@db/drills?password=env:PGPW_TEST"
    # Registered: any later text that quotes it is masked.
    assert redact("FATAL: password s3cret-from-env rejected") == "FATAL: password *** rejected"


def test_password_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-a-file-42\n", encoding="utf-8")
    target = parse_target(f"postgresql://u@db/d?password=file:{secret}")
    assert target.conninfo["password"] == "from-a-file-42"
    assert "from-a-file-42" not in str(target)


def test_an_inline_password_is_masked_wherever_the_url_is_shown() -> None:
    url = "postgresql://tsunagari:inline-pass-99@db/drills?sslmode=require"
    target = parse_target(url)
    assert target.conninfo["password"] == "inline-pass-99"
    assert target.display == "postgresql://tsunagari:***@db/drills?sslmode=require"
    assert "inline-pass-99" not in redact_target(url)
    query = redact_target("postgresql://u@db/d?password=another-inline-1")
    assert "another-inline-1" not in query and "password=***" in query


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("postgresql://u@db/d?password=env:NOT_SET_ANYWHERE_X", "NOT_SET_ANYWHERE_X"),
        ("postgresql://u@db/d?password=file:/nonexistent/pw", "/nonexistent/pw"),
        ("mysql://u:pw-in-url-777@db/d", "postgresql://"),
    ],
)
def test_unusable_urls_say_why_in_both_languages_without_the_password(
    url: str, words: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE_X", raising=False)
    with pytest.raises(JournalTargetError) as caught:
        parse_target(url)
    ja, en = str(caught.value).split(" / ", 1)
    assert words in ja and words in en
    assert "記録" in ja and "journal" in en
    assert "pw-in-url-777" not in str(caught.value)


def test_the_command_line_refuses_an_unknown_scheme_with_exit_3(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["journal", "stats", "--journal", "mysql://u:pw-in-url-778@db/d", "--lang", "en"])
    err = capsys.readouterr().err
    assert code == 3
    assert "postgresql://" in err and "pw-in-url-778" not in err and "Traceback" not in err


# --------------------------------------------------------------------------- options


def test_journal_argument_keeps_urls_and_makes_paths() -> None:
    assert journal_argument("postgresql://db/drills") == "postgresql://db/drills"
    assert journal_argument("out/j.sqlite") == Path("out/j.sqlite")


def test_the_environment_names_the_journal_when_no_option_does(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("TSUNAGARI_JOURNAL", raising=False)
    assert default_journal() == Path("tsunagari-out/journal.sqlite")
    assert DrillSettings.build({}, tmp_path).journal == tmp_path / "tsunagari-out/journal.sqlite"
    monkeypatch.setenv("TSUNAGARI_JOURNAL", "postgresql://db/drills")
    assert default_journal() == "postgresql://db/drills"
    assert DrillSettings.build({}, tmp_path).journal == "postgresql://db/drills"
    # The option (or ini) comes first; a relative file is relative to where it was given.
    given = DrillSettings.build({"journal": "j.sqlite"}, tmp_path)
    assert given.journal == tmp_path / "j.sqlite"
    monkeypatch.setenv("TSUNAGARI_JOURNAL", "elsewhere/j.sqlite")
    assert DrillSettings.build({}, tmp_path).journal == tmp_path / "elsewhere/j.sqlite"


def test_settings_show_a_url_without_its_password(tmp_path: Path) -> None:
    settings = DrillSettings.build({"journal": "postgresql://u:shown-never-1@db/d"}, tmp_path)
    assert settings.journal == "postgresql://u:shown-never-1@db/d"  # kept as given
    assert settings.journal_shown == "postgresql://u:***@db/d"


# --------------------------------------------------------------------------- locks


def test_the_run_lock_is_a_file_for_sqlite_and_an_advisory_lock_for_postgres(
    tmp_path: Path,
) -> None:
    assert isinstance(run_lock(tmp_path / "j.sqlite"), RunLock)
    assert run_lock(tmp_path / "j.sqlite").path == tmp_path / "j.sqlite.lock"
    assert run_lock(tmp_path / "j.sqlite", lock=tmp_path / "x.lock").path == tmp_path / "x.lock"
    lan = run_lock("postgresql://u:lock-pass-1@db/d", "LAN")
    lgwan = run_lock("postgresql://u:lock-pass-1@db/d", "LGWAN")
    assert isinstance(lan, PgRunLock) and isinstance(lgwan, PgRunLock)
    assert lan.key != lgwan.key  # different vantages may drill at once
    assert lan.key == run_lock("postgres://other-host/d", "LAN").key  # same vantage: one lock
    assert "lock-pass-1" not in lan.path


def test_advisory_keys_are_signed_bigints_and_split_as_pg_locks_shows_them() -> None:
    keys = {advisory_key("run", f"r{i}") for i in range(1000)}
    assert len(keys) == 1000
    assert all(-(2**63) <= k < 2**63 for k in keys)
    assert advisory_key("run", "x") != advisory_key("run-lock", "x")
    for key in (*list(keys)[:50], -1, 0, 2**63 - 1, -(2**63)):
        high, low = halves(key)
        assert 0 <= high < 2**32 and 0 <= low < 2**32
        rebuilt = (high << 32) | low
        assert rebuilt - (1 << 64 if rebuilt >= 1 << 63 else 0) == key


def test_settings_refuse_a_url_of_another_database_without_echoing_it(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        DrillSettings.build({"journal": "mysql://u:echo-never-2@db/d"}, tmp_path)
    assert "--journal" in str(caught.value) and " / " in str(caught.value)
    assert "echo-never-2" not in str(caught.value)
    built = DrillSettings.build({"journal": "sqlite:///rel/j.sqlite"}, tmp_path)
    assert built.journal == tmp_path / "rel/j.sqlite"  # a file, relative to where it was given
