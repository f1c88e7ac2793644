"""SMS caps under real concurrency: a cap of N never lets N + 1 messages out.

Ground truth is the Twilio simulator's ledger (what its far end received), not
the probe's own count. Concurrency is real: hundreds of sends gathered on one
event loop, several probe instances of one channel on one drill, two steps of a
drill at once, and threads charging one budget.
"""

from __future__ import annotations

import asyncio
import textwrap
import threading
from pathlib import Path

import pytest

from drills.core.errors import DrillSafetyError
from drills.core.journal import Journal
from drills.core.registry import load_registry
from drills.core.runner import Drill, StepResult
from probes.base import DrillMessage, ProbeEnv
from probes.sim.base import LatencySpec, SimKnobs
from probes.sim.twilio import TwilioSimulator
from probes.sms.budget import Caps, CostCapExceeded, CostProfile, RunBudget
from probes.sms.probe import TwilioProbe, TwilioSettings

FROM = "+815012345678"
PHONES = ["+819012345678", "+818012345678"]


def received(sim: TwilioSimulator) -> int:
    return sum(1 for e in sim.ledger if e.received_at is not None)


async def _send(probe: TwilioProbe, to: str) -> str:
    try:
        await probe.send(DrillMessage.new("上限の確認です。", recipient=to))
    except CostCapExceeded:
        return "capped"
    return "sent"


async def test_hundreds_of_concurrent_sends_never_cross_the_cap(sim: TwilioSimulator) -> None:
    cap = 20
    raw = {"from": FROM, "to": PHONES, "poll_interval": None, "caps": {"max_messages": cap}}
    settings = sim.add_channel("131211/sms", SimKnobs(latency=LatencySpec(value=0.01)), raw)
    env = ProbeEnv()
    probe = TwilioProbe("131211/sms", TwilioSettings.model_validate(settings), env)
    await probe.open()
    try:
        results = await asyncio.gather(*(_send(probe, PHONES[i % 2]) for i in range(300)))
    finally:
        await probe.close()
        await env.aclose()
    assert results.count("sent") == cap
    assert results.count("capped") == 300 - cap
    assert received(sim) == cap  # the far end's ledger: exactly N, never N + 1
    assert probe.budget.messages == cap


async def test_several_probes_of_one_channel_share_one_budget(sim: TwilioSimulator) -> None:
    """Four probe instances of one channel in one drill (one ProbeEnv): one cap, not four."""
    cap = 25
    raw = {"from": FROM, "to": PHONES, "poll_interval": None, "caps": {"max_messages": cap}}
    settings = sim.add_channel("131211/sms", SimKnobs(latency=LatencySpec(value=0.01)), raw)
    env = ProbeEnv()
    probes = [
        TwilioProbe("131211/sms", TwilioSettings.model_validate(settings), env) for _ in range(4)
    ]
    await asyncio.gather(*(p.open() for p in probes))
    try:
        sends = [_send(p, PHONES[i % 2]) for p in probes for i in range(100)]
        results = await asyncio.gather(*sends)
    finally:
        for p in probes:
            await p.close()
        await env.aclose()
    assert results.count("sent") == cap
    assert received(sim) == cap
    assert len({id(p.budget) for p in probes}) == 1


async def test_two_concurrent_steps_of_a_drill_stay_under_the_cap(tmp_path: Path) -> None:
    """Each step alone is within the cap (the step's plan passes); together they are not."""
    path = tmp_path / "registry.yaml"
    path.write_text(
        textwrap.dedent(
            """
            municipalities:
              - code: "131211"
                name: 足立区
                channels:
                  - id: sms
                    kind: twilio
                    to: ["+819012345678"]
                    poll_interval: null
                    caps: {max_messages: 10}
                    sim: {latency: 10ms}
            """
        ),
        encoding="utf-8",
    )
    registry = load_registry(path)
    with Journal(tmp_path / "journal.sqlite") as journal:
        async with Drill(registry, journal, scenario="cap") as drill:
            steps = await asyncio.gather(
                *(drill.broadcast("同時の手順です。", timeout=5, repeat=6, step=s) for s in "ab"),
                return_exceptions=True,
            )
            (sim,) = drill.sims.running.values()
            assert isinstance(sim, TwilioSimulator)
            sent = received(sim)
    done = [s for s in steps if isinstance(s, StepResult)]
    refused = [s for s in steps if isinstance(s, DrillSafetyError)]
    assert len(done) + len(refused) == 2
    if refused:  # the second step's plan saw the first step's sends: refused as a whole
        assert sent == 6 and "cap is 10" in str(refused[0])
    else:  # both planned before either sent: the shared budget refused the last two sends
        assert sent == 10
        records = [d for s in done for d in s.deliveries]
        assert len(records) == 12
        assert len([d for d in records if "cap is 10" in d.reason]) == 2


def test_threads_charging_one_budget_never_cross_the_cap() -> None:
    budget = RunBudget(CostProfile("131211/sms", 1, Caps(max_messages=500, max_segments=10**6)))
    granted = [0] * 8
    start = threading.Barrier(8)

    def charge(i: int) -> None:
        start.wait()
        for _ in range(200):
            try:
                budget.charge(1)
                granted[i] += 1
            except CostCapExceeded:
                pass

    threads = [threading.Thread(target=charge, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) == budget.messages == 500


@pytest.mark.parametrize("segments", [1, 3])
def test_a_refused_charge_counts_nothing(segments: int) -> None:
    budget = RunBudget(CostProfile("c", 1, Caps(max_messages=5, max_segments=7)))
    sent = 0
    for _ in range(10):
        try:
            budget.charge(segments)
            sent += 1
        except CostCapExceeded:
            pass
    assert budget.messages == sent and budget.segments == sent * segments
    assert budget.segments <= 7 and budget.messages <= 5
