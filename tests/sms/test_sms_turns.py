"""probes.sms.turns: a burst of SMS work is spread over loop turns, in order, nothing lost."""

from __future__ import annotations

import asyncio
import time

from probes.base import ProbeEnv
from probes.sms.turns import TurnGate


def _burn(seconds: float) -> None:
    """CPU work of at least *seconds* (a handler's parsing and hashing, say)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


class Turns:
    """Counts the loop's timer phases: a ``call_later(0)`` that re-arms itself."""

    def __init__(self) -> None:
        self.count = 0
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._handle = asyncio.get_running_loop().call_later(0, self._tick)

    def _tick(self) -> None:
        self.count += 1
        self.start()

    def stop(self) -> None:
        assert self._handle is not None
        self._handle.cancel()


async def test_a_burst_is_worked_through_a_budget_per_turn_in_order() -> None:
    gate = TurnGate(budget=0.003)
    turns = Turns()
    entered: list[tuple[int, int]] = []  # (entry, the timer phases seen before it entered)

    async def handler(i: int) -> None:
        await gate.turn()
        entered.append((i, turns.count))
        _burn(0.001)

    turns.start()
    await asyncio.gather(*(handler(i) for i in range(40)))
    turns.stop()
    assert [i for i, _ in entered] == list(range(40))  # first come, first served
    per_slice: dict[int, int] = {}
    for _, seen in entered:
        per_slice[seen] = per_slice.get(seen, 0) + 1
    # Between two slices the loop ran its timers. An entry starts only while its
    # slice is younger than 3 ms and each takes ≥ 1 ms: the k-th of a slice starts
    # ≥ k − 1 ms in, so a slice holds at most 3.
    assert len(per_slice) > 1
    assert max(per_slice.values()) <= 3
    first = per_slice[entered[0][1]]
    assert gate.entered == 40 and gate.deferred == 40 - first  # the rest waited their turn


async def test_unhurried_work_is_never_held() -> None:
    gate = TurnGate(budget=0.003)
    for _ in range(5):
        await gate.turn()  # one entry per turn, far under the budget
        await asyncio.sleep(0.001)
    assert gate.entered == 5 and gate.deferred == 0


async def test_a_cancelled_waiter_does_not_stall_the_queue() -> None:
    gate = TurnGate(budget=0.0)  # every entry after the first of a slice waits
    order: list[int] = []

    async def handler(i: int) -> None:
        await gate.turn()
        order.append(i)

    tasks = [asyncio.ensure_future(handler(i)) for i in range(6)]
    await asyncio.sleep(0)  # all of them at the gate: 0 entered, 1–5 queued
    tasks[2].cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert order == [0, 1, 3, 4, 5]
    assert tasks[2].cancelled()


def test_one_gate_per_drill() -> None:
    env, other = ProbeEnv(), ProbeEnv()
    assert TurnGate.shared(env) is TurnGate.shared(env)
    assert TurnGate.shared(env) is not TurnGate.shared(other)


class HeldGate(TurnGate):
    """A gate that always makes its caller wait *hold* seconds (a busy loop's turns)."""

    def __init__(self, hold: float) -> None:
        super().__init__()
        self.hold = hold

    async def turn(self) -> None:
        await asyncio.sleep(self.hold)


async def test_waiting_for_a_turn_is_never_the_answers_time(make_probe, msg, sim) -> None:
    hold = 0.2
    probe = await make_probe(latency=0.05)  # confirmed by polling the Message
    gate = HeldGate(hold)
    probe._turns = gate
    assert probe._http is not None
    probe._http._turns = gate  # the wait after Twilio's answer, before it is parsed
    message = msg()
    watching = asyncio.ensure_future(probe.observe(message))
    accepted = await probe.send(message)
    returned = time.monotonic()
    (entry,) = sim.messages[accepted.provider_id].entries
    # Stamped when Twilio's answer was read: after Twilio took the message, and before
    # the 0.2 s the answer then waited for its turn to be parsed.
    assert entry.received_at is not None and entry.received_at <= accepted.at
    assert accepted.at <= returned - hold
    sighting = await watching
    observed = time.monotonic()
    assert entry.visible_at is not None and entry.visible_at <= sighting.at <= observed - hold
    assert "polling" in sighting.detail


def test_a_gate_outlives_its_loop() -> None:
    gate = TurnGate(budget=0.0)

    async def burst() -> int:
        await asyncio.gather(*(gate.turn() for _ in range(3)))
        return gate.entered

    assert asyncio.run(burst()) == 3
    gate._opened = time.perf_counter() - 1  # a slice left open by the loop that ended
    assert asyncio.run(asyncio.wait_for(burst(), 5)) == 6
