"""Surge load over SMTP and the Twilio API: Locust's counts against what the far end received."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

from drills.journal import Journal
from drills.registry import load_registry
from drills.runner import Drill
from drills.surge.config import SurgeConfig
from drills.surge.endpoint import Endpoint, endpoint_for
from drills.surge.plan import SurgePlan
from drills.surge.process import LocustRun, Progress, Topology
from drills.surge.runner import LOAD_TEXT, run_surge
from drills.surge.stats import LoadStats, by_step
from probes.base import DEFAULT_MARKER, find_tokens
from probes.sim.twilio import TwilioSimulator
from tests.surge.sinks import SmtpSink


async def _load(
    endpoint: Endpoint, plan: SurgePlan, workdir: Path
) -> tuple[Progress, dict[int, LoadStats]]:
    config = SurgeConfig(
        endpoint.load,
        endpoint.params,
        DEFAULT_MARKER,
        LOAD_TEXT,
        plan.to_dict(),
        str(workdir / "progress.jsonl"),
    )
    run = LocustRun(config, endpoint.host, Topology(), workdir, endpoint.secrets)
    progress = await run.drive(plan)
    return progress, by_step(run.stats())


async def test_smtp_surge_delivers_marked_mail_counted_exactly(
    smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    smtp = SimpleNamespace(
        host="127.0.0.1", port=smtp_sink.port, security="plain", user=None, password=None
    )
    settings = SimpleNamespace(
        smtp=smtp, sender="drill@adachi.example.lg.jp", to=["watch@adachi.example.lg.jp"]
    )
    plan = SurgePlan.of([20, 40], step_s=1.5, users=8)
    progress, steps = await _load(endpoint_for("mail", settings), plan, tmp_path)  # type: ignore[arg-type]

    assert progress.stop_reason == "completed" and progress.steps_seen == [0, 1]
    total = LoadStats.merge(steps.values())
    assert total.failures == 0 and total.requests == len(smtp_sink.subjects)
    assert 25 <= steps[0].requests <= 35 and 50 <= steps[1].requests <= 70
    assert all(s.startswith(DEFAULT_MARKER) for s in smtp_sink.subjects)
    assert len(set(smtp_sink.tokens)) == total.requests  # one fresh drill token per mail
    assert progress.tallies[0]["requests"] == total.requests


SMS_REGISTRY = """
defaults:
  slo: {latency: 2s, reachability: 0.99}
municipalities:
  - code: "131211"
    name: 足立区
    channels:
      - id: sms
        kind: twilio
        to: ["+819011110001", "+819011110002"]
        poll_interval: 50ms
        sim: {latency: 200ms, rate_limit: 30}
"""


async def test_sms_surge_against_the_twilio_simulator(
    write_registry: Callable[[str], Path], journal: Journal
) -> None:
    registry = load_registry(write_registry(SMS_REGISTRY))
    async with Drill(registry, journal, seed=5) as drill:
        target = drill.targets()[0]
        plan = SurgePlan.of([10, 60], step_s=2.0, rest_s=1.0, users=12)
        result = await run_surge(drill, target, plan, probes_per_step=1, timeout=6.0)
        sim = drill.sims.simulator_of(target)
        assert isinstance(sim, TwilioSimulator)
        created = [m.data for m in sim.messages.values()]

    load_bodies = [m["body"] for m in created if LOAD_TEXT in m["body"]]
    rest, calm, busy = result.curve.points
    # Every Message the simulator created for the load was counted by Locust as a success,
    # with the marker and one token; the 30/s rate limit shows as 429s only at 60/s.
    assert len(load_bodies) == result.totals.requests - result.totals.failures
    assert all(b.startswith(DEFAULT_MARKER) and len(find_tokens(b)) == 1 for b in load_bodies)
    assert {m["to"] for m in created} == {"+819011110001", "+819011110002"}
    assert calm.load.failures == 0 and 15 <= calm.load.requests <= 25
    assert busy.load.failures > 0
    # The probes (one per step, to each registered number) were delivered at rest and at 10/s.
    assert rest.probes.counts["delivered"] == 2 and calm.probes.counts["delivered"] == 2
    assert rest.holds and calm.holds
    assert result.event["kind"] == "twilio"


async def test_refused_load_is_counted_as_failures(
    write_registry: Callable[[str], Path], journal: Journal
) -> None:
    text = SMS_REGISTRY.replace("sim: {latency: 200ms, rate_limit: 30}", "sim: {reject: auth}")
    registry = load_registry(write_registry(text))
    async with Drill(registry, journal) as drill:
        target = drill.targets()[0]
        plan = SurgePlan.of([20], step_s=1.0, users=4)
        result = await run_surge(drill, target, plan, probes_per_step=1, timeout=3.0)
        created = drill.sims.simulator_of(target).messages  # type: ignore[attr-defined]
    (step,) = result.curve.points
    assert step.load.requests == step.load.failures > 10
    assert created == {}
    assert step.probes.counts["rejected"] == 2 and step.holds is False
    assert result.breaking_point is step
