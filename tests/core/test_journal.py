"""Crash safety, on both backends: a drill killed with SIGKILL keeps every delivery it
completed, and the next run — on PostgreSQL, from any machine — marks it ``incomplete``.

Every test takes ``journal_target`` (tests/core/conftest.py): once a SQLite file, once a
fresh database of the session's real PostgreSQL server.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from drills.core.journal import RunStatus, open_journal
from tests.support import ROOT

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from drills.core.journal import open_journal
    from drills.core.registry import parse_registry
    from drills.core.runner import Drill

    channels = "".join(
        f"      - {{id: c{i}, kind: webhook, sim: {{latency: {{dist: uniform, low: 50ms, high: 20s}}}}}}\\n"
        for i in range(60)
    )
    reg = parse_registry(
        'municipalities:\\n  - code: "131211"\\n    name: 足立区\\n    channels:\\n' + channels, "reg.yaml"
    )

    def done(d):
        print(d.token, d.outcome.value, flush=True)

    async def main():
        async with Drill(reg, open_journal(sys.argv[1]), scenario="kill", seed=7, on_delivery=done) as drill:
            print("RUN", drill.run_id, flush=True)
            await drill.broadcast("kill test", timeout=30)

    asyncio.run(main())
    """
)


def _child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_sigkill_keeps_completed_deliveries_and_next_run_marks_incomplete(journal_target):
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, journal_target],
        stdout=subprocess.PIPE,
        text=True,
        env=_child_env(),
    )
    assert child.stdout is not None
    run_line = child.stdout.readline().split()
    assert run_line[0] == "RUN", run_line
    run_id = run_line[1]
    reported: list[str] = []
    deadline = time.monotonic() + 30
    while len(reported) < 10 and time.monotonic() < deadline:
        line = child.stdout.readline()
        assert line, "child died before delivering"
        reported.append(line.split()[0])
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)
    child.stdout.close()
    assert child.returncode == -signal.SIGKILL

    with open_journal(journal_target) as journal:
        stored = {d.token for d in journal.deliveries(run_id)}
        # Everything the child reported as completed is in the journal …
        assert set(reported) <= stored
        # … and the drill really was killed half-way, not after it finished.
        assert 10 <= len(stored) < 60
        assert journal.run(run_id)["status"] == RunStatus.RUNNING
        next_run = journal.begin_run(scenario="kill")
        dead = journal.run(run_id)
        assert dead["status"] == RunStatus.INCOMPLETE
        assert dead["finished_at"] is not None
        assert journal.run(next_run)["status"] == RunStatus.RUNNING
        assert {d.token for d in journal.deliveries(run_id)} == stored  # nothing recorded is lost


def test_live_run_of_another_process_is_not_marked(journal_target):
    with open_journal(journal_target) as journal:
        mine = journal.begin_run(scenario="a")
        journal.begin_run(scenario="b")  # same (live) process: the first run stays running
        assert journal.run(mine)["status"] == RunStatus.RUNNING


def test_previous_run_is_same_scenario_and_vantage(journal_target):
    with open_journal(journal_target) as journal:
        a1 = journal.begin_run(scenario="a", run_id="r1")
        journal.begin_run(scenario="b", run_id="r2")
        journal.begin_run(scenario="a", vantage="LGWAN", run_id="r3")
        a2 = journal.begin_run(scenario="a", run_id="r4")
        assert journal.previous_run(a2)["run_id"] == a1
        assert journal.previous_run(a1) is None


# ------------------------------------------------------------ a second machine (PostgreSQL)

# Machine A: begins a run, records one delivery, says so, then waits to be killed.
MACHINE_A = textwrap.dedent(
    """
    import socket, sys, time
    from drills.core.delivery import Delivery, Outcome
    from drills.core.journal import open_journal

    j = open_journal(sys.argv[1])
    run = j.begin_run(scenario="地震", vantage="LGWAN")
    now = time.time()
    j.record(Delivery(run, "s", "131211", "足立区", "chat", "webhook", "tok-a", Outcome.DELIVERED,
                      sent_at=now, delivered_at=now, latency_s=0.0, vantage="LGWAN", scenario="地震"))
    print(run, socket.gethostname(), flush=True)
    sys.stdin.read()
    """
)

# Machine B: another host name and pid namespace; begins its own run (which marks dead
# runs first) and prints what it found.
MACHINE_B = textwrap.dedent(
    """
    import json, socket, sys
    from drills.core.journal import open_journal

    with open_journal(sys.argv[1]) as j:
        mine = j.begin_run(scenario="地震", vantage="テレワーク")
        other = j.run(sys.argv[2])
        j.finish_run(mine)
        print(json.dumps({"host": socket.gethostname(), "mine": j.run(mine)["host"],
                          "other": other["status"], "other_host": other["host"]}))
    """
)


# Another "machine": its own host name and pid namespace (a user namespace too, so this
# works without root, as in CI; the network stays the host's, to reach the server).
MACHINE = ("unshare", "--user", "--map-root-user", "--uts", "--pid", "--fork", "--mount-proc")


def _machine_b_available() -> str | None:
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    done = subprocess.run([*MACHINE, "hostname", "lgwan-b"], capture_output=True, text=True)
    if done.returncode != 0:
        return f"cannot make a second host name here (unshare: {done.stderr.strip()})"
    return None


def _on_machine_b(target: str, run_id: str) -> dict[str, str]:
    import json

    done = subprocess.run(
        [
            *(*MACHINE, "sh", "-c"),
            'hostname lgwan-b && exec "$0" -c "$1" "$2" "$3"',
            *(sys.executable, MACHINE_B, target, run_id),
        ],
        capture_output=True,
        text=True,
        env=_child_env(),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_a_second_machine_marks_a_killed_run_but_not_a_live_one(pg_url):
    reason = _machine_b_available()
    if reason is not None:
        pytest.skip(reason)
    a = subprocess.Popen(
        [sys.executable, "-c", MACHINE_A, pg_url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=_child_env(),
    )
    assert a.stdout is not None and a.stdin is not None
    run_id, host_a = a.stdout.readline().split()
    try:
        # B cannot see A's pid (its own pid namespace) and has another name: A is alive
        # all the same, because its session still holds the run's lock.
        seen = _on_machine_b(pg_url, run_id)
        assert seen["host"] == seen["mine"] == "lgwan-b" != host_a == seen["other_host"]
        assert seen["other"] == RunStatus.RUNNING
    finally:
        a.kill()
        a.wait(timeout=10)
        a.stdin.close()
        a.stdout.close()
    seen = _on_machine_b(pg_url, run_id)
    assert seen["other"] == RunStatus.INCOMPLETE
    with open_journal(pg_url, read_only=True) as journal:
        dead = journal.run(run_id)
        assert dead["status"] == RunStatus.INCOMPLETE and dead["host"] == host_a
        assert [d.token for d in journal.deliveries(run_id)] == ["tok-a"]
        assert dead["finished_at"] == journal.deliveries(run_id)[0].delivered_at


def test_sqlite_leaves_a_run_of_another_host_alone(tmp_path: Path):
    """SQLite: one file, one machine — a run written under another host name is not this
    host's to judge (its pid means nothing here), so it stays ``running``."""
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    with open_journal(tmp_path / "j.sqlite") as journal:
        run = journal.begin_run(scenario="a")
        journal.db.execute(
            "UPDATE runs SET host = 'elsewhere', pid = ? WHERE run_id = ?",
            (int(gone.stdout), run),
        )
        journal.begin_run(scenario="b")
        assert journal.run(run)["status"] == RunStatus.RUNNING
