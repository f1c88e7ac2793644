"""Measurement truth for the chat kinds, checked against the simulators' ledger.

Each case here is one the issue "Measurement truth" found from outside: an
observer window that skips older messages, constant error bounds, observers
that are the sender or not in the room, throttles lost with a timed-out send,
an unreachable observer that looks like a lost message, and simulators whose
channels share one random stream.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from drills.core.reasons import unanswered
from probes.base import (
    ChannelUnreachable,
    Clock,
    DrillMessage,
    ObserverFault,
    ObserverIsSender,
    Probe,
    ProbeEnv,
    ProbeError,
)
from probes.chat.base import ChatProbe
from probes.chat.lineworks import LineWorksProbe
from probes.chat.matrix import MatrixProbe
from probes.chat.mattermost import MattermostProbe
from probes.chat.slack import SlackProbe
from probes.chat.teams import TeamsProbe
from probes.chat.webhook import WebhookProbe
from probes.sim.base import LatencySpec, SimKnobs, closed_port
from probes.sim.chat import ChatSimulator
from probes.sim.ledger import Fate
from tests.chat.farends import SimFarEnd, rebuild, seen_through_a_stalled_loop


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


def set_latency(end: SimFarEnd, probe: Probe, seconds: float) -> None:
    """Change the channel's injected latency for the messages posted from now on."""
    room = end.sim.room_for(probe.channel_id)
    room.knobs = room.knobs.model_copy(update={"latency": LatencySpec(value=seconds)})


def oracle(end: SimFarEnd, token: str, seen_at: float, bound: float) -> tuple[Any, ...]:
    """The oracle's rule for one sighting; returns the facts (for messages) when it holds."""
    entry = end.sim.ledger.entry(token)
    assert entry is not None and entry.visible_at is not None, entry
    facts = (end.kind, seen_at - entry.visible_at, bound)
    assert seen_at >= entry.visible_at, facts
    assert seen_at - entry.visible_at <= bound + 0.02, facts
    return facts


# ------------------------------------------------------------------ item 11: windows

# Every polling observer, made to poll with a short lookback (where it has one).
POLLING: dict[str, tuple[type, dict[str, Any]]] = {
    "slack": (SlackProbe, {"lookback": 0.2}),
    "mattermost-poll": (MattermostProbe, {"lookback": 0.2, "poll": True}),
    "teams": (TeamsProbe, {}),
    "lineworks": (LineWorksProbe, {}),
    "webhook-poll": (WebhookProbe, {"poll": True}),
}


@pytest.mark.parametrize("name", list(POLLING))
async def test_observer_window_keeps_an_older_message_that_shows_up_late(sims, name: str) -> None:
    """A message readable after a later one is still seen (lookback 0.2 s, sends 0.3 s apart).

    The Slack observer used to ask from ``newest seen − lookback``: once it saw the
    later message, the earlier one (visible afterwards) was outside its window for good.
    """
    cls, options = POLLING[name]
    end = await sims(cls)
    overrides = {k: v for k, v in options.items() if k != "poll"}
    probe = await end.channel(latency=0.9, **overrides)
    if options.get("poll"):
        obs = probe.settings.observer.model_copy(update={"mode": "poll", "interval": 0.02})
        probe = rebuild(probe, observer=obs)
    await probe.open()
    try:
        early, late = DrillMessage.new("先に送信"), DrillMessage.new("後に送信")
        waiting = [asyncio.ensure_future(probe.observe(m)) for m in (early, late)]
        await probe.send(early)  # readable after 0.9 s
        set_latency(end, probe, 0.02)
        await asyncio.sleep(0.3)  # the scenario: the second send comes 0.3 s later
        await probe.send(late)  # readable after 0.32 s, long before the first
        seen_late = await asyncio.wait_for(waiting[1], 5)
        seen_early = await asyncio.wait_for(waiting[0], 5)
        assert seen_late.at < seen_early.at
        for message, sighting in ((early, seen_early), (late, seen_late)):
            oracle(end, message.token, sighting.at, sighting.error_bound_s)
    finally:
        await probe.close()


async def test_slack_window_follows_the_oldest_awaited_message(sims) -> None:
    end = await sims(SlackProbe)
    probe = await end.channel(lookback=0.2)
    assert isinstance(probe, ChatProbe)
    assert probe.awaited_since() is None
    message = DrillMessage.new("待機中")
    before = time.time()
    waiting = asyncio.ensure_future(probe.observe(message))
    await asyncio.sleep(0)
    since = probe.awaited_since()
    assert since is not None and before <= since <= time.time()
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert probe.awaited_since() is None  # no longer awaited: the window may move on


# ------------------------------------------------------------------ item 6: bounds


@pytest.mark.parametrize("cls", [WebhookProbe, MatrixProbe])
async def test_push_observer_bound_includes_a_stalled_event_loop(sims, cls: type) -> None:
    """The long-poll observers reported 5 ms / 2 ms + re-arm gap whatever happened.

    Here the event loop stalls for 150 ms right as the message becomes visible:
    the sighting is late by that much, and its bound must say so.
    """
    end = await sims(cls)
    token, sighting = await seen_through_a_stalled_loop(end)
    entry = end.sim.ledger.entry(token)
    assert entry is not None and entry.visible_at is not None
    assert sighting.at - entry.visible_at >= 0.15  # it really was seen late
    oracle(end, token, sighting.at, sighting.error_bound_s)


async def test_poll_bound_counts_from_the_last_look_that_read(sims) -> None:
    """A throttled look reads nothing; the next sighting's bound must not start there."""
    end = await sims(SlackProbe)
    probe = await end.channel()
    assert isinstance(probe, ChatProbe)
    before = probe._last_look_started
    probe._look_read = True
    assert probe.look_failed(1.5) == 1.5 and probe._look_read is False
    assert probe._last_look_started == before


# ------------------------------------------------------------------ item 9: observer = sender


def observer_is_sender(probe: Probe) -> Probe:
    """The same channel with the sender's own credential as the observer's."""
    s: Any = probe.settings
    if isinstance(probe, SlackProbe):
        return rebuild(probe, observer_token=s.bot_token)
    sender_token = s.sender.token if isinstance(probe, MatrixProbe) else s.token
    return rebuild(probe, observer=s.observer.model_copy(update={"token": sender_token}))


@pytest.mark.parametrize("cls", [SlackProbe, MatrixProbe, MattermostProbe])
async def test_an_observer_that_is_the_sender_is_refused_at_open(sims, cls: type) -> None:
    end = await sims(cls)
    good = await end.channel()
    await good.open()  # separate identities: no complaint
    await good.close()
    probe = observer_is_sender(good)
    with pytest.raises(ObserverIsSender) as info:
        await probe.open()
    await probe.close()
    assert isinstance(info.value, ObserverFault)  # the drill could not look: error, not lost
    assert good.channel_id in info.value.reason and " / " in info.value.reason


# ------------------------------------------------------------------ item 16: not in the room


async def test_matrix_observer_outside_the_room_is_an_observer_fault(sims) -> None:
    end = await sims(MatrixProbe)
    probe = await end.channel()
    other = await end.channel()
    assert isinstance(other, MatrixProbe) and other.settings.observer is not None
    stranger = probe.settings.observer.model_copy(  # type: ignore[union-attr]
        update={"token": other.settings.observer.token}
    )
    outsider = rebuild(probe, observer=stranger)
    with pytest.raises(ObserverFault) as info:
        await outsider.open()
    await outsider.close()
    assert info.value.code == "observer_not_in_room"
    assert "not a member" in info.value.reason


# ------------------------------------------------------------------ item 5: cannot look


async def test_observer_trouble_while_the_read_api_is_unreachable(sims) -> None:
    end = await sims(WebhookProbe)
    probe = await end.channel()
    assert probe.observer_trouble() is None
    dead = f"http://127.0.0.1:{closed_port()}/rooms/r1/messages"
    probe = rebuild(probe, observer=probe.settings.observer.model_copy(update={"url": dead}))
    await probe.open()
    try:
        trouble = probe.observer_trouble()
        assert trouble is not None
        assert "cannot reach" in trouble and " / " in trouble
    finally:
        await probe.close()


@pytest.mark.parametrize("cls", [WebhookProbe, MatrixProbe, SlackProbe, MattermostProbe])
async def test_observer_trouble_clears_when_the_observer_can_look_again(sims, cls: type) -> None:
    """Trouble is reported while the far end is away, and cleared soon after it is back.

    Long-poll observers must not park for 25-30 s before admitting they can look again.
    A webhook's observer looks only while a message is on its way (probes.chat.webhook):
    its trouble shows once one is sent into the outage.
    """
    end = await sims(cls)
    probe = await end.channel()
    await probe.open()

    async def until(ok: Any) -> None:
        while not ok():
            await asyncio.sleep(0.01)

    into_outage: asyncio.Future[Any] | None = None
    try:
        assert probe.observer_trouble() is None
        end.sim.set_outage(probe.channel_id, True)
        if cls is WebhookProbe:
            lost = DrillMessage.new("停止中")
            into_outage = asyncio.ensure_future(probe.observe(lost))
            with pytest.raises(ProbeError):
                await probe.send(lost)
        await asyncio.wait_for(until(lambda: probe.observer_trouble() is not None), 5)
        end.sim.set_outage(probe.channel_id, False)
        await asyncio.wait_for(until(lambda: probe.observer_trouble() is None), 5)
        message = DrillMessage.new("観測側")
        waiting = asyncio.ensure_future(probe.observe(message))
        await probe.send(message)
        await asyncio.wait_for(waiting, 5)
    finally:
        if into_outage is not None:
            into_outage.cancel()
        await probe.close()


async def test_a_send_into_an_outage_never_claims_the_observer_saw_no_trouble(sims) -> None:
    """The read-back's look begins with the send; when the send fails first, its reason
    says that look had not answered yet (or that it failed) — never "no trouble"."""
    end = await sims(WebhookProbe)
    probe = await end.channel()
    await probe.open()
    try:
        end.sim.set_outage(probe.channel_id, True)
        message = DrillMessage.new("停止中")
        watching = asyncio.ensure_future(probe.observe(message))
        called = Clock.monotonic()
        with pytest.raises(ChannelUnreachable) as failed:
            await probe.send(message)
        said = unanswered(failed.value, probe, Clock.monotonic() - called, 0.0, called)
        assert "reported no trouble" not in said and "異常の報告はありません" not in said
        assert (
            "had not answered yet" in said and "まだ応答がありません" in said
        ) or "could not reach it either" in said, said
        watching.cancel()
    finally:
        await probe.close()


async def test_the_observer_side_of_an_unanswered_send() -> None:
    """Three things the observer can honestly say, from what it knows at that moment."""

    class Looking:  # only what the reason asks of a probe
        def __init__(self, trouble: str | None, since: float | None) -> None:
            self.trouble, self.since = trouble, since

        def confirms(self) -> bool:
            return True

        def observer_trouble(self) -> str | None:
            return self.trouble

        def observer_looking_since(self) -> float | None:
            return self.since

    refused = ChannelUnreachable("接続拒否 / connection refused", code="connect")

    def said(trouble: str | None, since: float | None) -> str:
        probe: Any = Looking(trouble, since)
        return unanswered(refused, probe, 0.2, 0.0, called_at=100.0)

    assert "could not reach it either" in said("down / down", 100.5)
    assert "had not answered yet" in said(None, 100.0)  # begun with the send
    assert "reported no trouble" in said(None, 99.0)  # a look under way since before it
    assert "reported no trouble" in said(None, None)  # no look under way: its last said ok


# ------------------------------------------------------------------ item 12: throttles


@pytest.mark.parametrize(
    "cls", [WebhookProbe, MatrixProbe, SlackProbe, MattermostProbe, TeamsProbe, LineWorksProbe]
)
async def test_throttles_are_counted_as_they_happen(sims, cls: type) -> None:
    """A send cut off by the step's timeout while being throttled still says so."""
    end = await sims(cls)
    probe = await end.channel(rate_limit=0.1)  # one message per 10 s
    await probe.open()
    try:
        first, second = DrillMessage.new("一通目"), DrillMessage.new("二通目")
        await probe.send(first)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(probe.send(second), 0.5)  # "slow down", then the timeout
    finally:
        await probe.close()
    throttling = probe.throttling(second.token)
    assert throttling is not None and throttling.count >= 1 and throttling.code
    assert probe.throttling(first.token) is None
    entry = end.sim.ledger.entry(second.token)
    assert entry is not None and entry.fate is Fate.REFUSED  # not taken (yet)
    # cut mid-try (``unanswered``), the far end may have refused that try unread
    unread = 1 if throttling.unanswered else 0
    assert throttling.count <= entry.refusals <= throttling.count + unread


# ------------------------------------------------------------------ ledger and streams


async def test_ledger_records_each_fate_in_a_chat_simulator() -> None:
    sim = ChatSimulator(seed=1)
    await sim.start()
    try:
        sim.add_channel("1/ok", SimKnobs(latency=0.01), {})
        sim.add_channel("1/void", SimKnobs(loss=1.0), {})
        sim.add_channel("1/down", SimKnobs(outage=True), {})
        shown, lost = DrillMessage.new("届く"), DrillMessage.new("消える")
        received = Clock.monotonic()
        sim.post(sim.room_for("1/ok"), shown.render())
        sim.post(sim.room_for("1/void"), lost.render())
        room = sim.room_for("1/ok")
        await sim.wait_visible(room, 0, 2.0)
        entry = sim.ledger.entry(shown.token)
        assert entry is not None and entry.channel == "1/ok" and entry.fate is Fate.VISIBLE
        assert entry.received_at is not None and entry.received_at >= received
        assert entry.visible_at is not None and entry.visible_at - entry.received_at >= 0.01
        gone = sim.ledger.entry(lost.token)
        assert gone is not None and gone.fate is Fate.DROPPED and gone.visible_at is None
        assert [o.channel for o in sim.ledger.outages()] == ["1/down"]
    finally:
        await sim.stop()


def drop_pattern(sim: ChatSimulator, key: str, count: int, other: str | None) -> list[bool]:
    """Which of *count* posts to *key* the loss knob drops (posting to *other* in between)."""
    fates = []
    for _ in range(count):
        message = DrillMessage.new("損失")
        sim.post(sim.room_for(key), message.render())
        if other is not None:
            sim.post(sim.room_for(other), DrillMessage.new("他").render())
        entry = sim.ledger.entry(message.token)
        assert entry is not None
        fates.append(entry.fate is Fate.DROPPED)
    return fates


async def test_each_channel_draws_from_its_own_random_stream() -> None:
    """One channel's losses do not depend on the traffic of another (issue item 13)."""
    knobs = SimKnobs(latency=5.0, loss=0.5)
    patterns = []
    for other in (None, "1/b"):
        sim = ChatSimulator(seed=3)
        await sim.start()
        try:
            sim.add_channel("1/a", knobs, {})
            sim.add_channel("1/b", knobs, {})
            patterns.append(drop_pattern(sim, "1/a", 40, other))
        finally:
            await sim.stop()
    assert patterns[0] == patterns[1]
    assert 0 < sum(patterns[0]) < 40


async def test_the_same_seed_gives_the_same_losses_and_another_seed_others() -> None:
    knobs = SimKnobs(latency=5.0, loss=0.5)
    patterns = []
    for seed in (3, 3, 4):
        sim = ChatSimulator(seed=seed)
        await sim.start()
        try:
            sim.add_channel("1/a", knobs, {})
            patterns.append(drop_pattern(sim, "1/a", 40, None))
        finally:
            await sim.stop()
    assert patterns[0] == patterns[1] != patterns[2]


async def test_a_slack_client_is_built_once_per_token(sims) -> None:
    end = await sims(SlackProbe)
    probe = await end.channel()
    assert isinstance(probe, SlackProbe)
    await probe.open()
    try:
        for _ in range(3):
            await probe.send(DrillMessage.new("再利用"))
        tokens = {probe.settings.bot_token.reveal(), probe.settings.observer_token.reveal()}  # type: ignore[union-attr]
        assert set(probe._clients) == tokens
        assert all(c.proxy is None for c in probe._clients.values())
    finally:
        await probe.close()


async def test_slack_ignores_proxy_variables_like_every_other_kind(
    sims, monkeypatch: pytest.MonkeyPatch
) -> None:
    """slack_sdk sends HTTPS_PROXY with every request (NO_PROXY ignored); the drill does not."""
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{closed_port()}")
    end = await sims(SlackProbe)
    probe = await end.channel()
    await probe.open()
    try:
        accepted = await probe.send(DrillMessage.new("直接接続"))
        assert accepted.provider_id
    finally:
        await probe.close()


async def test_a_message_due_while_the_channel_is_down_shows_up_when_it_returns() -> None:
    """Nobody can read a channel that is down: the ledger must not call it visible then."""
    sim = ChatSimulator(seed=1)
    await sim.start()
    try:
        sim.add_channel("1/a", SimKnobs(latency=0.02), {})
        room = sim.room_for("1/a")
        message = DrillMessage.new("停止中")
        sim.post(room, message.render())
        sim.set_outage("1/a", True)
        await asyncio.sleep(0.1)  # the outage outlasts the message's 20 ms
        entry = sim.ledger.entry(message.token)
        assert entry is not None and entry.fate is Fate.PENDING and not room.visible
        back = Clock.monotonic()
        sim.set_outage("1/a", False)
        assert entry.fate is Fate.VISIBLE and entry.visible_at is not None
        assert entry.visible_at >= back and room.visible
    finally:
        await sim.stop()


async def test_mattermost_push_is_handled_while_the_read_back_is_slow(env: ProbeEnv) -> None:
    """After a reconnect, the read-back ran inside the socket loop: a post pushed meanwhile
    waited for it, and was recorded late with the socket's 2 ms bound (seen by the oracle)."""
    end = SimFarEnd(env, MattermostProbe)
    sim = end.sim
    handler = sim._posts_for_channel  # type: ignore[attr-defined]
    reading = asyncio.Event()

    async def slow_read_back(request: Any) -> Any:
        reading.set()
        await asyncio.sleep(0.3)  # a slow posts endpoint (the fault under test)
        return await handler(request)

    sim._posts_for_channel = slow_read_back  # type: ignore[attr-defined]  # before start()
    await end.start()
    probe = await end.channel(latency=0.02)
    await probe.open()
    try:
        sim.set_outage(probe.channel_id, True)  # the websocket drops
        await asyncio.sleep(0.05)
        sim.set_outage(probe.channel_id, False)
        await asyncio.wait_for(reading.wait(), 5)  # reconnected; reading back now
        message = DrillMessage.new("再接続直後")
        waiting = asyncio.ensure_future(probe.observe(message))
        await probe.send(message)
        sighting = await asyncio.wait_for(waiting, 5)
        oracle(end, message.token, sighting.at, sighting.error_bound_s)
    finally:
        await probe.close()
        await end.close()


async def test_close_stops_a_watcher_that_lost_one_cancellation(sims) -> None:
    """On Python 3.11 ``asyncio.wait_for`` in a client library can eat a cancellation;
    the watcher then looked on for ever and the drill never finished closing."""
    end = await sims(WebhookProbe)
    probe = await end.channel()
    assert isinstance(probe, ChatProbe)
    swallowed: list[bool] = []

    async def look_that_eats_a_cancel() -> float | None:
        probe._parked.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            if swallowed:
                raise
            swallowed.append(True)  # as wait_for does when its inner call just finished
        return 0.0

    probe._look = look_that_eats_a_cancel  # type: ignore[method-assign]
    await probe.open()
    started = Clock.monotonic()
    await asyncio.wait_for(probe.close(), 5)
    assert swallowed
    assert Clock.monotonic() - started < 1.0  # not by the 5 s wait_for cancelling close()
