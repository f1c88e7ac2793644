"""Journal upkeep: schema versions and migrations, digests, prune, stats, `tsunagari journal`."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace

import pytest

import drills.cli as cli
from drills.core.delivery import Delivery, Outcome
from drills.core.errors import JournalTooNew, TsunagariError
from drills.core.journal import SCHEMA_VERSION, Journal, RunStatus, open_journal

DAY = 86400.0

# The schema SQL of the journal as it was before schema versions (copied from
# drills/core/journal.py at that time, byte for byte): such files carry user_version 0.
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

# Older still: before evidence levels (no `evidence` column).
_SCHEMA_BEFORE_EVIDENCE = _SCHEMA.replace(",\n    evidence          TEXT\n", "\n")


def _tables(db: sqlite3.Connection) -> set[str]:
    return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _legacy_file(path, schema: str) -> None:
    db = sqlite3.connect(path)
    db.executescript(schema)
    db.execute(
        "INSERT INTO runs (run_id, scenario, vantage, started_at, finished_at, status) "
        "VALUES ('old', 'demo', 'hq', 1.0, 2.0, 'finished')"
    )
    evidence = ", evidence" if "evidence " in schema else ""
    seen = ", 'seen'" if evidence else ""
    db.execute(
        "INSERT INTO deliveries (run_id, step, municipality_code, municipality_name, channel_id, "
        f"kind, token, outcome, latency_s{evidence}) "
        f"VALUES ('old', 's', '131016', '千代田区', 'chat', 'webhook', 'tok', 'delivered', 0.5"
        f"{seen})"
    )
    db.execute(
        "INSERT INTO events (run_id, at, kind, data) "
        "VALUES ('old', 1.5, 'fallback', '{\"passed\": true}')"
    )
    db.commit()
    db.close()


@pytest.mark.parametrize("schema", [_SCHEMA, _SCHEMA_BEFORE_EVIDENCE], ids=["v1", "pre-evidence"])
def test_unversioned_file_migrates_to_latest_and_keeps_its_rows(tmp_path, schema):
    path = tmp_path / "old.sqlite"
    _legacy_file(path, schema)
    with Journal(path) as journal:
        assert journal.schema_version == SCHEMA_VERSION == 4
        assert journal.db.execute("PRAGMA user_version").fetchone()[0] == 4
        assert {"digests", "totals"} <= _tables(journal.db)
        (delivery,) = journal.deliveries("old")
        assert delivery.outcome is Outcome.DELIVERED and delivery.latency_s == 0.5
        assert delivery.evidence is not None and delivery.evidence.value == "seen"
        assert journal.events("old")[0]["data"] == {"passed": True}
        assert journal.digest("old") is None
        journal.put_digest("old", "m1", {"131016/chat": {"reachability": 1.0}})
    with Journal(path) as journal:  # reopening a current file changes nothing
        assert journal.digest("old") == ("m1", {"131016/chat": {"reachability": 1.0}})
        columns = {r["name"] for r in journal.db.execute("PRAGMA table_info(deliveries)")}
        assert "evidence" in columns


def test_new_file_is_created_at_the_latest_version(tmp_path):
    with Journal(tmp_path / "new.sqlite") as journal:
        assert journal.stats().schema_version == SCHEMA_VERSION
        assert {"runs", "deliveries", "events", "digests", "totals"} <= _tables(journal.db)


def test_digest_round_trip_replace_and_delete():
    journal = Journal(":memory:")
    run = journal.begin_run("demo")
    assert journal.digest(run) is None
    journal.put_digest(run, "scoring-1", {"a": [1, 2], "名前": "足立区"})
    assert journal.digest(run) == ("scoring-1", {"a": [1, 2], "名前": "足立区"})
    journal.put_digest(run, "scoring-2", {"a": 3})
    assert journal.digest(run) == ("scoring-2", {"a": 3})
    journal.delete_digest(run)
    assert journal.digest(run) is None
    journal.delete_digest(run)  # deleting nothing is fine
    journal.close()


def test_file_newer_than_the_code_is_refused_and_left_unchanged(tmp_path):
    path = tmp_path / "future.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE future (x)")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(JournalTooNew) as info:
        Journal(path)
    exc = info.value
    assert isinstance(exc, TsunagariError) and isinstance(exc, ValueError)
    assert (exc.found, exc.supported) == (SCHEMA_VERSION + 1, SCHEMA_VERSION)
    assert f"v{SCHEMA_VERSION + 1}" in str(exc) and "Upgrade tsunagari" in str(exc)
    assert "tsunagari を更新" in exc.render("ja") and str(path) in exc.render("en")
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    assert _tables(db) == {"future"}
    db.close()


# ---------------------------------------------------------------------- prune


def _populate(journal: Journal, now: float) -> dict[str, tuple[str, str, float]]:
    """Runs of two scenarios × two vantages, one a day for 10 days, each with
    3 deliveries, 2 events and a digest. Returns run_id -> (scenario, vantage, started_at)."""
    runs: dict[str, tuple[str, str, float]] = {}
    for scenario in ("daily", "quarterly"):
        for vantage in ("hq", "lgwan"):
            days = range(10) if scenario == "daily" else (100, 200)  # quarterly: all old
            for day in days:
                started = now - (day + 0.5) * DAY
                run_id = f"{scenario}-{vantage}-{day}"
                journal.begin_run(scenario, vantage, run_id=run_id)
                journal.db.execute(
                    "UPDATE runs SET started_at = ? WHERE run_id = ?", (started, run_id)
                )
                for i in range(3):
                    journal.record(
                        Delivery(
                            run_id,
                            "s",
                            "131016",
                            "千代田区",
                            f"c{i}",
                            "webhook",
                            f"{run_id}-{i}",
                            Outcome.DELIVERED,
                            sent_at=started,
                            latency_s=0.1,
                            vantage=vantage,
                            scenario=scenario,
                        )
                    )
                journal.record_event(run_id, "fallback", {"passed": True})
                journal.record_event(run_id, "roll_call", {"answered": 1})
                journal.put_digest(run_id, "m1", {"run": run_id})
                journal.finish_run(run_id)
                runs[run_id] = (scenario, vantage, started)
    return runs


def _counts(journal: Journal) -> dict[str, int]:
    return {
        t: journal.db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
        for t in ("runs", "deliveries", "events", "digests")
    }


def test_prune_keeps_latest_per_scenario_and_vantage_and_removes_the_rest(journal_target):
    """Both backends run the one prune (Journal.prune, the dialect's insertion order)."""
    now = 1_800_000_000.0
    journal = open_journal(journal_target)
    runs = _populate(journal, now)
    assert _counts(journal) == {"runs": 24, "deliveries": 72, "events": 48, "digests": 24}
    # A run still in progress, started long ago, is never touched.
    journal.begin_run("daily", "hq", run_id="in-progress")
    journal.db.execute(
        "UPDATE runs SET started_at = ? WHERE run_id = 'in-progress'", (now - 50 * DAY,)
    )

    dry = journal.prune(3 * DAY, now=now, dry_run=True)
    assert dry.dry_run and _counts(journal)["runs"] == 25  # nothing deleted

    result = journal.prune(3 * DAY, now=now)
    # daily: days 3..9 are older than 3 days (7 per vantage) → 14 runs; quarterly: both
    # runs of each vantage are old, the newer (day 100) is kept → 2 runs removed.
    assert result.cutoff == now - 3 * DAY
    assert (result.runs, result.deliveries, result.events, result.digests) == (16, 48, 32, 16)
    assert result.kept_latest == 2
    assert dry == replace(result, dry_run=True)
    assert _counts(journal) == {"runs": 9, "deliveries": 24, "events": 16, "digests": 8}
    left = {r["run_id"] for r in journal.runs()}
    expected = {rid for rid, (_, _, started) in runs.items() if started >= result.cutoff}
    expected |= {"quarterly-hq-100", "quarterly-lgwan-100", "in-progress"}
    assert left == expected
    # Nothing orphaned.
    for table in ("deliveries", "events", "digests"):
        orphans = journal.db.execute(
            f"SELECT COUNT(*) FROM {table} WHERE run_id NOT IN (SELECT run_id FROM runs)"
        ).fetchone()[0]
        assert orphans == 0, table
    # Pruning again removes nothing; the latest of each scenario × vantage survives
    # even a cutoff in the future.
    assert journal.prune(3 * DAY, now=now).runs == 0
    everything = journal.prune(0, now=now + 1000 * DAY)
    assert {r["run_id"] for r in journal.runs()} == {
        "daily-hq-0",
        "daily-lgwan-0",
        "quarterly-hq-100",
        "quarterly-lgwan-100",
        "in-progress",
    }
    assert everything.kept_latest == 4
    size_before = journal.stats().file_bytes
    journal.vacuum()
    if journal.dialect.name == "sqlite":  # PostgreSQL's VACUUM (not FULL) only marks space reusable
        assert journal.stats().file_bytes <= size_before
    journal.close()


def test_stats_values(tmp_path):
    now = 1_800_000_000.0
    path = tmp_path / "j.sqlite"
    journal = Journal(path)
    empty = journal.stats()
    assert (empty.runs, empty.deliveries, empty.oldest_run_at, empty.newest_run_at) == (
        0,
        0,
        None,
        None,
    )
    runs = _populate(journal, now)
    journal.finish_run("daily-hq-0", RunStatus.FAILED)
    journal.begin_run("daily", "hq", run_id="live")
    journal.db.execute("UPDATE runs SET started_at = ? WHERE run_id = 'live'", (now,))
    stats = journal.stats()
    assert stats.schema_version == SCHEMA_VERSION
    assert dict(stats.runs_by_status) == {"failed": 1, "finished": 23, "running": 1}
    assert stats.runs == 25
    assert (stats.deliveries, stats.events, stats.digests) == (72, 48, 24)
    assert stats.oldest_run_at == min(s for _, _, s in runs.values()) == now - 200.5 * DAY
    assert stats.newest_run_at == now
    assert stats.file_bytes >= path.stat().st_size > 0
    data = stats.to_data()
    assert data["runs"] == 25 and data["runs_by_status"]["running"] == 1
    json.dumps(data)
    with pytest.raises(AttributeError):
        stats.deliveries = 0  # type: ignore[misc]
    journal.close()


# ---------------------------------------------------------------------- CLI


@pytest.fixture
def tsunagari():
    """``drills.cli.main``, which lists ``journal`` among its subcommands."""
    return cli.main


@pytest.fixture
def populated(tmp_path):
    import time

    path = tmp_path / "j.sqlite"
    with Journal(path) as journal:
        _populate(journal, time.time())
    return path


def test_cli_stats_table_and_json(tsunagari, populated, capsys):
    assert tsunagari(["--lang", "en", "journal", "stats", "--journal", str(populated)]) == 0
    out = capsys.readouterr().out
    assert f"v{SCHEMA_VERSION}" in out and "24 (finished 24)" in out and "deliveries" in out
    assert (
        tsunagari(
            ["--lang", "ja", "journal", "stats", "--journal", str(populated), "--format", "json"]
        )
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert data["runs"] == 24 and data["deliveries"] == 72 and data["digests"] == 24
    assert data["schema_version"] == SCHEMA_VERSION
    assert tsunagari(["--lang", "ja", "journal", "stats", "--journal", str(populated)]) == 0
    assert "配信" in capsys.readouterr().out


def test_cli_prune_dry_run_then_prune(tsunagari, populated, capsys):
    argv = ["--lang", "en", "journal", "prune", "--older-than", "3d", "--journal", str(populated)]
    assert tsunagari([*argv, "--dry-run", "--format", "json"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert dry["dry_run"] and dry["runs"] == 16 and dry["kept_latest"] == 2
    with Journal(populated) as journal:
        assert journal.stats().runs == 24
    assert tsunagari(argv) == 0
    out = capsys.readouterr().out
    assert "16 runs" in out and "48" in out and "kept as latest" in out
    with Journal(populated) as journal:
        stats = journal.stats()
    assert (stats.runs, stats.deliveries, stats.events, stats.digests) == (8, 24, 16, 8)


def test_cli_errors_exit_2(tsunagari, tmp_path, populated, capsys):
    missing = tmp_path / "nope.sqlite"
    assert tsunagari(["--lang", "en", "journal", "stats", "--journal", str(missing)]) == 2
    assert "no journal" in capsys.readouterr().err
    assert not missing.exists()  # not created by looking at it
    bad = [
        "--lang",
        "en",
        "journal",
        "prune",
        "--older-than",
        "a year",
        "--journal",
        str(populated),
    ]
    assert tsunagari(bad) == 2
    assert "cannot read the duration" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        tsunagari(["--lang", "en", "journal", "prune", "--journal", str(populated)])
    assert info.value.code == 2  # --older-than is required
    capsys.readouterr()
    db = sqlite3.connect(populated)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    db.commit()
    db.close()
    for lang, words in (("en", "Upgrade tsunagari"), ("ja", "tsunagari を更新")):
        assert tsunagari(["--lang", lang, "journal", "stats", "--journal", str(populated)]) == 2
        assert words in capsys.readouterr().err
    assert (
        tsunagari(
            ["--lang", "en", "journal", "prune", "--older-than", "1d", "--journal", str(populated)]
        )
        == 2
    )


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_cli_journal_help(tsunagari, lang, capsys):
    for argv in (["journal"], ["journal", "prune"], ["journal", "stats"]):
        with pytest.raises(SystemExit) as info:
            tsunagari(["--lang", lang, *argv, "--help"])
        assert info.value.code == 0
        out = capsys.readouterr().out
        assert ("使い方" if lang == "ja" else "usage:") in out


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_cli_refuses_a_journal_newer_than_the_code_with_exit_2(tsunagari, tmp_path, capsys, lang):
    path = tmp_path / "future.sqlite"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    # Any command that opens the journal, not only `journal …` (main catches it).
    assert tsunagari(["--lang", lang, "scorecard", "--journal", str(path)]) == 2
    err = capsys.readouterr().err
    expected = JournalTooNew(str(path), SCHEMA_VERSION + 1, SCHEMA_VERSION).render(lang)
    assert expected in err and "Traceback" not in err
