"""What only the PostgreSQL journal has: migrating once when machines open it at once, the
version table, the run lock of a vantage as an advisory lock, read-only readers, and a
server that cannot be reached said plainly (the real server of tests/core/conftest.py).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from drills.cli import main
from drills.core.errors import JournalTooNew, LockBusy
from drills.core.journal import JournalUnusable, open_journal
from drills.core.journal.postgres import PostgresJournal
from drills.core.journal.schema import SCHEMA_VERSION
from drills.core.lock import run_lock
from probes.sim.base import free_port

ROOT = Path(__file__).resolve().parents[2]

HOLD = """
import sys
from drills.core.lock import run_lock
lock = run_lock(sys.argv[1], "LGWAN").acquire()
print("held", flush=True)
sys.stdin.read()  # until the test kills this process
"""


def test_machines_opening_a_new_database_at_once_migrate_it_once(pg_url: str) -> None:
    opened: list[int] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            with open_journal(pg_url) as journal:
                opened.append(journal.schema_version)
        except BaseException as exc:  # pragma: no cover - the assertion below shows it
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert opened == [SCHEMA_VERSION] * 4
    with psycopg.connect(pg_url) as db:
        assert db.execute("SELECT version FROM tsunagari_schema").fetchall() == [(SCHEMA_VERSION,)]


def test_a_database_newer_than_the_code_is_refused_unchanged(
    pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    open_journal(pg_url).close()
    with psycopg.connect(pg_url, autocommit=True) as db:
        db.execute("UPDATE tsunagari_schema SET version = %s", (SCHEMA_VERSION + 3,))
    with pytest.raises(JournalTooNew) as caught:
        open_journal(pg_url, read_only=True)
    assert caught.value.found == SCHEMA_VERSION + 3 and pg_url in str(caught.value)
    assert main(["journal", "stats", "--journal", pg_url, "--lang", "en"]) == 2
    assert "Upgrade tsunagari" in capsys.readouterr().err
    with psycopg.connect(pg_url) as db:  # nothing was touched
        assert db.execute("SELECT version FROM tsunagari_schema").fetchone() == (
            SCHEMA_VERSION + 3,
        )


def test_a_reader_writes_nothing_and_keeps_derived_rows_to_itself(pg_url: str) -> None:
    with open_journal(pg_url) as writer:
        run = writer.begin_run("s", "LAN")
        writer.finish_run(run)
    with open_journal(pg_url, read_only=True) as reader:
        assert isinstance(reader, PostgresJournal)
        reader.put_digest(run, "m", {"kept": "here"})
        assert reader.digest(run) == ("m", {"kept": "here"})
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            reader.db.execute("DELETE FROM runs")
    with open_journal(pg_url) as again:
        assert again.digest(run) is None
        assert [r["run_id"] for r in again.runs()] == [run]


def test_the_run_lock_of_a_vantage_holds_across_processes_until_the_holder_dies(
    pg_url: str,
) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", HOLD, pg_url],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "held\n"
            with pytest.raises(LockBusy) as caught:
                run_lock(pg_url, "LGWAN").acquire()
            assert caught.value.holder["pid"] == str(holder.pid)  # type: ignore[attr-defined]
            assert f"PID {holder.pid}" in str(caught.value)
            with run_lock(pg_url, "LAN"):  # another vantage drills at the same time
                pass
        finally:
            holder.kill()
    # The server drops the lock with the dead process's session: wait for that session to go.
    with psycopg.connect(pg_url, autocommit=True) as db:
        deadline = time.monotonic() + 10
        while db.execute(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name LIKE %s",
            (f"%:{holder.pid}",),
        ).fetchone() != (0,):
            assert time.monotonic() < deadline, "the killed holder's session stayed"
            time.sleep(0.02)
    with run_lock(pg_url, "LGWAN") as lock:
        assert lock.held


def test_a_server_that_cannot_be_reached_is_said_plainly_without_the_password(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"postgresql://u:unreachable-pw-5@127.0.0.1:{free_port()}/d?connect_timeout=3"
    with pytest.raises(JournalUnusable) as caught:
        open_journal(url)
    assert "unreachable-pw-5" not in str(caught.value)
    assert main(["scorecard", "--journal", url, "--lang", "en"]) == 3
    err = capsys.readouterr().err
    assert "cannot connect to the database" in err and "データベースに接続できません" in err
    assert "unreachable-pw-5" not in err and "Traceback" not in err


def test_a_reader_sees_one_moment_while_a_runner_writes(journal_target: str) -> None:
    with open_journal(journal_target) as writer:
        first = writer.begin_run("s", "LAN")
        with open_journal(journal_target, read_only=True) as reader:
            with reader.snapshot():
                before = [r["status"] for r in reader.runs()]
                writer.finish_run(first)
                second = writer.begin_run("s", "LAN")
                assert [r["status"] for r in reader.runs()] == before == ["running"]
            assert [r["run_id"] for r in reader.runs()] == [first, second]
            assert reader.run(first)["status"] == "finished"


def test_a_reader_outlives_the_server_dropping_its_connection(pg_url: str) -> None:
    with open_journal(pg_url) as writer, open_journal(pg_url, read_only=True) as reader:
        assert isinstance(reader, PostgresJournal)
        first = writer.begin_run("s", "LAN")
        assert [r["run_id"] for r in reader.runs()] == [first]
        with psycopg.connect(pg_url, autocommit=True) as admin:  # what a server restart does
            gone = admin.execute(  # waits (up to 10 s) until the session has ended
                "SELECT pg_terminate_backend(%s, 10000)", (reader.db.conn.info.backend_pid,)
            ).fetchone()
            assert gone == (True,)
        writer.finish_run(first)
        with reader.snapshot():  # serve's next scrape: a new connection, the same answers
            assert reader.run(first)["status"] == "finished"
        assert reader.run_alive(writer.run(writer.begin_run("s", "LAN")))
