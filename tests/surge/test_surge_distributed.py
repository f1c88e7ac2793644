"""Locust's distributed mode: a master on 127.0.0.1 and two workers started on this machine.

The master's aggregated statistics (what the surge reports) must equal the sum
of what each worker counted itself, step by step — and what the simulated far
end received.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from drills.cli import main
from drills.core.journal import Journal
from drills.core.registry import load_registry
from drills.core.runner import Drill
from drills.surge.plan import SurgePlan
from drills.surge.process import Topology
from drills.surge.runner import run_surge
from probes.sim.base import free_port
from tests.surge.conftest import CHAT_FAST
from tests.surge.sinks import HttpCounter


async def test_master_totals_equal_what_the_two_workers_counted(
    write_registry: Callable[[str], Path], journal: Journal
) -> None:
    registry = load_registry(write_registry(CHAT_FAST))
    plan = SurgePlan.of([20, 60], step_s=2.0, rest_s=1.0, users=12)
    async with Drill(registry, journal, seed=3) as drill:
        target = drill.targets()[0]
        result = await run_surge(
            drill, target, plan, topology=Topology(master=True, local_workers=2), probes_per_step=2
        )
        far_end_posts = drill.sims.simulator_of(target).room_for(target.key).posted  # type: ignore[attr-defined]
        probes = [d for d in journal.deliveries(drill.run_id) if d.step.startswith("surge 1.")]

    assert result.stop_reason == "completed"
    workers = result.workers
    assert len(workers) == 2 and all(w["requests"] > 0 for w in workers)
    assert len({w["worker"] for w in workers}) == 2
    totals = result.totals
    assert sum(w["requests"] for w in workers) == totals.requests
    assert sum(w["failures"] for w in workers) == totals.failures == 0
    for point in result.curve.points:
        counted = sum(w["by_step"].get(point.step.name, [0, 0])[0] for w in workers)
        assert counted == point.load.requests
    # Both load steps were carried at (about) the offered rate.
    assert 30 <= result.curve.points[1].load.requests <= 50
    assert 100 <= result.curve.points[2].load.requests <= 140
    accepted_probes = sum(1 for d in probes if d.accepted_at is not None)
    assert far_end_posts == totals.requests + accepted_probes
    assert all(p.holds for p in result.curve.points)
    data = journal.events(result.run_id, "surge")[0]["data"]
    assert data["topology"]["mode"] == "distributed" and data["topology"]["workers"] == 2
    assert data["topology"]["bind_host"] == "127.0.0.1"
    assert data["totals"]["requests"] == totals.requests


async def test_a_worker_started_with_the_cli_joins_a_master(
    http_counter: HttpCounter, write_registry: Callable[[str], Path], journal: Journal
) -> None:
    """``tsunagari surge --worker`` (as on another machine) builds its endpoint from its own registry."""
    path = write_registry(
        f"""
municipalities:
  - code: "131211"
    name: 足立区
    channels:
      - {{id: live, kind: webhook, url: "{http_counter.url}", surge: {{rate: 50, duration: 1m}}}}
"""
    )
    registry = load_registry(path)
    port = free_port()
    worker_cmd = [sys.executable, "-m", "drills.cli", "--lang", "en", "surge", str(path),
                  "--channel", "131211/live", "--live", "--worker", "--master-port", str(port)]  # fmt: skip
    worker = await asyncio.create_subprocess_exec(
        *worker_cmd, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    try:
        async with Drill(registry, journal, live=True) as drill:
            topology = Topology(master=True, expect_workers=1, port=port, worker_wait_s=30)
            plan = SurgePlan.of([30], step_s=2.0, users=6)
            result = await run_surge(
                drill, drill.targets()[0], plan, topology=topology, probes_per_step=1
            )
        assert await asyncio.wait_for(worker.wait(), 30) == 0
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
    assert result.stop_reason == "completed"
    assert len(result.workers) == 1 and result.workers[0]["requests"] == result.totals.requests > 40
    assert http_counter.requests == result.totals.requests + 1  # + the one probe


def test_the_worker_cli_refuses_simulated_and_unallowed_channels(
    write_registry: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_registry(
        CHAT_FAST + '      - {id: live, kind: webhook, url: "http://127.0.0.1:9/hooks/x"}\n'
    )
    common = ["--lang", "en", "surge", str(path), "--worker", "--live"]
    assert main([*common, "--channel", "131016/chat"]) == 2
    assert "simulated channel" in capsys.readouterr().err
    assert main([*common, "--channel", "131016/live"]) == 2
    assert "no surge allowance" in capsys.readouterr().err


async def test_processes_fork_local_workers_and_aggregate_exactly(
    write_registry: Callable[[str], Path], journal: Journal
) -> None:
    registry = load_registry(write_registry(CHAT_FAST))
    async with Drill(registry, journal) as drill:
        target = drill.targets()[0]
        plan = SurgePlan.of([40], step_s=2.0, users=8)
        result = await run_surge(
            drill, target, plan, topology=Topology(processes=2), probes_per_step=1
        )
        far_end_posts = drill.sims.simulator_of(target).room_for(target.key).posted  # type: ignore[attr-defined]
    assert result.event["topology"] == {"mode": "processes", "processes": 2}
    assert len(result.workers) == 2 and all(w["requests"] > 0 for w in result.workers)
    assert sum(w["requests"] for w in result.workers) == result.totals.requests > 60
    assert far_end_posts == result.totals.requests + 1
