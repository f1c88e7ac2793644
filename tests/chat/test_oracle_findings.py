"""Chat cases the oracle (tests/oracle) found, each reproduced here against a simulator.

- Matrix recorded ``lost`` a message the ledger showed visible at 0.27-0.62 s, in a
  fallback after ``with drill.outage("chat")``: the probe was opened during the outage,
  its observer backed off, and its first /sync (no ``since``) skipped what was
  already visible.
- The Mattermost websocket observer reported a fixed 2 ms bound; under load a sighting
  came 55 ms after the post became visible.
- A drill hung in ``Drill.finish`` → ``probe.close()``.
"""

from __future__ import annotations

import asyncio

import pytest

from probes.base import Clock, DrillMessage, Probe, ProbeEnv, Sighting
from probes.chat import base as chat_base
from probes.chat import matrix
from probes.chat.base import ChatProbe
from probes.chat.matrix import MatrixProbe
from probes.chat.mattermost import MattermostProbe, push_bound
from probes.chat.webhook import WebhookProbe
from tests.chat.farends import SimFarEnd, seen_through_a_stalled_loop


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


def holds(end: SimFarEnd, token: str, sighting: Sighting) -> float:
    """The oracle's rule for one sighting; returns how late it was seen."""
    entry = end.sim.ledger.entry(token)
    assert entry is not None and entry.visible_at is not None, entry
    late = sighting.at - entry.visible_at
    assert late >= 0, (end.kind, late)
    assert late <= sighting.error_bound_s + 0.02, (end.kind, late, sighting.error_bound_s)
    return late


async def until_visible(end: SimFarEnd, *messages: DrillMessage) -> None:
    async def wait() -> None:
        while True:
            entries = [end.sim.ledger.entry(m.token) for m in messages]
            if all(e is not None and e.visible_at is not None for e in entries):
                return
            await asyncio.sleep(0.01)

    await asyncio.wait_for(wait(), 5)


# ------------------------------------------------------------------ 1: Matrix after an outage


async def test_matrix_sees_a_message_sent_just_after_an_outage_the_probe_opened_in(sims) -> None:
    """The oracle's case (fallback_under_outage seeds 5, 7, 12): opened while the drill
    held the channel down, the observer never synced; the outage ends, a message is
    sent and visible 20 ms later — it was recorded ``lost`` within a 1.5 s step."""
    end = await sims(MatrixProbe)
    probe = await end.channel(latency=0.02)
    end.sim.set_outage(probe.channel_id, True)  # with drill.outage("chat"):
    await probe.open()
    try:
        await asyncio.sleep(0.35)  # the observer is backing off (0.1, 0.2, 0.4 s …)
        end.sim.set_outage(probe.channel_id, False)
        message = DrillMessage.new("復旧後")
        waiting = asyncio.ensure_future(probe.observe(message))
        await probe.send(message)
        sighting = await asyncio.wait_for(waiting, 1.5)
        holds(end, message.token, sighting)
    finally:
        await probe.close()


async def test_matrix_first_sync_records_what_is_already_visible(sims) -> None:
    """A first /sync without ``since`` shows the room's latest events (as Synapse's
    initial sync does); a message visible before it is seen, with an honest bound."""
    end = await sims(MatrixProbe)
    probe = await end.channel(latency=0.01)
    message = DrillMessage.new("既に表示")
    waiting = asyncio.ensure_future(probe.observe(message))
    await probe.send(message)  # the observer is not looking yet
    await until_visible(end, message)
    await asyncio.sleep(0.1)
    await probe.open()
    try:
        sighting = await asyncio.wait_for(waiting, 1.5)
        assert holds(end, message.token, sighting) >= 0.1  # seen late, and says so
    finally:
        await probe.close()


async def test_matrix_first_sync_reads_back_a_limited_timeline_to_the_oldest_awaited(
    sims, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More visible messages than the initial sync's timeline holds: read them back
    through /messages, as far as the oldest message still awaited."""
    monkeypatch.setattr(matrix, "TIMELINE_LIMIT", 2)
    end = await sims(MatrixProbe)
    probe = await end.channel(latency=0.01)
    older = [DrillMessage.new(f"過去 {i}") for i in range(3)]
    for m in older:  # before anything is awaited: no need to read these back
        await probe.send(m)
    messages = [DrillMessage.new(f"大量 {i}") for i in range(7)]
    waiting = [asyncio.ensure_future(probe.observe(m)) for m in messages]
    for m in messages:
        await probe.send(m)
    await until_visible(end, *older, *messages)
    await probe.open()
    try:
        sightings = await asyncio.wait_for(asyncio.gather(*waiting), 2)
        for m, sighting in zip(messages, sightings, strict=True):
            holds(end, m.token, sighting)
    finally:
        await probe.close()


async def test_an_observer_backing_off_looks_again_when_a_message_is_awaited(sims) -> None:
    """After an outage the observer's back-off grows to seconds; a message awaited once
    the far end is back must not wait it out."""
    end = await sims(WebhookProbe)
    probe = await end.channel()
    assert isinstance(probe, ChatProbe)
    napping = asyncio.ensure_future(probe._back_off(5.0))
    await asyncio.sleep(0.05)
    assert not napping.done()
    started = Clock.monotonic()
    waiting = asyncio.ensure_future(probe.observe(DrillMessage.new("待機")))
    await asyncio.wait_for(napping, 1)
    assert Clock.monotonic() - started < 0.1
    # While a message is awaited the observer looks at least twice a second.
    started = Clock.monotonic()
    await asyncio.wait_for(probe._back_off(5.0), 1)
    assert Clock.monotonic() - started < chat_base.BACKOFF_AWAITED_S + 0.1
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)


# ------------------------------------------------------------------ 2: Mattermost bounds


async def test_mattermost_push_bound_is_measured_from_create_at(sims) -> None:
    """The event loop stalls 150 ms as the post becomes visible: the websocket sighting
    is that late, and its bound (from the post's ``create_at``) must say so — it was a
    fixed 2 ms."""
    end = await sims(MattermostProbe)
    token, sighting = await seen_through_a_stalled_loop(end)
    assert holds(end, token, sighting) >= 0.15  # it really was seen late
    assert sighting.error_bound_s >= 0.15


async def test_mattermost_sim_create_at_is_when_the_post_became_visible(sims) -> None:
    end = await sims(MattermostProbe)
    probe = await end.channel(latency=0.1)
    message = DrillMessage.new("作成時刻")
    await probe.send(message)
    await until_visible(end, message)
    room = end.sim.room_for(probe.channel_id)
    (post,) = [m for m in room.visible if message.token in m.text]
    assert post.visible_at is not None and post.visible_at - post.posted_at >= 0.09
    created = end.sim._post_json(room, post)["create_at"]  # type: ignore[attr-defined]
    assert created == int(post.visible_at * 1000)
    # What the websocket observer makes of it: never less than the real lateness.
    entry = end.sim.ledger.entry(message.token)
    assert entry is not None and entry.visible_at is not None
    now = Clock.monotonic()
    assert push_bound({"create_at": created}, now, now) >= now - entry.visible_at


# ------------------------------------------------------------------ 3: close() is bounded


async def test_close_is_bounded_when_the_watcher_never_stops(
    sims, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A watcher that eats every cancellation: close() gives up after CLOSE_WAIT_S (it
    waited 100 × 50 ms and more under load), and the watcher looks no more."""
    monkeypatch.setattr(chat_base, "CLOSE_WAIT_S", 0.5)
    end = await sims(WebhookProbe)
    probe = await end.channel()
    assert isinstance(probe, ChatProbe)
    looks: list[float] = []
    gives_in = Clock.monotonic() + 6.0  # (so that a failing run ends instead of hanging)

    async def stubborn_look() -> float | None:
        probe._parked.set()
        looks.append(Clock.monotonic())
        try:
            await asyncio.sleep(0.02)
        except asyncio.CancelledError:
            if Clock.monotonic() > gives_in:
                raise
            # swallowed, every time
        return 0.0

    probe._look = stubborn_look  # type: ignore[method-assign]
    await probe.open()
    watcher = probe._watcher
    assert watcher is not None
    started = Clock.monotonic()
    await asyncio.wait_for(probe.close(), 3)
    assert Clock.monotonic() - started < 1.5
    await asyncio.sleep(0.1)
    assert watcher.done()  # the loop ended at its next turn: closed
    count = len(looks)
    await asyncio.sleep(0.1)
    assert len(looks) == count


async def test_close_is_bounded_when_a_client_will_not_close(
    sims, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chat_base, "CLOSE_WAIT_S", 0.5)
    end = await sims(MatrixProbe)
    probe = await end.channel()
    assert isinstance(probe, ChatProbe)
    await probe.open()
    real_close = probe._close_clients
    hung: list[bool] = []

    async def hanging_close() -> None:
        hung.append(True)
        await real_close()
        await asyncio.Event().wait()  # never returns

    probe._close_clients = hanging_close  # type: ignore[method-assign]
    started = Clock.monotonic()
    await asyncio.wait_for(probe.close(), 3)
    assert hung and Clock.monotonic() - started < 1.5


@pytest.mark.parametrize("cls", [WebhookProbe, MatrixProbe, MattermostProbe])
async def test_close_during_an_outage_returns_promptly(sims, cls: type) -> None:
    """The mid-drill outage case: the watcher is backing off when the drill finishes."""
    end = await sims(cls)
    probe: Probe = await end.channel()
    await probe.open()
    end.sim.set_outage(probe.channel_id, True)
    await asyncio.sleep(0.4)
    started = Clock.monotonic()
    await asyncio.wait_for(probe.close(), 3)
    assert Clock.monotonic() - started < 0.5
