"""Group commit keeps the crash guarantee: nothing is acknowledged before it is committed.

A drill in a child process prints each delivery as the runner passes it on
(``on_delivery``: after its group was committed) while deliveries keep
completing about one a millisecond; the test SIGKILLs it mid-stream — between
groups, with rows waiting — and every printed delivery must be in the journal.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from drills.core.delivery import Delivery, Outcome
from drills.core.journal import GroupCommit, Journal, RunStatus

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import asyncio, sys, time
    from drills.core.journal import Journal
    from drills.core.pacing import Pacing
    from drills.core.registry import parse_registry
    from drills.core.runner import Drill
    from probes.base import Accepted, Probe, Sighting

    N = int(sys.argv[2])

    class Steady(Probe):  # sent at once; seen i ms later: about one delivery a millisecond
        kind = "webhook"
        def __init__(self, key, env, far_s):
            super().__init__(key, None, env)
            self.far_s = far_s
        async def send(self, message):
            return Accepted(at=time.monotonic())
        async def observe(self, message):
            await asyncio.sleep(self.far_s)
            return Sighting(at=time.monotonic(), error_bound_s=0.001)

    lines = ["municipalities:", '  - code: "131211"', "    name: 足立区", "    channels:"]
    lines += [f"      - {{id: c{i}, kind: webhook, sim: {{}}}}" for i in range(N)]
    reg = parse_registry("\\n".join(lines) + "\\n", "reg.yaml")

    def acked(d):
        sys.stdout.write(d.token + "\\n")
        sys.stdout.flush()

    async def main():
        journal = Journal(sys.argv[1])
        drill = Drill(reg, journal, on_delivery=acked, pacing=Pacing())
        drill.start()
        for i, t in enumerate(reg.targets()):
            drill._probes[t.key] = Steady(t.key, drill.env, 0.001 * i)
        await drill.broadcast("x", timeout=60)
        sys.stdout.write("done\\n")
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


def test_sigkill_keeps_every_acknowledged_delivery(tmp_path) -> None:
    db = tmp_path / "journal.sqlite"
    n = 3000  # ~3 s of steady completions; killed well before the end
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db), str(n)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    acked: list[str] = []
    try:
        assert child.stdout is not None
        for line in child.stdout:
            token = line.strip()
            assert token != "done", "the drill ended before it could be killed"
            acked.append(token)
            if len(acked) >= 400:  # mid-stream: more complete every millisecond
                os.kill(child.pid, signal.SIGKILL)
                break
    finally:
        child.kill()
        child.wait(10)
        if child.stdout is not None:
            child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    with Journal(db) as journal:
        (run,) = journal.runs()
        assert journal.mark_dead_runs() == [run["run_id"]]  # found dead: incomplete
        assert journal.run(run["run_id"])["status"] == RunStatus.INCOMPLETE
        kept = {d.token for d in journal.deliveries(run["run_id"])}
    missing = [t for t in acked if t not in kept]
    assert missing == [], f"{len(missing)} acknowledged deliveries lost"
    assert len(kept) < n  # killed mid-stream: not everything was written


class Book:
    """A journal stand-in that records the groups it was asked to write."""

    def __init__(self, fail: bool = False) -> None:
        self.groups: list[list[str]] = []
        self.fail = fail

    def record_many(self, deliveries: list[Delivery]) -> None:
        if self.fail:
            raise OSError("disk full")
        self.groups.append([d.token for d in deliveries])


def delivery(i: int) -> Delivery:
    return Delivery("r", "s", "131211", "足立区", "c", "webhook", f"T{i}", Outcome.DELIVERED)


async def test_a_caller_is_told_only_after_its_group_is_written() -> None:
    book = Book()
    commits = GroupCommit(book, window_s=0.05, max_rows=1000)
    told: list[str] = []

    async def one(i: int) -> None:
        await commits.commit(delivery(i))
        told.append(f"T{i}")
        assert f"T{i}" in [t for g in book.groups for t in g]

    tasks = [asyncio.create_task(one(i)) for i in range(5)]
    await asyncio.sleep(0)
    assert told == [] and book.groups == []  # within the window: waiting, unwritten
    await asyncio.gather(*tasks)
    assert book.groups == [[f"T{i}" for i in range(5)]]  # one transaction
    assert commits.groups == 1 and commits.rows == 5


async def test_a_full_group_is_written_at_once_and_flush_writes_the_rest() -> None:
    book = Book()
    commits = GroupCommit(book, window_s=60.0, max_rows=3)
    tasks = [asyncio.create_task(commits.commit(delivery(i))) for i in range(4)]
    await asyncio.wait(tasks, timeout=1.0)
    assert book.groups == [["T0", "T1", "T2"]]  # no 60 s wait for a full group
    assert [t.done() for t in tasks] == [True, True, True, False]
    commits.flush()
    await asyncio.gather(*tasks)
    assert book.groups[-1] == ["T3"]


async def test_a_failed_write_reaches_every_caller_of_the_group() -> None:
    commits = GroupCommit(Book(fail=True), window_s=0.01)
    results = await asyncio.gather(
        *(commits.commit(delivery(i)) for i in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, OSError) for r in results)


def test_record_many_is_one_transaction(tmp_path) -> None:
    with Journal(tmp_path / "j.sqlite") as journal:
        run = journal.begin_run("s")
        rows = [
            Delivery(run, "s", "131211", "足立区", "c", "webhook", f"TSG-{i:012d}", Outcome.LOST)
            for i in range(3)
        ]
        bad = Delivery(run, "s", "131211", "足立区", "c", "webhook", "x", Outcome.LOST)
        object.__setattr__(bad, "throttled", object())  # unwritable: the whole group fails
        with pytest.raises(sqlite3.Error):
            journal.record_many([*rows, bad])
        assert journal.deliveries(run) == []
        journal.record_many(rows)
        assert [d.token for d in journal.deliveries(run)] == [d.token for d in rows]
