"""SIGTERM/SIGINT inside the runner (:mod:`drills.core.interrupt`), judged by the ledgers.

In-process tests call :meth:`Stop.handle` themselves (the handler a real signal runs;
no signal is sent to this process, and ``grace_s=-1`` sets no timer). The grace
timer is tested with a real SIGTERM, sent to a child process the test starts.
The full commands (``run``/``demo``) under signals are rows of the fault matrix
(``tests/faults/cases_harness.py``).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from drills.core import interrupt
from drills.core.delivery import Delivery, Outcome
from drills.core.journal import Journal, RunStatus
from drills.core.registry import parse_registry
from drills.core.runner import Drill
from drills.core.truth import compare

ROOT = Path(__file__).resolve().parents[2]


def registry(a: str, b: str | None = None) -> str:
    """Two simulated channels; *a* and *b* are latency ranges ``"50ms-600ms"``."""

    def channel(name: str, span: str) -> str:
        low, high = span.split("-")
        latency = f"{{dist: uniform, low: {low}, high: {high}}}"
        return f"      - {{id: {name}, kind: webhook, sim: {{latency: {latency}}}}}\n"

    return (
        'defaults: {slo: {latency: 60s}}\nmunicipalities:\n  - code: "131211"\n'
        "    name: 足立区\n    channels:\n" + channel("a", a) + channel("b", b or a)
    )


# a arrives at once, b is still out for another 15-30 s: a signal always finds some in flight
SPLIT = ("50ms-300ms", "15s-30s")


def drill_with_stop(
    tmp_path: Path, spans: tuple[str, str], *, abort: bool, repeat: int, interval: float
) -> tuple[list[Delivery], dict[str, object], list[object], interrupt.Stop]:
    """A broadcast whose first record 'receives' SIGTERM (and, with *abort*, a second one)."""
    reg = parse_registry(registry(*spans), "reg.yaml")
    journal = Journal(tmp_path / "j.sqlite")
    ledgers: list[object] = []

    async def main(stop: interrupt.Stop) -> str:
        me = asyncio.current_task()
        assert me is not None
        stop.abort = me.cancel

        def first_record(_: Delivery) -> None:
            if stop.signal is None:
                stop.handle(signal.SIGTERM)
                if abort:
                    stop.handle(signal.SIGTERM)

        drill = Drill(reg, journal, scenario="sig", seed=3, on_delivery=first_record)
        try:
            async with drill:
                await drill.broadcast("訓練", timeout=30, repeat=repeat, interval=interval)
                await drill.broadcast("二回目", timeout=30)  # never starts
        except (asyncio.CancelledError, interrupt.Interrupted):
            pass
        ledgers.extend(sim.ledger for sim in drill.sims.running.values())
        assert drill.run_id is not None
        return drill.run_id

    with interrupt.catch_signals(grace_s=-1) as stop:  # no timer: the test is the clock
        run_id = asyncio.run(main(stop))
    try:
        return journal.deliveries(run_id), journal.run(run_id), ledgers, stop
    finally:
        journal.close()


def test_first_signal_lets_messages_in_flight_finish_and_sends_nothing_new(tmp_path):
    records, run, ledgers, stop = drill_with_stop(
        tmp_path, ("50ms-600ms", "50ms-600ms"), abort=False, repeat=6, interval=0.15
    )
    assert stop.signal == "SIGTERM" and not stop.aborted
    assert run["status"] == RunStatus.INTERRUPTED
    sent = [e for ledger in ledgers for e in ledger.entries()]  # what reached the far end
    # Messages not yet sent when the signal came were never sent; every message sent
    # was watched to its end and recorded as what the ledger says it was.
    assert 1 <= len(sent) < 2 * 6
    assert len(records) == len(sent)
    assert all(d.outcome is Outcome.DELIVERED for d in records)
    assert {d.step for d in records} == {"broadcast"}  # the second step never started
    assert compare(records, ledgers) == []


def test_second_signal_records_messages_in_flight_as_error_not_lost(tmp_path):
    records, run, ledgers, stop = drill_with_stop(tmp_path, SPLIT, abort=True, repeat=5, interval=0)
    assert stop.aborted and run["status"] == RunStatus.INTERRUPTED
    sent = [e for ledger in ledgers for e in ledger.entries()]
    assert len(records) == len(sent) == 10  # every message sent has its record
    cut = [d for d in records if d.outcome is Outcome.ERROR]
    # b's messages (15-30 s) were all still in flight; some of a's (≤ 300 ms) may have been
    assert {d.token for d in records if d.channel_id == "b"} <= {d.token for d in cut}
    assert all(d.reason == interrupt.INTERRUPTED_REASON for d in cut)
    assert not any(d.outcome is Outcome.LOST for d in records)  # never the channel's fault
    assert compare(records, ledgers) == []  # the ground truth agrees with "unknown"


def test_handler_states():
    calls: list[str] = []
    stop = interrupt.Stop(abort=lambda: calls.append("abort"), grace_s=-1)
    stop.notice = lambda s: calls.append(f"notice {s.signal}")
    stop.handle(signal.SIGINT)
    assert calls == ["notice SIGINT"] and interrupt.exit_status(stop) == 130
    stop.handle(signal.SIGTERM)  # a second signal, of either kind, aborts
    stop.handle(signal.SIGTERM)
    assert calls == ["notice SIGINT", "abort"] and stop.signal == "SIGINT"
    shielded = interrupt.Stop(abort=lambda: calls.append("late"), grace_s=-1)
    shielded.shield()
    shielded.handle(signal.SIGTERM)
    shielded.handle(signal.SIGTERM)
    assert "late" not in calls and interrupt.exit_status(shielded) == 143
    ja, en = interrupt.waiting_text(interrupt.Stop(signal="SIGINT")).split(" / ")
    assert "SIGINT" in ja and "10 秒" in ja and "up to 10 s" in en


def test_outside_catch_signals_nothing_changes():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with interrupt.catch_signals(grace_s=-1):
        assert signal.getsignal(signal.SIGTERM) != before[0]
        assert not interrupt.stopping()
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    assert interrupt.current() is None and not interrupt.stopping()
    interrupt.check()  # no Interrupted


CHILD = textwrap.dedent(
    """
    import asyncio, sys, time
    from drills.core import interrupt
    from drills.core.journal import Journal
    from drills.core.registry import parse_registry
    from drills.core.runner import Drill

    reg = parse_registry(sys.argv[2], "reg.yaml")

    async def main():
        me = asyncio.current_task()

        def aborted():
            print("ABORT", time.monotonic(), flush=True)
            loop.call_soon_threadsafe(me.cancel)
        stop.abort = aborted
        async with Drill(reg, Journal(sys.argv[1]), scenario="grace", seed=5,
                         on_delivery=lambda d: print("REC", flush=True)) as drill:
            try:
                await drill.broadcast("訓練", timeout=60, repeat=5)
            except asyncio.CancelledError:
                pass
        print("RUN", drill.run_id, flush=True)

    with interrupt.catch_signals(grace_s=float(sys.argv[3])) as stop:
        loop = asyncio.new_event_loop()
        loop.run_until_complete(main())
    """
)


def test_grace_runs_out_then_the_step_is_cut(tmp_path):
    grace = 0.5
    db = tmp_path / "j.sqlite"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db), registry(*SPLIT), str(grace)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "REC"  # in flight: b's, for 15-30 s more
        signalled = time.monotonic()
        child.send_signal(signal.SIGTERM)  # once: the grace, then the cut
        line = child.stdout.readline().split()
        while line == ["REC"]:  # a's, arriving during the grace
            line = child.stdout.readline().split()
        assert line[0] == "ABORT", line
        waited = float(line[1]) - signalled
        run_id = next(ln.split()[1] for ln in child.stdout if ln.startswith("RUN"))
        assert child.wait(timeout=30) == 0
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    # The monotonic clock is one for every process here: the cut came after the grace
    # and before any of b's messages (15 s at the soonest) could have arrived.
    assert grace <= waited < 15
    with Journal(db, read_only=True) as journal:
        assert journal.run(run_id)["status"] == RunStatus.INTERRUPTED
        records = journal.deliveries(run_id)
    assert len(records) == 10
    assert [d.channel_id for d in records if d.reason == interrupt.INTERRUPTED_REASON] == ["b"] * 5


def test_readers_accept_interrupted(tmp_path):
    """The journal, the digest and the scorecard take the new status as it is."""
    from drills.reporting.console import readiness_table
    from drills.reporting.scorecard import build_scorecard

    _, run, _, _ = drill_with_stop(tmp_path, SPLIT, abort=True, repeat=1, interval=0)
    with Journal(tmp_path / "j.sqlite") as journal:
        assert journal.stats().runs_by_status == {RunStatus.INTERRUPTED: 1}
        card = build_scorecard(journal, run["run_id"])
    assert card["status"] == RunStatus.INTERRUPTED
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(readiness_table(card, "ja"))
    assert "中断された訓練" in console.export_text()
