"""Pacing: the token bucket's schedule, the in-flight bound, the lag brake, the lag
governor, the knob."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drills.core.errors import ScenarioError
from drills.core.pacing import (
    DEFAULT,
    ENV_VAR,
    FLOOR,
    QUANTUM_S,
    Pacer,
    Pacing,
    PacingStats,
    RateGovernor,
    TokenBucket,
)


def test_bucket_lets_a_burst_go_then_one_per_interval() -> None:
    bucket = TokenBucket(rate=4.0, burst=3, now=100.0)
    starts = [bucket.reserve(100.0) for _ in range(6)]
    assert starts == [100.0, 100.0, 100.0, 100.25, 100.5, 100.75]


def test_bucket_refills_while_idle_but_never_beyond_the_burst() -> None:
    bucket = TokenBucket(rate=10.0, burst=2, now=0.0)
    assert [bucket.reserve(0.0) for _ in range(3)] == [0.0, 0.0, pytest.approx(0.1)]
    # idle for 10 s: two may go at once again, not a hundred
    assert [round(bucket.reserve(10.0), 9) for _ in range(3)] == [10.0, 10.0, 10.1]


@given(
    rate=st.floats(min_value=0.5, max_value=10_000),
    burst=st.integers(min_value=1, max_value=50),
    gaps=st.lists(st.floats(min_value=0.0, max_value=0.5), min_size=1, max_size=200),
)
def test_bucket_never_admits_more_than_burst_plus_rate_times_span(rate, burst, gaps) -> None:
    bucket = TokenBucket(rate, burst, now=0.0)
    now, starts = 0.0, []
    for gap in gaps:
        now += gap
        start = bucket.reserve(now)
        assert start >= now
        starts.append(start)
    assert starts == sorted(starts)  # granted in call order
    # in any window [starts[i], starts[j]] at most burst + rate × width sends start
    for i in range(len(starts)):
        for j in range(i, min(len(starts), i + 60)):
            width = starts[j] - starts[i]
            assert j - i + 1 <= burst + rate * width + 1e-6 * (j - i + 1)


def test_knob_reads_the_environment_and_refuses_nonsense_in_both_languages() -> None:
    assert Pacing.from_env({}) == DEFAULT
    assert Pacing.from_env({ENV_VAR: "off"}) == Pacing()
    assert not Pacing().paces
    got = Pacing.from_env({ENV_VAR: "rate=2000, in_flight=off"})
    assert got == Pacing(rate=2000.0, burst=DEFAULT.burst, lag_limit=DEFAULT.lag_limit)
    assert Pacing.parse(got.describe()) == got
    for bad in ("rate=-1", "burst=0", "rate=fast", "in_flight", "burst=off", "speed=1"):
        with pytest.raises(ScenarioError) as err:
            Pacing.parse(bad)
        text = str(err.value)
        assert text.startswith(f"{ENV_VAR} の指定が読めません") and "cannot read" in text


async def test_pacer_keeps_at_most_in_flight_sends_inside() -> None:
    pacer = Pacer(Pacing(in_flight=3))
    stats = PacingStats()
    inside = peak = 0
    release = asyncio.Event()

    async def send() -> None:
        nonlocal inside, peak
        async with pacer.slot(stats):
            inside += 1
            peak = max(peak, inside)
            await release.wait()
            inside -= 1

    tasks = [asyncio.create_task(send()) for _ in range(10)]
    while inside < 3:
        await asyncio.sleep(0)
    for _ in range(20):  # the others stay queued however long the first three take
        await asyncio.sleep(0)
    assert inside == 3 and stats.sends == 3
    release.set()
    await asyncio.gather(*tasks)
    assert peak == 3 and stats.sends == 10 and stats.waited >= 7


async def test_lag_brake_admits_nothing_while_the_loop_runs_late() -> None:
    lag = [0.5]  # the loop runs half a second late: no new send
    pacer = Pacer(Pacing(lag_limit=0.005), lag=lambda: lag[0])
    admitted = asyncio.Event()

    async def send() -> None:
        async with pacer.slot():
            admitted.set()

    task = asyncio.create_task(send())
    done, _ = await asyncio.wait([task], timeout=0.1)
    assert not done and not admitted.is_set()
    lag[0] = 0.001  # the loop caught up
    await asyncio.wait_for(task, 5.0)
    assert admitted.is_set()


async def test_lag_brake_gives_way_on_a_machine_that_stays_busy() -> None:
    """A loop that never catches up still sends: the brake holds a send MAX_BRAKE_S at most."""
    from drills.core.pacing import MAX_BRAKE_S

    pacer = Pacer(Pacing(lag_limit=0.005), lag=lambda: 0.5)  # late for ever
    stats = PacingStats(Pacing(lag_limit=0.005).describe())
    started = time.monotonic()
    async with pacer.slot(stats):
        held = time.monotonic() - started
    assert MAX_BRAKE_S <= held < MAX_BRAKE_S + 1.0, held
    assert stats.sends == 1 and stats.waited == 1


@given(st.lists(st.tuples(st.floats(0.0, 0.5), st.floats(0.0, 0.05)), min_size=1, max_size=200))
def test_governor_stays_between_floor_and_rate_and_only_a_late_loop_lowers_it(readings) -> None:
    """Rate within [FLOOR × rate, rate]; it falls only on a late reading, rises only on an
    on-time one."""
    top, limit, now = 800.0, 0.005, 0.0
    g = RateGovernor(top, now)
    for lag, gap in readings:
        before, now = g.rate, now + gap
        after = g.update(lag, limit, now)
        assert top * FLOOR - 1e-9 <= after <= top + 1e-9
        if lag > limit:
            assert after <= before
        else:
            assert after >= before


async def test_brake_sees_a_backlog_before_the_lag_monitor_does() -> None:
    """Work queued on the loop right now holds a send, though the monitor still reads 0."""
    pacer = Pacer(Pacing(lag_limit=0.005), lag=lambda: 0.0)
    loop = asyncio.get_running_loop()
    for _ in range(20):  # 20 × 5 ms of callbacks ready before the send asks
        loop.call_soon(time.sleep, 0.005)
    stats = PacingStats()
    asked = time.monotonic()
    async with pacer.slot(stats):
        waited = time.monotonic() - asked
    assert waited >= 0.1 - 0.002  # it went only after the backlog ran (and a calm look)
    assert stats.waited == 1


async def test_governor_paces_a_late_loop_below_the_rate_and_says_how_low() -> None:
    """On a loop that stays late the brake gives way (MAX_BRAKE_S), but the sends then
    leave at the governor's lowered rate, not in_flight at once."""
    rate = 400.0
    pacer = Pacer(Pacing(rate=rate, burst=1, in_flight=50, lag_limit=0.005), lag=lambda: 0.5)
    stats = PacingStats()
    left: list[float] = []

    async def send() -> None:
        async with pacer.slot(stats):
            left.append(time.monotonic())

    await asyncio.gather(*(send() for _ in range(12)))
    gaps = [b - a for a, b in itertools.pairwise(left)]
    assert stats.rate_lowest == pytest.approx(rate * FLOOR)
    # at the floor (25/s) the sends leave ≥ 40 ms apart (the bucket's 10 ms grid aside)
    assert min(gaps) >= 1 / (rate * FLOOR) - QUANTUM_S, gaps


async def test_unpaced_pacer_admits_at_once_and_counts() -> None:
    stats = PacingStats(Pacing().describe())
    pacer = Pacer(Pacing())
    for _ in range(3):
        async with pacer.slot(stats):
            pass
    assert stats.to_data() == {
        "pacing": "off",
        "sends": 3,
        "waited": 0,
        "waited_total_s": 0.0,
        "waited_max_s": 0.0,
        "rate_lowest": None,
    }


def test_cli_refuses_an_unreadable_pace_before_anything_runs(monkeypatch, capsys, tmp_path) -> None:
    from drills.cli import main

    monkeypatch.setenv(ENV_VAR, "rate=fast")
    assert main(["demo", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"{ENV_VAR} の指定が読めません") and err[1].startswith("cannot read")
    assert not (tmp_path / "out").exists()  # nothing ran


async def test_a_signal_while_messages_wait_their_turn_sends_none_of_them(tmp_path) -> None:
    """SIGTERM: no new message is sent — also none that was queued for a pacing slot."""
    import signal

    from drills.core import interrupt
    from drills.core.journal import Journal
    from drills.core.registry import parse_registry
    from drills.core.runner import Drill

    lines = ["municipalities:", '  - code: "131211"', "    name: 足立区", "    channels:"]
    lines += [f"      - {{id: c{i}, kind: webhook, sim: {{latency: 20ms}}}}" for i in range(6)]
    reg = parse_registry("\n".join(lines) + "\n", "reg.yaml")
    journal = Journal(tmp_path / "journal.sqlite")
    # one send at a time, one every 0.5 s: the first is seen long before the second's turn
    pacing = Pacing(rate=2.0, burst=1, in_flight=1)
    with interrupt.catch_signals(grace_s=-1) as stop:
        async with Drill(reg, journal, pacing=pacing) as drill:
            step = await drill.broadcast(
                "参集", timeout=5, watch=lambda d: stop.handle(signal.SIGTERM)
            )
            ledgers = [sim.ledger for sim in drill.sims.running.values()]
    journal.close()
    received = [e for ledger in ledgers for e in ledger.entries()]
    assert len(step.deliveries) == len(received) == 1  # only the one sent before the signal
    assert step.deliveries[0].outcome.reached
    assert step.wall_s < 1.0 / pacing.rate * 2  # the queue drained, not paced out (5 × 0.5 s)
