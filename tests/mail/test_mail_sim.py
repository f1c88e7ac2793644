"""The mail simulator: knobs become SMTP and Maildir facts the real probe observes."""

from __future__ import annotations

import asyncio

import pytest

from probes.base import ChannelRejected, ChannelUnreachable, DrillMessage, ProbeEnv
from probes.mail.probe import MailProbe, MailSettings
from probes.sim.base import SimKnobs
from probes.sim.mail import MailSimulator
from tests.mail.support import deliver


@pytest.fixture
async def sim():
    simulator = MailSimulator(seed=7)
    await simulator.start()
    yield simulator
    await simulator.stop()


async def probe_for(sim: MailSimulator, key: str, env: ProbeEnv, raw=None, **knobs) -> MailProbe:
    raw = {**MailSimulator.placeholder_settings(), **(raw or {})}
    settings = MailSettings.model_validate(sim.add_channel(key, SimKnobs(**knobs), raw))
    probe = MailProbe(key, settings, env)
    await probe.open()
    return probe


async def test_injected_latency_is_what_the_probe_measures(sim):
    env = ProbeEnv()
    probe = await probe_for(sim, "131211/mail", env, latency="300ms")
    try:
        result = await deliver(probe, DrillMessage.new("遅延あり"))
    finally:
        await probe.close()
        await env.aclose()
    assert result.outcome == "delivered", result
    # The Maildir observer reads the file's ctime: latency = injected delay + SMTP time.
    assert 0.30 <= result.latency < 0.45
    assert result.sighting.extra["observer"] == "maildir"
    assert result.sighting.extra["content_intact"] is True
    assert not any((sim.maildir / "new").iterdir())  # cleaned up after confirmation


async def test_loss_is_accepted_then_lost(sim):
    env = ProbeEnv()
    probe = await probe_for(sim, "131211/mail", env, loss=1.0)
    try:
        result = await deliver(probe, DrillMessage.new("消える"), timeout=0.5)
    finally:
        await probe.close()
        await env.aclose()
    assert result.outcome == "lost"
    assert result.accepted.detail.startswith("250 ")


async def test_outage_is_a_closed_port_and_can_start_and_end_mid_drill(sim):
    env = ProbeEnv()
    down = await probe_for(sim, "131211/down", env, outage=True)
    up = await probe_for(sim, "131229/up", env)
    try:
        refused = await deliver(down, DrillMessage.new("障害中"), timeout=0.5)
        assert isinstance(refused.error, ChannelUnreachable) and refused.error.code == "connect"
        assert (await deliver(up, DrillMessage.new("正常"))).outcome == "delivered"
        sim.set_outage("131229/up", True)
        cut = await deliver(up, DrillMessage.new("途中で障害"), timeout=0.5)
        assert isinstance(cut.error, ChannelUnreachable)
        sim.set_outage("131211/down", False)
        back = await deliver(down, DrillMessage.new("復旧"))
        assert back.outcome == "delivered", back
    finally:
        for p in (down, up):
            await p.close()
        await env.aclose()


async def test_rate_limit_answers_451_and_the_probe_retries(sim):
    env = ProbeEnv()
    probe = await probe_for(sim, "131211/mail", env, rate_limit=5)
    try:
        results = await asyncio.gather(
            *(deliver(probe, DrillMessage.new(f"大量 {i}")) for i in range(12))
        )
    finally:
        await probe.close()
        await env.aclose()
    assert [r.outcome for r in results] == ["delivered"] * 12
    assert sum(r.accepted.throttled for r in results) > 0
    assert sim.channel("131211/mail").throttled > 0


async def test_reject_auth_is_a_535_rejection(sim):
    env = ProbeEnv()
    probe = await probe_for(sim, "131211/mail", env, reject="auth")
    try:
        result = await deliver(probe, DrillMessage.new("認証拒否"), timeout=0.5)
    finally:
        await probe.close()
        await env.aclose()
    assert isinstance(result.error, ChannelRejected) and result.error.code == "535"


async def test_starttls_channels_get_a_private_ca(sim):
    env = ProbeEnv()
    probe = await probe_for(sim, "131211/mail", env, raw={"smtp": {"security": "starttls"}})
    try:
        result = await deliver(probe, DrillMessage.new("暗号化"))
    finally:
        await probe.close()
        await env.aclose()
    assert result.outcome == "delivered", result
    assert result.sighting.extra["insecure"] is False
    assert result.sighting.extra["tls_days_left"] >= 29


async def test_two_hundred_channels_share_one_maildir_observer(sim):
    env = ProbeEnv()
    probes = [await probe_for(sim, f"13{i:04d}/mail", env, latency="50ms") for i in range(200)]
    try:
        results = await asyncio.gather(
            *(deliver(p, DrillMessage.new(f"一斉 {i}")) for i, p in enumerate(probes))
        )
    finally:
        for p in probes:
            await p.close()
        await env.aclose()
    assert [r.outcome for r in results] == ["delivered"] * 200
    assert all(r.latency >= 0.05 for r in results)
