"""Crash safety: a drill killed with SIGKILL keeps every delivery it completed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from drills.core.journal import Journal, RunStatus

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from drills.core.journal import Journal
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
        async with Drill(reg, Journal(sys.argv[1]), scenario="kill", seed=7, on_delivery=done) as drill:
            print("RUN", drill.run_id, flush=True)
            await drill.broadcast("kill test", timeout=30)

    asyncio.run(main())
    """
)


def test_sigkill_keeps_completed_deliveries_and_next_run_marks_incomplete(tmp_path):
    db = tmp_path / "journal.sqlite"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db)], stdout=subprocess.PIPE, text=True
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

    journal = Journal(db)
    try:
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
    finally:
        journal.close()


def test_live_run_of_another_process_is_not_marked(tmp_path):
    journal = Journal(tmp_path / "j.sqlite")
    mine = journal.begin_run(scenario="a")
    journal.begin_run(scenario="b")  # same (live) pid: the first run stays running
    assert journal.run(mine)["status"] == RunStatus.RUNNING
    journal.close()


def test_previous_run_is_same_scenario_and_vantage(tmp_path):
    journal = Journal(tmp_path / "j.sqlite")
    a1 = journal.begin_run(scenario="a", run_id="r1")
    journal.begin_run(scenario="b", run_id="r2")
    journal.begin_run(scenario="a", vantage="LGWAN", run_id="r3")
    a2 = journal.begin_run(scenario="a", run_id="r4")
    assert journal.previous_run(a2)["run_id"] == a1
    assert journal.previous_run(a1) is None
    journal.close()
