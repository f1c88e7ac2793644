"""A step cut short keeps every record it owes, and leaves nothing of itself running.

Two faults of the matrix's harness rows, pinned down in-process where their timing
can be held still (the matrix cases ``harness-journal-disk-full`` and
``harness-sigint-twice-mid-run`` meet them only under load, by chance):

- one delivery fails (a real full disk under the journal): the step raises, and no
  other delivery of it is left running — none goes on sending after the run is
  closed, none fails unheard when the loop shuts down (a traceback on stderr);
- a signal cuts the step while a delivery that was already *seen* waits for the
  loop-lag tick its error bound needs: it is still recorded ``delivered``.

The probe is a stand-in (sent at once, seen after ``far_s``); the journal is real.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from drills.core import interrupt
from drills.core.delivery import Outcome
from drills.core.journal import Journal
from drills.core.pacing import Pacing
from drills.core.registry import Registry, parse_registry
from drills.core.runner import Drill
from probes.base import Accepted, DrillMessage, Probe, ProbeEnv, Sighting
from tests.support import tmpfs

STALL_S = 0.05  # how long the loop stalls just after a sighting (the injected fault)


class Held(Probe):
    """Sent at once; seen *far_s* seconds later."""

    kind = "webhook"

    def __init__(self, key: str, env: ProbeEnv, far_s: float) -> None:
        super().__init__(key, None, env)  # type: ignore[arg-type]  # no settings: no network
        self.far_s = far_s

    async def send(self, message: DrillMessage) -> Accepted:
        return Accepted(at=time.monotonic())

    async def observe(self, message: DrillMessage) -> Sighting:
        await asyncio.sleep(self.far_s)
        return Sighting(at=time.monotonic(), error_bound_s=0.001)


def registry(n: int) -> Registry:
    lines = ["municipalities:", '  - code: "131211"', "    name: 足立区", "    channels:"]
    lines += [f"      - {{id: c{i}, kind: webhook, sim: {{}}}}" for i in range(n)]
    return parse_registry("\n".join(lines) + "\n", "cut.yaml")


def drill_of(journal: Journal, far_s: list[float]) -> Drill:
    drill = Drill(registry(len(far_s)), journal, pacing=Pacing())
    drill.start()
    for target, far in zip(drill.targets(), far_s, strict=True):
        drill._probes[target.key] = Held(target.key, drill.env, far)
    return drill


def fill(folder: Path) -> Path:
    """Fill *folder*'s file system to the last byte; the filler's path."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 4096)
    return filler


def running_deliveries() -> list[asyncio.Task[object]]:
    return [
        t
        for t in asyncio.all_tasks()
        if not t.done() and getattr(t.get_coro(), "__qualname__", "") == "Drill._deliver"
    ]


async def test_a_failed_delivery_leaves_none_of_its_step_running(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "full", "1m") as fs:
        journal = Journal(fs / "j.sqlite")
        # the first is seen at once and cannot be written; seven more are still out
        drill = drill_of(journal, [0.0] + [60.0] * 7)
        filler = fill(fs)
        with pytest.raises(sqlite3.OperationalError, match="full"):
            await drill.broadcast("x", timeout=60)
        assert running_deliveries() == []  # nothing of the step outlives it
        filler.unlink()  # room again: the run closes as usual
        await drill.finish()
        journal.close()


async def test_a_message_seen_before_the_cut_keeps_its_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    drill = drill_of(journal, [0.0])
    settle = drill.lag.settle
    steps: list[asyncio.Task[object]] = []

    async def cut_before_the_tick(at: float) -> None:
        if drill.lag.settle is cut_before_the_tick:  # the first call: the fault
            monkeypatch.setattr(drill.lag, "settle", settle)
            time.sleep(STALL_S)  # the loop stalls just after the sighting …
            stop = interrupt.current()
            assert stop is not None
            stop.handle(signal.SIGINT)  # … the drill is told to stop, and a second
            steps[0].cancel()  # SIGINT cuts the step before the late tick could run
            await asyncio.get_running_loop().create_future()
        await settle(at)

    monkeypatch.setattr(drill.lag, "settle", cut_before_the_tick)
    with interrupt.catch_signals(abort=lambda: None, grace_s=-1):
        steps.append(asyncio.create_task(drill.broadcast("x", timeout=60)))
        with pytest.raises(asyncio.CancelledError):
            await steps[0]
        await drill.finish()
    assert drill.run_id is not None
    [record] = journal.deliveries(drill.run_id)
    journal.close()
    assert record.outcome is Outcome.DELIVERED, record  # seen: not lost, not "interrupted"
    # its bound counts the stall: the first tick after the sighting ran that late, less
    # at most one period (it was due within a period of the sighting)
    assert record.extra["loop_lag_s"] >= STALL_S - drill.lag.period, record.extra
    assert record.error_bound_s is not None
    assert record.error_bound_s >= 0.001 + STALL_S - drill.lag.period
