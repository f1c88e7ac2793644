"""Fault matrix, harness rows: signals, SIGKILL, storage faults, the lock, the wall clock.

Each case drives the real runner — ``tsunagari run`` / ``tsunagari demo`` in a child
process this test starts (signals go to that child only), or the operator API
in-process for the clock — and checks (a) the outcome, exit code and reason, (b) no
traceback in anything a user reads, (c) the journal intact and the run's status
(:mod:`tests.faults.checks`).

What each fault must become (README "Reliability / 信頼性")::

    SIGTERM mid-run          the step in flight finishes (every message sent is
                             recorded, none cut), no further step or test starts,
                             run ``interrupted``, exit 143, run_finished + summary
                             + scorecard (status interrupted) written
    SIGINT twice mid-run     the second cuts the wait: messages still in flight are
                             recorded ``error`` ("interrupted before arrival could be
                             confirmed"), none lost or missing; exit 130
    SIGTERM twice mid-demo   as above through ``demo``; its ground-truth check agrees
    SIGKILL, then a new run  the killed run keeps its records, becomes ``incomplete``
    journal on a read-only   readers (scorecard) read it; a run refuses with exit 3
    file system              and one bilingual line, nothing written
    disk full during demo    exit 3, "the disk is full", journal intact, no output
                             file (whole or half)
    output folder immutable  the drill is journalled; its files are reported as not
                             written (exit 3), no INTERNALERROR
    journal folder immutable exit 3, bilingual, no traceback (also not in the JSON)
    two runs, a demo, one    one drills; the others exit 4 naming the holder's pid
    journal                  and its start in Asia/Tokyo (JST)
    wall clock ±1 h          no measured latency changes: every record agrees with
                             the simulators' ledgers (monotonic ground truth)

Read-only and full file systems are real: a small ``tmpfs`` the case mounts (and
remounts read-only), not an injected ``ENOSPC``; the immutable folders are
``chattr +i``. Both need root: without it those cases skip and say so.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from drills.core.delivery import Outcome
from drills.core.interrupt import INTERRUPTED_REASON
from drills.core.lock import tokyo_time
from tests.faults.checks import assert_no_traceback, journal_intact, json_lines, run_status
from tests.faults.matrix import FaultCase
from tests.faults.simdrill import sim_drill
from tests.support import tmpfs

__all__ = ["CASES"]

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 60.0  # upper bound on any child's whole life; a case normally takes a few seconds

# Three simulated channels. FAST settles well inside a 5 s step; QUICK sooner still;
# SLOW answers at once on one channel and keeps the other two in flight for 15-30 s (a
# signal after the first record always finds messages still out).
FAST = """\
defaults: {slo: {latency: 5s}}
municipalities:
  - {code: "131211", name: 足立区, tags: [23ku], channels: [
      {id: chat, kind: webhook, sim: {latency: {dist: uniform, low: 100ms, high: 2s}}},
      {id: mail, kind: webhook, sim: {latency: {dist: uniform, low: 100ms, high: 2s}}}]}
  - {code: "131016", name: 千代田区, tags: [23ku], channels: [
      {id: chat, kind: webhook, sim: {latency: {dist: uniform, low: 100ms, high: 2s}}}]}
"""
QUICK_REGISTRY = FAST.replace("high: 2s", "high: 300ms")
SLOW = (
    FAST.replace("low: 100ms, high: 2s", "low: 15s, high: 30s")
    .replace("low: 15s, high: 30s", "low: 50ms, high: 300ms", 1)
    .replace("latency: 5s", "latency: 60s")
)
SENT = 3 * 5  # channels × repeat: the messages of one step
CLOCK = FAST.replace("high: 2s", "high: 800ms")

SCENARIO = '''\
"""信号の訓練"""
import pytest

pytestmark = [pytest.mark.scenario("信号の訓練")]


def test_first(drill):
    drill.broadcast("参集してください", repeat=5, timeout={t}, step="first").expect(reached="100%", within="{t}s")
    drill.broadcast("二回目", timeout={t}, step="second").expect(reached="100%", within="{t}s")


def test_second(drill):
    drill.broadcast("三回目", timeout={t}, step="third").expect(reached="100%", within="{t}s")
'''
QUICK = '''\
"""確認の訓練"""
import pytest

pytestmark = [pytest.mark.scenario("確認の訓練")]


def test_quick(drill):
    drill.broadcast("参集してください", timeout=5).expect(reached="100%", within="5s")
'''


# --------------------------------------------------------------------------- children


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "160"}
    for name in ("PYTEST_ADDOPTS", "PYTEST_CURRENT_TEST", "TSUNAGARI_LANG"):
        env.pop(name, None)
    return env


@dataclass
class Child:
    """A ``tsunagari`` process this case started; its output goes to files (no pipe stalls)."""

    proc: subprocess.Popen[bytes]
    out: Path
    err: Path

    @property
    def stdout(self) -> str:
        return self.out.read_text(encoding="utf-8", errors="replace")

    @property
    def stderr(self) -> str:
        return self.err.read_text(encoding="utf-8", errors="replace")

    def wait(self) -> int:
        try:
            return self.proc.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"still running after {WAIT_S} s:\n{self.stderr[-3000:]}"
            ) from None

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)  # only ever the child this case started

    def signal_twice(self, sig: signal.Signals) -> None:
        """*sig*, then — once the child said it is stopping — *sig* again (two signals
        sent at once may arrive as one)."""
        self.signal(sig)
        deadline = time.monotonic() + WAIT_S
        while f"got {sig.name}" not in self.stderr:
            assert self.proc.poll() is None, f"the child ended first:\n{self.stderr[-3000:]}"
            assert time.monotonic() < deadline, "the child never said it got the signal"
            time.sleep(0.01)
        self.signal(sig)

    def records(self) -> list[dict[str, Any]]:
        return json_lines(self.stderr)

    def clean(self) -> None:
        """(b): nothing a user reads holds a traceback."""
        assert_no_traceback(self.stdout, "stdout")
        assert_no_traceback(self.stderr, "stderr")


def start(cwd: Path, *args: str, name: str = "child") -> Child:
    out, err = cwd / f"{name}.out", cwd / f"{name}.err"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen(
            [sys.executable, "-m", "drills.cli", "--lang", "en", *args],
            cwd=cwd,
            env=_env(),
            stdout=o,
            stderr=e,
        )
    return Child(proc, out, err)


def tsunagari(cwd: Path, *args: str, name: str = "child") -> tuple[int, Child]:
    child = start(cwd, *args, name=name)
    return child.wait(), child


def delivered_count(journal: Path) -> int:
    """Records in *journal* so far (0 before the file or its tables exist); read-only."""
    if not journal.is_file():
        return 0
    try:
        db = sqlite3.connect(f"{journal.as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            return int(db.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0])
        finally:
            db.close()
    except sqlite3.OperationalError:  # not made yet
        return 0


def await_records(child: Child, journal: Path, n: int = 1) -> int:
    """Block until the child has journalled *n* records (fails if it ends first)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        found = delivered_count(journal)
        if found >= n:
            return found
        assert child.proc.poll() is None, f"the child ended first:\n{child.stderr[-3000:]}"
        time.sleep(0.02)
    raise AssertionError(f"no {n} records in {WAIT_S} s")


def drill_folder(tmp_path: Path, registry: str, scenario: str) -> Path:
    (tmp_path / "s").mkdir()
    (tmp_path / "registry.yaml").write_text(registry, encoding="utf-8")
    (tmp_path / "s" / "test_drill.py").write_text(scenario, encoding="utf-8")
    return tmp_path


def run_args(*extra: str, journal: str = "j.sqlite") -> tuple[str, ...]:
    return ("run", "s", "--registry", "registry.yaml", "--journal", journal, *extra)


def the_record(child: Child, event: str) -> dict[str, Any]:
    found = [r for r in child.records() if r.get("event") == event]
    assert len(found) == 1, f"one {event} record expected:\n{child.stderr[-3000:]}"
    return found[0]


def bilingual(text: str) -> None:
    assert any("\u3040" <= c <= "\u9fff" for c in text), f"no Japanese in {text!r}"
    assert " / " in text or "\n" in text, f"not Japanese then English: {text!r}"


# --------------------------------------------------------------------------- file systems


def remount_read_only(where: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)


@contextlib.contextmanager
def immutable(folder: Path) -> Iterator[Path]:
    """*folder* made immutable (``chattr +i``: even root cannot create files in it)."""
    folder.mkdir(exist_ok=True)
    done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot make a folder immutable here: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=False)


# --------------------------------------------------------------------------- signals


def sigterm_mid_run(tmp_path: Path) -> None:
    cwd = drill_folder(tmp_path, FAST, SCENARIO.format(t=5))
    child = start(cwd, *run_args())
    await_records(child, cwd / "j.sqlite")
    child.signal(signal.SIGTERM)
    assert child.wait() == 143, child.stderr
    child.clean()
    finished = the_record(child, "run_finished")
    assert finished["exit"] == 143 and finished["interrupted"] == "SIGTERM"
    stopped = the_record(child, "run_interrupted")
    assert stopped["aborted"] is False  # the step in flight ended within the grace
    said = the_record(child, "signal_received")  # at once, before the step ended
    assert said["signal"] == "SIGTERM" and said["grace_s"] == 10
    [run_id] = finished["runs"]
    assert run_status(cwd / "j.sqlite", run_id) == "interrupted"
    from drills.core.journal import Journal

    with Journal(cwd / "j.sqlite", read_only=True) as journal:
        records = journal.deliveries(run_id)
    # The step in flight finished: every message it sent has its real outcome …
    assert len(records) == SENT and {d.step for d in records} == {"first"}
    assert all(d.outcome.reached for d in records), [d.outcome for d in records]
    # … and nothing started after the signal (no "second" or "third" step); the pytest
    # summary says why it stopped. (Its scorecard: the demo case.)
    assert "stopped by SIGTERM" in child.stdout


def sigint_twice_mid_run(tmp_path: Path) -> None:
    cwd = drill_folder(tmp_path, SLOW, SCENARIO.format(t=30))
    child = start(cwd, *run_args())
    await_records(child, cwd / "j.sqlite")
    child.signal_twice(signal.SIGINT)  # the second cuts the wait for the messages in flight
    assert child.wait() == 130, child.stderr
    child.clean()
    assert the_record(child, "run_interrupted")["aborted"] is True
    [run_id] = the_record(child, "run_finished")["runs"]
    assert run_status(cwd / "j.sqlite", run_id) == "interrupted"
    from drills.core.journal import Journal

    with Journal(cwd / "j.sqlite", read_only=True) as journal:
        records = journal.deliveries(run_id)
    # Every message sent has a record: seen ones as seen, the rest honestly "error"
    # (sent, fate unknown, not the channel's fault) — none lost, none missing. (On a
    # miss, say which were recorded and what the child said: a rare failure in a fresh
    # CI run left only the count to go on.)
    assert len(records) == SENT, (
        [(d.municipality_code, d.channel_id, d.outcome.value, d.reason[:60]) for d in records],
        child.stderr[-3000:],
    )
    cut = [d for d in records if d.outcome is Outcome.ERROR]
    assert all(d.reason == INTERRUPTED_REASON for d in cut)
    slow = [d for d in records if (d.municipality_code, d.channel_id) != ("131211", "chat")]
    assert len(slow) == 10 and all(d in cut for d in slow)  # 15-30 s: all still out
    assert all(d.outcome.reached for d in records if d not in cut)


def sigterm_twice_mid_demo(tmp_path: Path) -> None:
    journal = tmp_path / "out" / "journal.sqlite"
    child = start(tmp_path, "demo", "--out", "out", "--seed", "1", "--repeat", "2")
    await_records(child, journal)
    child.signal_twice(signal.SIGTERM)
    assert child.wait() == 143, child.stderr
    child.clean()
    assert "stopped by SIGTERM" in child.stderr and "interrupted" in child.stderr
    bilingual(child.stderr)
    assert run_status(journal) == "interrupted"
    card = json.loads((tmp_path / "out" / "scorecard.json").read_text("utf-8"))
    assert card["status"] == "interrupted"
    assert "⚠ interrupted drill" in child.stdout  # the readiness table says so
    # every record, cut ones included, agrees with the simulators' ground truth
    assert " 0 disagree" in child.stdout, child.stdout[-2000:]


def sigkill_then_new_run(tmp_path: Path) -> None:
    cwd = drill_folder(tmp_path, SLOW, SCENARIO.format(t=30))
    child = start(cwd, *run_args(), name="killed")
    await_records(child, cwd / "j.sqlite")
    child.signal(signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL
    kept = delivered_count(cwd / "j.sqlite")
    assert 1 <= kept < SENT  # killed half-way: the slow channels' messages were still out
    [killed] = journal_intact(cwd / "j.sqlite")
    assert killed["status"] == "running"  # nobody could say otherwise yet
    _one_finished_run(cwd / "j.sqlite")  # the next drill, through the operator API
    runs = {r["run_id"]: r for r in journal_intact(cwd / "j.sqlite")}
    assert runs[killed["run_id"]]["status"] == "incomplete"
    from drills.core.journal import Journal

    with Journal(cwd / "j.sqlite", read_only=True) as j:
        assert len(j.deliveries(killed["run_id"])) == kept  # nothing recorded is lost
    assert sorted(r["status"] for r in runs.values()) == ["finished", "incomplete"]


# --------------------------------------------------------------------------- storage


def _one_finished_run(journal: Path) -> str:
    """A real drill (operator API) into *journal*; its run id."""
    from drills.core.registry import parse_registry
    from drills.operator.scenario import open_drill

    registry = parse_registry(QUICK_REGISTRY, "quick.yaml")
    with open_drill(registry, str(journal), scenario="ro") as drill:
        drill.broadcast("参集してください", timeout=5)
        return drill.ctx.run_id


def journal_read_only(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "4m") as fs:
        journal = fs / "j.sqlite"
        run_id = _one_finished_run(journal)
        remount_read_only(fs)
        before = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in fs.iterdir())
        # A reader reads it (no WAL pragma write) …
        card = start(tmp_path, "scorecard", "--journal", str(journal), "--format", "json")
        # … a writer refuses plainly: exit 3, one bilingual line, no traceback.
        drill_folder(tmp_path, FAST, QUICK)
        run = start(tmp_path, *run_args(journal=str(journal)), name="run")
        assert card.wait() == 0, card.stderr
        card.clean()
        assert json.loads(card.stdout)["run_id"] == run_id
        code = run.wait()
        assert code == 3, run.stdout + run.stderr
        run.clean()
        failure = the_record(run, "harness_failure")
        bilingual(failure["message"])
        assert "cannot make the run lock" in failure["message"]
        assert the_record(run, "run_finished")["exit"] == 3
        after = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in fs.iterdir())
        assert after == before  # nothing was written
        assert run_status(journal, run_id) == "finished"


def journal_disk_full(tmp_path: Path) -> None:
    # 400 KiB: the journal's first records fit, the drill's write-ahead log does not
    with tmpfs(tmp_path / "full", "400k") as fs:
        code, demo = tsunagari(tmp_path, "demo", "--out", str(fs / "out"), "--seed", "1")
        assert code == 3, demo.stdout + demo.stderr
        demo.clean()
        assert "the disk is full" in demo.stderr and "ディスクの空きがありません" in demo.stderr
        runs = journal_intact(fs / "out" / "journal.sqlite")
        assert [r["status"] for r in runs] in (["failed"], ["running"])
        written = sorted(p.name for p in (fs / "out").iterdir())
        assert not [n for n in written if not n.startswith("journal.sqlite")], written


def output_folder_unwritable(tmp_path: Path) -> None:
    cwd = drill_folder(tmp_path, QUICK_REGISTRY, QUICK)
    with immutable(tmp_path / "out") as out:
        run = start(cwd, *run_args("--out", str(out)))
        # the demo cannot even take the folder's lock: refused before it drills
        demo = start(cwd, "demo", "--out", str(out), name="demo")
        code = run.wait()
        assert code == 3, run.stdout + run.stderr
        run.clean()
        problems = [r["message"] for r in run.records() if r["event"] == "harness_failure"]
        assert problems and all("cannot write into" in p for p in problems), problems
        bilingual(problems[0])
        assert list(out.iterdir()) == []  # nothing, not even half a file
        [run_id] = the_record(run, "run_finished")["runs"]
        assert run_status(cwd / "j.sqlite", run_id) == "finished"  # the drill itself is kept
        assert demo.wait() == 3 and "cannot make the run lock" in demo.stderr, demo.stderr
        demo.clean()
        bilingual(demo.stderr)


def journal_folder_unwritable(tmp_path: Path) -> None:
    cwd = drill_folder(tmp_path, FAST, QUICK)
    with immutable(tmp_path / "locked") as folder:
        code, run = tsunagari(cwd, *run_args(journal=str(folder / "j.sqlite")))
        assert code == 3, run.stdout + run.stderr
        run.clean()  # was a pytest INTERNALERROR, also inside the JSON record
        failure = the_record(run, "harness_failure")
        bilingual(failure["message"])
        assert str(folder) in failure["message"]
        assert list(folder.iterdir()) == []


def two_runs_one_journal(tmp_path: Path) -> None:
    cwd = drill_folder(tmp_path, SLOW, SCENARIO.format(t=30))
    first = start(cwd, *run_args(journal="out/journal.sqlite"), name="first")
    await_records(first, cwd / "out" / "journal.sqlite")
    holder = json.loads((cwd / "out" / "journal.sqlite.lock.holder").read_text("utf-8"))
    second = start(cwd, *run_args(journal="out/journal.sqlite"), name="second")
    demo = start(cwd, "demo", "--out", "out", name="demo")
    code, code_demo = second.wait(), demo.wait()
    first.signal_twice(signal.SIGTERM)
    assert first.wait() == 143
    assert code == 4 and code_demo == 4, second.stderr + demo.stderr
    since = tokyo_time(holder["started_at"])  # Asia/Tokyo, whatever the machine's zone
    busy = the_record(second, "lock_busy")["message"]
    assert f"pid {first.proc.pid}" in busy and since in busy, busy
    assert f"pid {first.proc.pid}" in demo.stderr and since in demo.stderr, demo.stderr
    for child in (first, second, demo):
        child.clean()
    [only] = journal_intact(cwd / "out" / "journal.sqlite")  # neither refused one drilled
    assert only["pid"] == first.proc.pid and only["status"] == "interrupted"


# --------------------------------------------------------------------------- the wall clock


def clock_steps(hours: int) -> FaultCase:
    def run(tmp_path: Path) -> None:
        real = time.time
        offset = [0.0]

        def stepped() -> float:
            return real() + offset[0]

        def step_when_half_seen(seen: list[object]) -> None:
            # the step happens while half the messages are still in flight
            if len(seen) == SENT // 2:
                offset[0] = hours * 3600.0

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(time, "time", stepped)
            with sim_drill(tmp_path, CLOCK) as drill:
                seen: list[object] = []
                lock = threading.Lock()

                def tap(d: object) -> None:
                    with lock:
                        seen.append(d)
                        step_when_half_seen(seen)

                drill.drill.ctx.taps.append(tap)
                drill.drill.broadcast("時計の訓練", timeout=5, repeat=5)
        assert offset[0] == hours * 3600.0, "the clock never stepped during the drill"
        # sim_drill checked every record against the ledgers (monotonic ground truth);
        # here: no latency carries the hour, before or after the step.
        latencies = [d.latency_s for d in drill.deliveries]
        assert len(latencies) == SENT and all(x is not None and 0 < x < 5 for x in latencies)
        for d in drill.deliveries:
            entry = drill.entry(d)
            assert entry is not None and entry.visible_at is not None
            truth = entry.visible_at - d.extra["sent_mono"]
            assert d.latency_s is not None and d.error_bound_s is not None
            assert truth <= d.latency_s <= truth + d.error_bound_s + 1e-6, (d, truth)

    sign = "plus" if hours > 0 else "minus"
    return FaultCase(f"harness-clock-steps-{sign}-{abs(hours)}h", run)


CASES = [
    FaultCase("harness-sigterm-mid-run", sigterm_mid_run),
    FaultCase("harness-sigint-twice-mid-run", sigint_twice_mid_run),
    FaultCase("harness-sigterm-twice-mid-demo", sigterm_twice_mid_demo),
    FaultCase("harness-sigkill-then-new-run", sigkill_then_new_run),
    FaultCase("harness-journal-read-only", journal_read_only),
    FaultCase("harness-journal-disk-full", journal_disk_full),
    FaultCase("harness-output-folder-unwritable", output_folder_unwritable),
    FaultCase("harness-journal-folder-unwritable", journal_folder_unwritable),
    FaultCase("harness-two-runs-one-journal", two_runs_one_journal),
    clock_steps(+1),
    clock_steps(-1),
]
