"""Surge load over SMTP and the Twilio API: Locust's counts against what the far end received."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from drills.core.journal import Journal
from drills.core.registry import load_registry
from drills.core.runner import Drill
from drills.surge.plan import SurgePlan
from drills.surge.runner import LOAD_TEXT, run_surge
from probes.base import DEFAULT_MARKER, find_tokens
from probes.mail.message import token_in_headers
from probes.sim.mail import MailSimulator
from probes.sim.twilio import TwilioSimulator

MAIL_REGISTRY = """
defaults:
  slo: {latency: 2s, reachability: 0.99}
municipalities:
  - code: "131211"
    name: 足立区
    channels:
      - id: mail
        kind: mail
        to: [drill@adachi.example.lg.jp]
        sim: {latency: 100ms, rate_limit: 30}
"""


async def test_mail_surge_against_the_mail_simulator(
    write_registry: Callable[[str], Path], journal: Journal
) -> None:
    registry = load_registry(write_registry(MAIL_REGISTRY))
    mails: list[bytes] = []
    async with Drill(registry, journal, seed=9) as drill:
        target = drill.targets()[0]
        await drill.sims.settings_for(target)
        sim = drill.sims.simulator_of(target)
        assert isinstance(sim, MailSimulator)
        deliver = sim.deliver_later

        def keep(ch: Any, data: bytes, delay: float, *args: Any, **kw: Any) -> None:
            mails.append(data)  # what the relay accepted
            deliver(ch, data, delay, *args, **kw)

        sim.deliver_later = keep  # type: ignore[method-assign]
        plan = SurgePlan.of([10, 60], step_s=2.0, rest_s=1.0, users=12)
        result = await run_surge(drill, target, plan, probes_per_step=1, timeout=6.0)
        relay = sim.channel(target.key)

    rest, calm, busy = result.curve.points
    probes_accepted = sum(p.probes.sent - p.probes.counts["rejected"] for p in result.curve.points)
    # The relay accepted exactly the load Locust counted as sent, plus the probes; the
    # 30/s limit answers 451 at MAIL FROM, counted as failures, only at 60/s.
    assert relay.accepted == result.totals.requests - result.totals.failures + probes_accepted
    assert calm.load.failures == 0 and 15 <= calm.load.requests <= 25
    assert busy.load.failures > 0 and relay.throttled >= busy.load.failures
    assert rest.holds and calm.holds
    assert rest.probes.counts["delivered"] == 1 and calm.probes.counts["delivered"] == 1
    # Every accepted mail is a drill mail with its own token (load and probes alike),
    # and every one reached the Maildir (loss 0).
    tokens = {token_in_headers(m) for m in mails}
    assert None not in tokens and len(tokens) == len(mails) == relay.accepted == relay.stored
    assert result.event["kind"] == "mail"


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
