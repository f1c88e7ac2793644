"""Measurement truth for mail on the simulator: the ledger, unobserved recipients, trouble.

Every delivery here is checked against the simulator's ledger (probes/sim/ledger.py):
what the probe measured (sent + latency) is never earlier than the moment the
message became visible, and no later than that by more than the sighting's own
error bound + 20 ms.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from probes.base import DrillMessage, ProbeEnv
from probes.mail.maildir import MaildirObserver
from probes.mail.probe import MailProbe, MailSettings
from probes.sim.base import SimKnobs
from probes.sim.ledger import Fate
from probes.sim.mail import MailSimulator
from tests.mail.support import Result, deliver


@pytest.fixture
async def sim():
    simulator = MailSimulator(seed=11)
    await simulator.start()
    yield simulator
    await simulator.stop()


def settings_for(sim: MailSimulator, key: str, raw=None, **knobs) -> MailSettings:
    raw = {**MailSimulator.placeholder_settings(), **(raw or {})}
    return MailSettings.model_validate(sim.add_channel(key, SimKnobs(**knobs), raw))


async def probe_for(sim: MailSimulator, key: str, env: ProbeEnv, raw=None, **knobs) -> MailProbe:
    probe = MailProbe(key, settings_for(sim, key, raw, **knobs), env)
    await probe.open()
    return probe


def assert_agrees_with_ledger(sim: MailSimulator, message: DrillMessage, result: Result) -> None:
    entry = sim.ledger.entry(message.token, message.recipient or sim_to(sim, message))
    assert entry is not None and entry.fate is Fate.VISIBLE, entry
    measured = result.sent_at + result.latency
    assert measured >= entry.visible_at, (measured, entry.visible_at)
    assert measured - entry.visible_at <= result.sighting.error_bound_s + 0.020


def sim_to(sim: MailSimulator, message: DrillMessage) -> str:
    entries = sim.ledger.entries(message.token)
    assert len(entries) == 1, entries
    return entries[0].recipient


async def test_ledger_records_received_then_visible_and_the_probe_agrees(sim):
    env = ProbeEnv()
    probe = await probe_for(sim, "131211/mail", env, latency="150ms")
    try:
        messages = [DrillMessage.new(f"台帳 {i}") for i in range(5)]
        results = await asyncio.gather(*(deliver(probe, m) for m in messages))
    finally:
        await probe.close()
        await env.aclose()
    for message, result in zip(messages, results, strict=True):
        assert result.outcome == "delivered", result
        entry = sim.ledger.entry(message.token, probe.settings.to[0])
        assert entry is not None
        assert result.sent_at < entry.received_at <= result.accepted.at
        assert entry.visible_at - entry.received_at >= 0.150
        assert_agrees_with_ledger(sim, message, result)


async def test_ledger_records_loss_as_dropped(sim):
    env = ProbeEnv()
    probe = await probe_for(sim, "131211/mail", env, loss=1.0)
    try:
        message = DrillMessage.new("消える")
        result = await deliver(probe, message, timeout=0.3)
    finally:
        await probe.close()
        await env.aclose()
    assert result.outcome == "lost"
    entry = sim.ledger.entry(message.token, probe.settings.to[0])
    assert entry.fate is Fate.DROPPED and entry.received_at is not None
    assert entry.visible_at is None


async def test_ledger_records_each_rate_limit_refusal_and_the_probe_counts_the_same(sim):
    env = ProbeEnv()
    probe = await probe_for(sim, "131211/mail", env, rate_limit=5)
    try:
        messages = [DrillMessage.new(f"大量 {i}") for i in range(12)]
        results = await asyncio.gather(*(deliver(probe, m) for m in messages))
    finally:
        await probe.close()
        await env.aclose()
    assert [r.outcome for r in results] == ["delivered"] * 12
    refused = 0
    for message, result in zip(messages, results, strict=True):
        entry = sim.ledger.entry(message.token, probe.settings.to[0])
        assert entry.fate is Fate.VISIBLE
        assert entry.refusal_codes == ["451 4.7.1"] * entry.refusals
        throttling = probe.throttling(message.token)
        assert (throttling.count if throttling else 0) == entry.refusals
        assert result.accepted.throttled == entry.refusals
        if throttling:
            assert throttling.code == "451 4.7.1"
        refused += entry.refusals
        assert_agrees_with_ledger(sim, message, result)
    assert refused == sim.channel("131211/mail").throttled > 0


async def test_ledger_records_an_auth_refusal_as_final(sim):
    env = ProbeEnv()
    probe = await probe_for(sim, "131211/mail", env, reject="auth")
    try:
        message = DrillMessage.new("認証拒否")
        result = await deliver(probe, message, timeout=0.5)
    finally:
        await probe.close()
        await env.aclose()
    assert result.outcome == "rejected" and result.error.code == "535"
    entry = sim.ledger.entry(message.token, probe.settings.to[0])
    assert entry.fate is Fate.REFUSED and entry.refusal_codes == ["535 5.7.8"]
    assert entry.received_at is None


async def test_a_channel_that_starts_down_is_down_in_the_ledger_from_the_start(sim):
    settings_for(sim, "131211/down", outage=True)
    settings_for(sim, "131229/up")
    [outage] = sim.ledger.outages("131211/down")
    assert outage.end is None
    assert sim.ledger.outages("131229/up") == []
    sim.set_outage("131211/down", False)
    [outage] = sim.ledger.outages("131211/down")
    assert outage.end is not None and outage.end >= outage.start


async def _loss_pattern(seed: int, with_neighbour: bool) -> list[bool]:
    sim = MailSimulator(seed=seed)
    await sim.start()
    env = ProbeEnv()
    try:
        probe = await probe_for(sim, "131211/mail", env, loss=0.5)
        neighbour = await probe_for(sim, "131229/mail", env, loss=0.5) if with_neighbour else None
        pattern = []
        for i in range(24):
            message = DrillMessage.new(f"独立 {i}")
            await probe.send(message)
            if neighbour is not None:  # the neighbour's traffic interleaves with ours
                await neighbour.send(DrillMessage.new(f"隣 {i}"))
            entry = sim.ledger.entry(message.token, probe.settings.to[0])
            pattern.append(entry.fate is Fate.DROPPED)
        await probe.close()
        if neighbour is not None:
            await neighbour.close()
        return pattern
    finally:
        await env.aclose()
        await sim.stop()


async def test_a_channels_losses_do_not_depend_on_other_channels_traffic():
    alone = await _loss_pattern(5, with_neighbour=False)
    beside = await _loss_pattern(5, with_neighbour=True)
    assert alone == beside  # its own stream: same seed, same losses, whoever else sends
    assert 0 < sum(alone) < len(alone)
    assert await _loss_pattern(6, with_neighbour=False) != alone


async def test_unobserved_recipient_is_accepted_never_lost_and_visible_in_the_ledger(sim):
    env = ProbeEnv()
    raw = {"to": ["drill@sim.tsunagari.invalid", "kacho@sim.tsunagari.invalid"]}
    probe = await probe_for(sim, "131211/mail", env, raw=raw, latency="50ms")
    try:
        assert probe.observes("drill@sim.tsunagari.invalid")
        assert not probe.observes("kacho@sim.tsunagari.invalid")
        seen = DrillMessage.new("観測あり", recipient="drill@sim.tsunagari.invalid")
        unseen = DrillMessage.new("観測なし", recipient="kacho@sim.tsunagari.invalid")
        results = await asyncio.gather(deliver(probe, seen), deliver(probe, unseen))
        # The unobserved mailbox got its mail too (ledger), though nobody could see it.
        deadline = asyncio.get_running_loop().time() + 2
        while sim.ledger.entry(unseen.token, unseen.recipient).visible_at is None:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
    finally:
        await probe.close()
        await env.aclose()
    assert [r.outcome for r in results] == ["delivered", "accepted"]
    assert_agrees_with_ledger(sim, seen, results[0])
    assert sim.ledger.entry(unseen.token, unseen.recipient).fate is Fate.VISIBLE
    # ... and did not land in the observed Maildir.
    assert sim.channel("131211/mail").stored == 2


async def test_observer_trouble_names_an_unreadable_maildir_and_clears_when_it_is_back(tmp_path):
    for sub in ("tmp", "new", "cur"):
        (tmp_path / "Maildir" / sub).mkdir(parents=True)
    observer = MaildirObserver(tmp_path / "Maildir", interval=3600)
    await observer.start()
    try:
        assert observer.trouble is None
        os.rename(tmp_path / "Maildir" / "new", tmp_path / "Maildir" / "gone")
        observer.scan()
        assert observer.trouble is not None and "cannot read" in observer.trouble
        os.rename(tmp_path / "Maildir" / "gone", tmp_path / "Maildir" / "new")
        observer.scan()
        assert observer.trouble is None
    finally:
        await observer.aclose()


async def test_probe_reports_its_observers_trouble(sim):
    env = ProbeEnv()
    probe = await probe_for(sim, "131211/mail", env)
    try:
        assert probe.observer_trouble() is None
        os.rename(sim.maildir / "new", sim.maildir / "gone")
        try:
            result = await deliver(probe, DrillMessage.new("見えない"), timeout=0.5)
        finally:
            os.rename(sim.maildir / "gone", sim.maildir / "new")
    finally:
        await probe.close()
        await env.aclose()
    # Not seen while the observer could not look: the drill's error, not a lost message.
    assert result.outcome == "error", result
    assert "Maildir" in result.reason


async def test_maildir_sightings_are_never_before_the_ledgers_visible_time(sim):
    env = ProbeEnv()
    probes = [
        await probe_for(sim, f"13{i:04d}/mail", env, latency={"dist": "uniform", "high": "0.2s"})
        for i in range(40)
    ]
    try:
        messages = [DrillMessage.new(f"境界 {i}") for i in range(40)]
        results = await asyncio.gather(
            *(deliver(p, m) for p, m in zip(probes, messages, strict=True))
        )
    finally:
        for p in probes:
            await p.close()
        await env.aclose()
    worst = 0.0
    for message, result in zip(messages, results, strict=True):
        assert result.outcome == "delivered", result
        assert_agrees_with_ledger(sim, message, result)
        entry = sim.ledger.entry(message.token, sim_to(sim, message))
        worst = max(worst, result.sent_at + result.latency - entry.visible_at)
    assert worst < 0.020
