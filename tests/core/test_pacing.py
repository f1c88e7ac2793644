"""Pacing: the dispatcher's rule (tokens, in-flight places, the lag brake, the lag
governor), the batches it releases, the knob."""

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
    MAX_BRAKE_S,
    QUANTUM_S,
    Admission,
    Pacer,
    Pacing,
    PacingStats,
    RateGovernor,
)


def test_admission_lets_a_burst_go_then_the_rate() -> None:
    admission = Admission(Pacing(rate=4.0, burst=3), now=100.0)
    looks = [admission.release(t, 0.0, waiting=10, on_wire=0) for t in (100.0, 100.25, 100.5)]
    assert looks == [3, 1, 1]
    # idle for 10 s: three may go at once again (the burst), not forty
    assert admission.release(110.0, 0.0, waiting=50, on_wire=0) == 3


def test_admission_releases_no_more_than_wait_nor_than_the_free_in_flight_places() -> None:
    admission = Admission(Pacing(rate=1000.0, burst=40, in_flight=10), now=0.0)
    assert admission.release(0.0, 0.0, waiting=3, on_wire=0) == 3  # only three wait
    assert admission.release(0.01, 0.0, waiting=30, on_wire=8) == 2  # two places free
    assert admission.release(0.02, 0.0, waiting=30, on_wire=10) == 0  # none free


@given(
    rate=st.floats(min_value=0.5, max_value=10_000),
    burst=st.integers(min_value=1, max_value=50),
    in_flight=st.none() | st.integers(min_value=1, max_value=200),
    lag_limit=st.none() | st.floats(min_value=0.001, max_value=0.1),
    looks=st.lists(
        st.tuples(
            st.floats(0.0, 0.5),  # time since the last look
            st.floats(0.0, 0.3),  # the loop's lag then
            st.integers(0, 500),  # sends waiting
            st.integers(0, 200),  # sends on the wire
        ),
        min_size=1,
        max_size=200,
    ),
)
def test_admission_never_exceeds_the_rate_the_waiting_or_the_places(
    rate, burst, in_flight, lag_limit, looks
) -> None:
    """In any run of looks at most burst (or a quantum's worth) + rate × the time they
    span go (the governor only ever lowers the rate), never more than wait, never beyond
    ``in_flight``."""
    admission = Admission(Pacing(rate, burst, in_flight, lag_limit), now=0.0)
    now, released = 0.0, []
    for gap, lag, waiting, on_wire in looks:
        now += gap
        go = admission.release(now, lag, waiting, on_wire)
        assert 0 <= go <= waiting
        if in_flight is not None:
            assert go <= max(0, in_flight - on_wire)
        released.append((now, go))
    for i in range(len(released)):
        total = 0
        for j in range(i, min(len(released), i + 60)):
            total += released[j][1]
            width = released[j][0] - released[i][0]
            assert total <= max(burst, rate * QUANTUM_S) + rate * width + 1e-6 * (j - i + 1)


def test_a_rate_raised_applies_at_the_next_look_not_after_sends_promised_at_the_old_one() -> None:
    """The 1,000-channel step's old trap: sends queued while the governor was low must not
    keep the low pace once the loop runs on time (no start time is promised ahead)."""
    top, limit = 800.0, 0.005
    admission = Admission(Pacing(rate=top, burst=1, in_flight=128, lag_limit=limit), now=0.0)
    now, waiting = 0.0, 1000
    for _ in range(30):  # the loop stays late (a busy start): the rate falls to its floor
        now += QUANTUM_S
        waiting -= admission.release(now, 0.1, waiting, on_wire=0)
    assert admission.rate == pytest.approx(top * FLOOR)
    per_look = []
    for _ in range(100):  # then it runs on time for a second
        now += QUANTUM_S
        go = admission.release(now, 0.0, waiting, on_wire=0)
        waiting -= go
        per_look.append(go)
    assert admission.rate == top
    # the last 0.1 s went at the full rate (8 a look), not at the floor's one per 20 ms
    assert sum(per_look[-10:]) >= top * 10 * QUANTUM_S - 1


def test_admission_holds_the_queue_while_the_loop_is_late_and_saves_no_tokens_meanwhile() -> None:
    admission = Admission(Pacing(rate=1000.0, burst=40, lag_limit=0.01), now=0.0)
    assert admission.release(0.0, 0.0, waiting=100, on_wire=0) == 40  # the burst
    now, held = 0.0, []
    while now < MAX_BRAKE_S - QUANTUM_S:
        now += QUANTUM_S
        held.append(admission.release(now, 0.05, waiting=60, on_wire=0))
    assert held and sum(held) == 0
    # on time again: no burst saved up while braking, only one look's worth at the
    # lowered rate
    now += QUANTUM_S
    rate = admission.rate
    assert rate is not None and rate < 1000.0
    assert admission.release(now, 0.0, waiting=60, on_wire=0) <= 1 + rate * QUANTUM_S


def test_the_brake_gives_way_after_max_brake_s_on_a_loop_that_stays_late() -> None:
    admission = Admission(Pacing(rate=1000.0, burst=1, lag_limit=0.01), now=0.0)
    now, first = 0.0, None
    while first is None:
        now += QUANTUM_S
        if admission.release(now, 0.5, waiting=10, on_wire=0):
            first = now
    assert MAX_BRAKE_S <= first - QUANTUM_S < MAX_BRAKE_S + 2 * QUANTUM_S


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
    # at the floor (25/s) the sends leave ≥ 40 ms apart (the dispatcher's 10 ms grid aside)
    assert min(gaps) >= 1 / (rate * FLOOR) - QUANTUM_S, gaps


async def test_one_look_releases_its_sends_together() -> None:
    """The burst's sends are woken by one look: each finds all of them released already."""
    pacer = Pacer(Pacing(rate=1000.0, burst=5))
    seen: list[int] = []
    hold = asyncio.Event()

    async def send() -> None:
        async with pacer.slot():
            seen.append(pacer.on_wire)
            await hold.wait()

    tasks = [asyncio.create_task(send()) for _ in range(12)]
    while len(seen) < 5:
        await asyncio.sleep(0)
    assert seen == [5] * 5  # released in one look, before the first of them ran
    hold.set()
    await asyncio.gather(*tasks)
    assert len(seen) == 12 and pacer.on_wire == 0


async def test_a_send_cancelled_while_it_waits_takes_no_place() -> None:
    pacer = Pacer(Pacing(in_flight=1))
    inside = asyncio.Event()
    hold = asyncio.Event()
    went: list[str] = []

    async def send(name: str) -> None:
        async with pacer.slot():
            went.append(name)
            inside.set()
            await hold.wait()

    first = asyncio.create_task(send("first"))
    await inside.wait()
    second, third = asyncio.create_task(send("second")), asyncio.create_task(send("third"))
    await asyncio.sleep(0)
    second.cancel()
    hold.set()
    await asyncio.gather(first, third)
    assert second.cancelled() and went == ["first", "third"] and pacer.on_wire == 0


def test_a_pacer_serves_a_drill_on_its_next_event_loop_too() -> None:
    """asyncio.run after asyncio.run (a drill reused): the second loop's sends are released."""
    pacer = Pacer(Pacing(rate=1000.0, burst=2, lag_limit=0.5))

    async def sends(n: int) -> int:
        async def one() -> None:
            async with pacer.slot():
                pass

        await asyncio.gather(*(one() for _ in range(n)))
        return pacer.on_wire

    assert asyncio.run(sends(3)) == 0
    assert asyncio.run(asyncio.wait_for(sends(3), 5.0)) == 0


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
