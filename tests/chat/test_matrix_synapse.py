"""Matrix against a real Synapse: latency, idempotent retries, gap fill, refusals.

Synapse keeps its own ground truth: every event's ``origin_server_ts``. Measured
arrivals are judged against it as the oracle judges the simulators' ledger.
"""

from __future__ import annotations

import asyncio
import statistics
from typing import Any
from urllib.parse import quote

import pytest

import probes.chat.matrix as matrix
from drills.core.delivery import Outcome
from drills.core.journal import Journal
from drills.core.registry import parse_registry
from drills.core.runner import Drill
from probes.base import (
    ChannelRejected,
    Clock,
    DrillMessage,
    ObserverFault,
    ObserverIsSender,
    ProbeEnv,
)
from probes.chat.matrix import MatrixProbe, MatrixSettings
from tests.chat.farends import SynapseSetup, origin_server_ts

pytestmark = pytest.mark.servers


def make(env: ProbeEnv, setup: SynapseSetup, **overrides: Any) -> MatrixProbe:
    settings = MatrixSettings.model_validate(setup.settings(setup.bot, **overrides))
    return MatrixProbe("131016/matrix", settings, env)


def room_bodies(setup: SynapseSetup, room: str) -> list[str]:
    path = f"/_matrix/client/v3/rooms/{quote(room, safe='')}/messages?dir=b&limit=1000"
    chunk = setup.hs._call("GET", path, setup.bot)["chunk"]
    return [e["content"].get("body", "") for e in chunk if e["type"] == "m.room.message"]


async def test_delivered_with_plausible_latency(env: ProbeEnv, synapse: SynapseSetup) -> None:
    probe = make(env, synapse)
    await probe.open()
    latencies, beyond = [], []
    try:
        for _ in range(10):
            message = DrillMessage.new("参集してください")
            waiting = asyncio.ensure_future(probe.observe(message))
            sent = Clock.monotonic()
            accepted = await probe.send(message)
            sighting = await asyncio.wait_for(waiting, 5)
            latencies.append(sighting.at - sent)
            assert sighting.extra["event_id"] == accepted.provider_id
            assert sighting.extra["sender"] == synapse.bot.user_id
            # Synapse's own clock: the event existed from origin_server_ts (whole ms) on.
            origin_ms = origin_server_ts(synapse, synapse.room, str(accepted.provider_id))
            truth = Clock.monotonic_from_wall(origin_ms / 1000.0)
            facts = (sent, truth, sighting)
            assert sent - 0.001 <= truth <= accepted.at, facts
            assert sighting.at >= truth, facts
            assert sighting.at - truth <= sighting.error_bound_s + 0.02, facts
            beyond.append(sighting.at - truth - sighting.error_bound_s)
    finally:
        await probe.close()
    # Seen by a second account's parked /sync: tens of milliseconds on loopback.
    assert max(latencies) < 1.0 and statistics.median(latencies) < 0.25, latencies
    assert max(beyond) <= 0.02, beyond


async def test_an_observer_that_is_the_sender_is_refused(
    env: ProbeEnv, synapse: SynapseSetup
) -> None:
    """whoami says both tokens are the drill bot: the bot always sees its own message."""
    sender = synapse.settings(synapse.bot)["sender"]
    probe = make(env, synapse, observer=sender)
    try:
        with pytest.raises(ObserverIsSender) as info:
            await probe.open()
    finally:
        await probe.close()
    assert synapse.bot.user_id in info.value.reason


async def test_an_observer_outside_the_room_is_an_observer_fault(
    env: ProbeEnv, synapse: SynapseSetup
) -> None:
    """Synapse's /sync just never shows a room the observer has not joined; joined_rooms says so."""
    room = synapse.hs.create_room(synapse.bot)  # the observer is neither invited nor joined
    probe = make(env, synapse, room=room)
    try:
        with pytest.raises(ObserverFault) as info:
            await probe.open()
    finally:
        await probe.close()
    assert info.value.code == "observer_not_in_room"
    assert synapse.watch.user_id in info.value.reason and room in info.value.reason


async def test_a_retried_transaction_posts_once(env: ProbeEnv, synapse: SynapseSetup) -> None:
    probe = make(env, synapse, observer=None)
    await probe.open()
    message = DrillMessage.new("再送確認")
    try:
        first = await probe._attempt(message)
        again = await probe._attempt(message)  # as after a lost response or a rate limit
    finally:
        await probe.close()
    assert first.provider_id and first.provider_id == again.provider_id
    assert sum(message.token in body for body in room_bodies(synapse, synapse.room)) == 1


async def test_an_encrypted_room_is_refused(env: ProbeEnv, synapse: SynapseSetup) -> None:
    room = synapse.hs.create_room(synapse.bot, invite=[synapse.watch], encrypted=True)
    synapse.hs.join(synapse.watch, room)
    probe = make(env, synapse, room=room)
    await probe.open()
    message = DrillMessage.new("暗号化ルーム")
    try:
        with pytest.raises(ChannelRejected) as info:
            await probe.send(message)
    finally:
        await probe.close()
    assert info.value.code == "encrypted_room" and "encrypted" in info.value.reason
    assert not any(message.token in body for body in room_bodies(synapse, room))


async def test_a_room_alias_is_resolved(env: ProbeEnv, synapse: SynapseSetup) -> None:
    alias = "#bousai-drill:localhost"
    path = f"/_matrix/client/v3/directory/room/{quote(alias, safe='')}"
    synapse.hs._call("PUT", path, synapse.bot, json={"room_id": synapse.room})
    probe = make(env, synapse, room=alias)
    await probe.open()
    try:
        message = DrillMessage.new("別名")
        waiting = asyncio.ensure_future(probe.observe(message))
        await probe.send(message)
        await asyncio.wait_for(waiting, 5)
    finally:
        await probe.close()


async def test_a_limited_timeline_is_back_filled(
    env: ProbeEnv, synapse: SynapseSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(matrix, "TIMELINE_LIMIT", 2)
    room = synapse.hs.create_room(synapse.bot, invite=[synapse.watch])
    synapse.hs.join(synapse.watch, room)
    probe = make(env, synapse, room=room)
    sender = make(env, synapse, room=room, observer=None)
    await sender.open()
    try:
        await probe._look()  # the initial sync: the observer is in place
        messages = [DrillMessage.new(f"大量 {i}") for i in range(7)]
        for m in messages:
            await sender.send(m)
        await probe._look()  # one batch of 7 through a filter that admits 2
        seen = [m.token for m in messages if probe.sightings.get(m.token) is not None]
    finally:
        await sender.close()
        await probe.close()
    assert seen == [m.token for m in messages]


REGISTRY = """\
defaults: {{slo: {{latency: 2s}}}}
municipalities:
  - code: "131016"
    name: 千代田区
    channels:
      - id: matrix-ok
        kind: matrix
        homeserver: {hs}
        sender: {{user: "{bot}", token: env:TSG_TEST_BOT}}
        observer: {{user: "{watch}", token: env:TSG_TEST_WATCH}}
        room: "{room}"
      - id: matrix-wrong-token
        kind: matrix
        homeserver: {hs}
        sender: {{user: "{bot}", token: env:TSG_TEST_WRONG}}
        observer: {{user: "{watch}", token: env:TSG_TEST_WATCH}}
        room: "{room}"
      - id: matrix-encrypted
        kind: matrix
        homeserver: {hs}
        sender: {{user: "{bot}", token: env:TSG_TEST_BOT}}
        observer: {{user: "{watch}", token: env:TSG_TEST_WATCH}}
        room: "{encrypted}"
      - id: matrix-outsider
        kind: matrix
        homeserver: {hs}
        sender: {{user: "{bot}", token: env:TSG_TEST_BOT}}
        observer: {{user: "{watch}", token: env:TSG_TEST_WATCH}}
        room: "{lonely}"
      - id: matrix-self
        kind: matrix
        homeserver: {hs}
        sender: {{user: "{bot}", token: env:TSG_TEST_BOT}}
        observer: {{user: "{bot}", token: env:TSG_TEST_BOT}}
        room: "{room}"
"""


async def test_a_live_drill_against_synapse(
    synapse: SynapseSetup, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    encrypted = synapse.hs.create_room(synapse.bot, invite=[synapse.watch], encrypted=True)
    lonely = synapse.hs.create_room(synapse.bot)  # the observer is not a member
    monkeypatch.setenv("TSG_TEST_BOT", synapse.bot.token)
    monkeypatch.setenv("TSG_TEST_WATCH", synapse.watch.token)
    monkeypatch.setenv("TSG_TEST_WRONG", "syt_wrong_token_for_the_drill_bot")
    text = REGISTRY.format(
        hs=synapse.hs.base_url,
        bot=synapse.bot.user_id,
        watch=synapse.watch.user_id,
        room=synapse.room,
        encrypted=encrypted,
        lonely=lonely,
    )
    reg = parse_registry(text, "live.yaml")
    journal = Journal(tmp_path / "journal.sqlite")
    try:
        async with Drill(reg, journal, scenario="matrix", live=True) as drill:
            step = await drill.broadcast("参集訓練", timeout=3.0, repeat=2)
    finally:
        journal.close()
    by: dict[str, set] = {}
    for d in step.deliveries:
        by.setdefault(d.channel_id, set()).add(d.outcome)
        if d.outcome is Outcome.DELIVERED:
            assert 0 < d.latency_s < 1.0
    assert by == {
        "matrix-ok": {Outcome.DELIVERED},
        "matrix-wrong-token": {Outcome.REJECTED},
        "matrix-encrypted": {Outcome.REJECTED},
        # The drill could not look: an observer fault, never counted as lost.
        "matrix-outsider": {Outcome.ERROR},
        "matrix-self": {Outcome.ERROR},
    }
