"""Storage faults, the run lock's time and the run-id zone, below the fault matrix.

A journal that is a folder or not SQLite, a reader on a journal it must not write,
output files on a full disk, the ``lock_busy`` message on a machine whose zone is
not Tokyo, and run ids that read like every other time an operator sees. The
commands under the same faults (``run``/``demo`` in a child process) are rows of
the fault matrix (``tests/faults/cases_harness.py``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from drills.cli import main
from drills.core.errors import LockBusy
from drills.core.journal import (
    SCHEMA_VERSION,
    Journal,
    JournalUnusable,
    new_run_id,
    run_id_time,
)
from drills.core.lock import RunLock, tokyo_time
from drills.core.registry import parse_registry
from drills.operator.outputs import RUN_FILES, write_run_outputs
from drills.operator.scenario import open_drill
from tests.faults.checks import assert_no_traceback, json_lines
from tests.support import run_tsunagari, tmpfs

REGISTRY = """\
defaults: {slo: {latency: 5s}}
municipalities:
  - {code: "131211", name: 足立区, channels: [
      {id: chat, kind: webhook, sim: {latency: 50ms}},
      {id: mail, kind: webhook, sim: {latency: 80ms}}]}
"""


def drilled(journal: Path) -> str:
    with open_drill(parse_registry(REGISTRY, "r.yaml"), str(journal), scenario="保存") as drill:
        drill.broadcast("参集してください", timeout=5)
        return drill.ctx.run_id


def file_state(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


# --------------------------------------------------------------------------- journal


@pytest.fixture
def bad_journals(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "folder.sqlite").mkdir()
    (tmp_path / "garbage.sqlite").write_bytes(b"\x89PNG\r\n" + bytes(range(256)) * 40)
    return {"folder": tmp_path / "folder.sqlite", "garbage": tmp_path / "garbage.sqlite"}


@pytest.mark.parametrize("kind", ["folder", "garbage"])
@pytest.mark.parametrize("read_only", [False, True])
def test_a_journal_that_is_no_journal_is_named_plainly(bad_journals, kind, read_only):
    path = bad_journals[kind]
    before = path.read_bytes() if path.is_file() else None
    with pytest.raises(JournalUnusable) as caught:
        Journal(path, read_only=read_only)
    ja, en = str(caught.value).split(" / ")
    assert str(path) in ja and str(path) in en
    assert ("folder" if kind == "folder" else "not a SQLite journal") in en
    assert (path.read_bytes() if path.is_file() else None) == before  # left as it was
    assert sorted(p.name for p in path.parent.iterdir()) == ["folder.sqlite", "garbage.sqlite"]


@pytest.mark.parametrize("command", ["scorecard", "serve", "journal"])
def test_reading_commands_exit_3_with_two_lines(bad_journals, command, capsys):
    extra = {"journal": ["stats"]}.get(command, [])
    code = main(["--lang", "en", command, *extra, "--journal", str(bad_journals["garbage"])])
    out, err = capsys.readouterr()
    assert code == 3, out + err
    assert_no_traceback(out + err)
    ja, en = err.strip().splitlines()
    assert "SQLite の記録ファイルではない" in ja and "not a SQLite journal" in en


SCENARIO = """\
def test_quick(drill):
    drill.broadcast("参集してください", timeout=5).expect(reached="100%", within="5s")
"""


def test_run_with_a_folder_for_its_journal(tmp_path, bad_journals):
    (tmp_path / "registry.yaml").write_text(REGISTRY, encoding="utf-8")
    (tmp_path / "test_quick.py").write_text(SCENARIO, encoding="utf-8")
    done = run_tsunagari(
        *("run", "test_quick.py", "--registry", "registry.yaml"),
        *("--journal", str(bad_journals["folder"])),
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 3, done.stdout + done.stderr
    assert_no_traceback(done.stdout + done.stderr)
    records = json_lines(done.stderr)
    [failure] = [r for r in records if r["event"] == "harness_failure"]
    ja, en = failure["message"].split(" / ")
    assert "フォルダです" in ja and "it is a folder, not a file" in en
    assert records[-1]["event"] == "run_finished" and records[-1]["runs"] == []  # nothing drilled


def test_demo_with_a_folder_for_its_journal(tmp_path, capsys):
    (tmp_path / "out" / "journal.sqlite").mkdir(parents=True)
    code = main(["--lang", "en", "demo", "--out", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert code == 3 and "it is a folder, not a file" in err, out + err
    assert_no_traceback(out + err)
    # nothing drilled, nothing written besides the lock the demo took and let go
    assert {p.name for p in (tmp_path / "out").iterdir()} <= {
        "journal.sqlite",
        "journal.sqlite.lock",
    }


def test_a_reader_writes_nothing(tmp_path):
    """Read-only readers (scorecard, serve): no WAL pragma, no digest stored, no new file."""
    journal = tmp_path / "j.sqlite"
    run_id = drilled(journal)
    before = file_state(journal)
    from drills.reporting.scorecard import build_scorecard

    with Journal(journal, read_only=True) as reader:
        card = build_scorecard(reader, run_id)
        assert reader.digest(run_id) is not None  # kept for this process …
    assert card["status"] == "finished" and card["run_id"] == run_id
    assert file_state(journal) == before  # … not in the file: not a byte changed
    # (SQLite's WAL readers share a -shm index and may leave an empty -wal beside it:
    # where the folder cannot be written they read without; harness-journal-read-only)
    wal = Path(str(journal) + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    with Journal(journal) as writer:  # a writer stores it
        assert writer.digest(run_id) is None


def test_an_older_journal_is_brought_up_to_date_once_then_read(tmp_path):
    old = tmp_path / "v0.sqlite"
    old.write_bytes((Path(__file__).parents[1] / "fixtures" / "journal-v0.sqlite").read_bytes())
    with Journal(old, read_only=True) as reader:
        assert reader.schema_version == SCHEMA_VERSION
        assert reader.runs()


# --------------------------------------------------------------------------- outputs


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "disk", "64k") as where:
        yield where


def test_outputs_on_a_full_disk_are_whole_or_absent(tmp_path, small_disk):
    journal = tmp_path / "j.sqlite"
    run_id = drilled(journal)
    with Journal(journal) as j:
        done = write_run_outputs(j, run_id, None, small_disk / "run", lang="en")
    # 64 KiB: scorecard.json fits, the HTML (its charts) does not
    assert "scorecard.json" in {p.name for p in done.written}
    assert "scorecard.html" not in {p.name for p in done.written}
    assert any(p.startswith("scorecard.html: ") and "No space left" in p for p in done.problems)
    left = sorted(p.name for p in (small_disk / "run").iterdir())
    assert set(left) <= set(RUN_FILES), left  # no temporary file left behind
    for name in left:  # every file there is whole
        text = (small_disk / "run" / name).read_text(encoding="utf-8")
        if name.endswith(".json"):
            assert json.loads(text)["run_id"] == run_id


# --------------------------------------------------------------------------- time zones


@pytest.fixture
def new_york(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process in another zone (the machine's zone must not leak into what people read)."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


HOLDER = textwrap.dedent(
    """
    import sys, time
    from drills.core.lock import RunLock
    with RunLock(sys.argv[1]):
        print("held", flush=True)
        time.sleep(60)
    """
)


def test_lock_busy_names_the_holder_start_in_tokyo(tmp_path, new_york):
    path = tmp_path / "j.sqlite.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(LockBusy) as caught:
            RunLock(path).acquire()
    finally:
        holder.kill()
        holder.communicate()
    started = json.loads(Path(str(path) + ".holder").read_text("utf-8"))["started_at"]
    message = str(caught.value)
    assert f"PID {holder.pid}" in message and tokyo_time(started) in message
    # …which is not what this machine's clock shows (New York is 13 or 14 hours behind)
    local = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
    assert local not in message and tokyo_time(started).endswith(" JST")


def test_run_ids_are_tokyo_time_whatever_the_machine_zone(tmp_path, new_york):
    journal = Journal(tmp_path / "j.sqlite")
    try:
        run_id = journal.begin_run("zone")
        started = journal.run(run_id)["started_at"]
        from drills.reporting.scorecard import build_scorecard

        card = build_scorecard(journal, run_id)
    finally:
        journal.close()
    assert run_id[15:18] == "JST"
    at = run_id_time(run_id)
    assert at is not None and abs(at.timestamp() - started) < 1
    # the id reads as the start the scorecard prints (Asia/Tokyo), to the second
    shown = datetime.fromisoformat(card["started_at"])
    assert run_id[:15] == shown.strftime("%Y%m%dT%H%M%S")
    assert new_run_id(1796407525.0).startswith("20261205T030525JST-")


def test_old_utc_run_ids_still_work(tmp_path, capsys):
    old = "20261204T180525-3fa2c1"  # written before the zone changed: UTC, no mark
    with Journal(tmp_path / "j.sqlite") as journal:
        journal.begin_run("古い実行", run_id=old)
        journal.finish_run(old)
        journal.begin_run("新しい実行")
    code = main(
        ["scorecard", "--journal", str(tmp_path / "j.sqlite"), "--run", old, "--format", "json"]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["run_id"] == old
    assert run_id_time(old) == run_id_time("20261205T030525JST-3fa2c1")  # the same instant
    assert run_id_time("not-a-run-id") is None
