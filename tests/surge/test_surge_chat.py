"""A surge against a simulated chat channel with a rate limit and a delivery capacity.

The simulated far end takes 50 msg/s before answering 429 and delivers 20
msg/s; beyond that, accepted messages queue. The ramp goes rest → 5 → 15 → 80
msg/s: the probes must see the latency rise with the load, and the surge must
report 80 msg/s as the breaking point of a 1 s SLO.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from drills.core.journal import Journal
from drills.core.registry import load_registry
from drills.core.runner import Drill
from drills.surge.runner import surge
from probes.sim.chat import ChatSimulator
from tests.surge.conftest import CHAT_RATE_LIMITED


async def test_latency_rises_with_load_and_the_breaking_point_is_reported(
    write_registry: Callable[[str], Path], journal: Journal
) -> None:
    registry = load_registry(write_registry(CHAT_RATE_LIMITED))
    seen: list[str] = []
    async with Drill(registry, journal, scenario="輻輳", seed=7) as drill:
        target = drill.targets()[0]
        result = await surge(
            drill,
            target,
            [5, 15, 80],
            step_s=2.0,
            rest_s=1.5,
            timeout=8.0,
            on_progress=lambda ev: seen.append(str(ev["event"])),
        )
        sim = drill.sims.simulator_of(target)
        assert isinstance(sim, ChatSimulator)
        far_end_posts = sim.room_for(target.key).posted
        run_id = drill.run_id

    assert result.stop_reason == "completed"
    assert seen[:2] == ["clock", "step"] and seen[-1] == "finished" and seen.count("step") == 4
    points = result.curve.points
    assert [p.step.rate for p in points] == [0.0, 5.0, 15.0, 80.0]
    # Below capacity the channel holds its 1 s SLO; at 80 msg/s the queue (and 429s) break it.
    assert [p.holds for p in points] == [True, True, True, False]
    assert result.breaking_point is not None and result.breaking_point.step.rate == 80.0
    assert result.curve.held_up_to == 15.0
    rest_p50 = points[0].probes.latency(50)
    loaded_p50 = points[3].probes.latency(50)
    assert rest_p50 is not None and loaded_p50 is not None
    assert loaded_p50 > 1.0 > rest_p50 and loaded_p50 > 5 * rest_p50

    # Load, per step, as Locust counted it; the rate limit shows as failures (429) only at 80/s.
    loads = [p.load for p in points]
    assert loads[0].requests == 0
    assert [ld.failures for ld in loads[:3]] == [0, 0, 0] and loads[3].failures > 0
    assert 8 <= loads[1].requests <= 12 and 25 <= loads[2].requests <= 35
    assert loads[3].requests > 120
    # The far end accepted exactly the load Locust counted as successful, plus the probes.
    probes_accepted = sum(1 for p in points for d in _step_deliveries(journal, run_id, p.step.index)
                          if d.accepted_at is not None)  # fmt: skip
    assert far_end_posts == result.totals.requests - result.totals.failures + probes_accepted
    assert result.workers and result.workers[0]["requests"] == result.totals.requests

    events = journal.events(run_id, "surge")
    assert len(events) == 1
    data = events[0]["data"]
    assert data["target"] == "131211/chat" and data["kind"] == "webhook" and data["live"] is False
    assert data["topology"] == {"mode": "local", "processes": 1}
    assert data["breaking_point"]["rate"] == 80.0
    assert data["steps"][3]["load"]["failures"] == loads[3].failures
    assert data["steps"][0]["probes"]["delivered"] == 3
    assert data["totals"]["requests"] == result.totals.requests
    # Probe deliveries are in the journal, one step name per ramp step.
    steps = {d.step for d in journal.deliveries(run_id)}
    assert steps == {"surge 1.0 (at rest)", "surge 1.1 (5 msg/s)", "surge 1.2 (15 msg/s)",
                     "surge 1.3 (80 msg/s)"}  # fmt: skip


def _step_deliveries(journal: Journal, run_id: str | None, index: int) -> list:
    assert run_id is not None
    return [d for d in journal.deliveries(run_id) if d.step.startswith(f"surge 1.{index} ")]
