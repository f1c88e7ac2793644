"""What is particular to one kind: alternative senders and observers, specific refusals."""

from __future__ import annotations

import asyncio

import pytest

from probes.base import ChannelRejected, DrillMessage, ProbeEnv
from probes.chat.matrix import MatrixProbe
from probes.chat.mattermost import MattermostProbe
from probes.chat.slack import SlackProbe
from probes.chat.teams import GraphSender, TeamsProbe
from probes.chat.webhook import WebhookProbe
from probes.settings import SecretRef
from probes.sim.base import closed_port
from tests.chat.farends import SimFarEnd, deliver, rebuild


@pytest.fixture
async def sims(env: ProbeEnv):
    ends: dict[type, SimFarEnd] = {}

    async def get(cls: type) -> SimFarEnd:
        if cls not in ends:
            ends[cls] = await SimFarEnd(env, cls).start()
        return ends[cls]

    yield get
    for end in ends.values():
        await end.close()


async def test_teams_graph_sender(sims) -> None:
    end = await sims(TeamsProbe)
    probe = await end.channel(latency=0.05)
    graph = end.sim.graph_sender(probe.channel_id)
    probe = rebuild(probe, workflow_url=None, graph_sender=GraphSender.model_validate(graph))
    await probe.open()
    try:
        _, sighting, _ = await deliver(probe)
        assert sighting.extra["id"]
        revoked = graph | {"refresh_token": SecretRef.inline("0.AAAA-revoked-refresh-token")}
        bad = rebuild(probe, graph_sender=GraphSender.model_validate(revoked), observer=None)
        with pytest.raises(ChannelRejected) as info:
            await bad.send(DrillMessage.new("失効"))
        assert info.value.code == "invalid_grant HTTP 400"
    finally:
        await probe.close()


@pytest.mark.parametrize("cls", [MattermostProbe, WebhookProbe])
async def test_poll_mode_observers(sims, cls: type) -> None:
    end = await sims(cls)
    probe = await end.channel(latency=0.1)
    obs = probe.settings.observer.model_copy(update={"mode": "poll", "interval": 0.02})
    probe = rebuild(probe, observer=obs)
    await probe.open()
    try:
        _, sighting, sent = await deliver(probe)
        assert abs(sighting.at - sent - 0.1) <= 0.1 * 0.1 + 0.02
        assert 0 < sighting.error_bound_s <= 0.05  # a poll knows it may be one interval late
    finally:
        await probe.close()


async def test_mattermost_catches_up_after_the_socket_was_away(sims) -> None:
    end = await sims(MattermostProbe)
    probe = await end.channel()
    await probe.open()
    try:
        await deliver(probe)
        end.sim.set_outage(probe.channel_id, True)  # the websocket drops
        await asyncio.sleep(0.3)
        room = end.sim.room_for(probe.channel_id)
        message = DrillMessage.new("切断中の投稿")
        user = end.sim.user_ids[room.credentials["post"]]
        end.sim.post(room, message.render(), sender=user, post_id="p" * 26)  # posted meanwhile
        await asyncio.sleep(0.05)
        end.sim.set_outage(probe.channel_id, False)
        sighting = await asyncio.wait_for(probe.observe(message), 10)
        assert sighting.error_bound_s >= 0.05  # seen by reading back, not as it happened
    finally:
        await probe.close()


async def test_slack_bot_outside_the_channel(sims) -> None:
    end = await sims(SlackProbe)
    one = await end.channel()
    other = await end.channel()
    stray = rebuild(one, channel=other.settings.channel)
    with pytest.raises(ChannelRejected) as info:
        await stray.send(DrillMessage.new("別チャンネル"))
    assert info.value.code == "not_in_channel" and "invite" in info.value.reason
    lost = rebuild(one, channel="C0NOSUCHONE")
    with pytest.raises(ChannelRejected) as info:
        await lost.send(DrillMessage.new("存在しない"))
    assert info.value.code == "channel_not_found"


async def test_an_unreachable_observer_explains_the_loss(sims) -> None:
    end = await sims(WebhookProbe)
    probe = await end.channel()
    dead = f"http://127.0.0.1:{closed_port()}/rooms/r1/messages"
    probe = rebuild(probe, observer=probe.settings.observer.model_copy(update={"url": dead}))
    await probe.open()
    try:
        message = DrillMessage.new("観測側の障害")
        waiting = asyncio.ensure_future(probe.observe(message))
        await probe.send(message)  # the service itself takes it
        done, _ = await asyncio.wait([waiting], timeout=0.5)
        assert not done
        waiting.cancel()
        reason = probe.timeout_reason(message)
        assert reason is not None and "observer could not reach" in reason
    finally:
        await probe.close()


async def test_webhook_form_posts(sims) -> None:
    end = await sims(WebhookProbe)
    probe = rebuild(await end.channel(latency=0.05), format="form", field="text")
    await probe.open()
    try:
        accepted, sighting, _ = await deliver(probe)
        assert accepted.detail == "HTTP 200" and sighting.at >= accepted.at
    finally:
        await probe.close()


async def test_matrix_resends_once_over_a_connection_the_server_dropped(env: ProbeEnv) -> None:
    end = SimFarEnd(env, MatrixProbe)
    sim = end.sim
    handler = sim._send
    dropped: list[str] = []

    async def drop_first(request):
        if not dropped:
            dropped.append(request.match_info["txn"])
            sim.drop(request)  # as a server closing a kept-alive connection would
        return await handler(request)

    sim._send = drop_first  # before start(): the routes take the method then
    await end.start()
    probe = await end.channel()
    await probe.open()
    try:
        accepted, _, _ = await deliver(probe)
    finally:
        await probe.close()
        await end.close()
    assert dropped and accepted.provider_id
    assert sim.room_for(probe.channel_id).posted == 1  # the resend carried the same txn id
