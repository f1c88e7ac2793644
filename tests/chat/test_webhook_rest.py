"""A webhook long-poll is parked only while a message is on its way (probes.chat.webhook).

Against the chat simulator: after the first look at open, and while a message only
waits for its turn to leave, the observer keeps no request parked; the send parks
one before the message becomes readable (by the simulator's ledger); once it is seen
nothing stays parked, a message sent later is still seen and its sighting still holds
against the ledger (the cursor misses nothing), and a step that wants answers makes
it look again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from probes.base import Clock, DrillMessage, ProbeEnv
from probes.chat.webhook import WebhookProbe
from tests.chat.farends import SimFarEnd


async def until(ok: Callable[[], bool], within: float = 5.0) -> None:
    async def poll() -> None:
        while not ok():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), within)


def looks_in_flight(probe: WebhookProbe, started: list[float]) -> list[int]:
    """Count the observer's requests in flight (a one-item list the test reads); each
    look's start (monotonic) goes into *started*."""
    flying = [0]
    fetch = probe.fetch  # every request of the probe: its looks are the GETs

    async def counted(method: str, url: str, **kw: Any) -> tuple[int, str, Any, float]:
        if method != "GET":
            return await fetch(method, url, **kw)
        flying[0] += 1
        started.append(Clock.monotonic())
        try:
            return await fetch(method, url, **kw)
        finally:
            flying[0] -= 1

    probe.fetch = counted  # type: ignore[method-assign]
    return flying


async def test_the_long_poll_is_parked_at_the_send_and_misses_nothing(env: ProbeEnv) -> None:
    end = await SimFarEnd(env, WebhookProbe).start()
    try:
        probe = await end.channel(latency=0.3)
        assert isinstance(probe, WebhookProbe)
        assert probe.settings.observer is not None
        assert probe.settings.observer.mode == "longpoll"
        started: list[float] = []
        flying = looks_in_flight(probe, started)
        await probe.open()
        assert len(started) == 1 and flying[0] == 0  # the first look, then nothing parked
        for text in ("一通目", "二通目"):
            message = DrillMessage.new(text)
            waiting = asyncio.ensure_future(probe.observe(message))
            for _ in range(5):  # the watcher, woken by observe(), has had its turns
                await asyncio.sleep(0)
            assert flying[0] == 0  # awaited, not yet sent (waiting for its pace): no look
            looks = len(started)
            await probe.send(message)
            sighting = await asyncio.wait_for(waiting, 5)
            entry = end.sim.ledger.entry(message.token)
            assert entry is not None and entry.visible_at is not None
            # the send started one look, before the message became readable at the far end
            # (the ledger's clock is this machine's monotonic clock)
            assert len(started) == looks + 1 and started[looks] < entry.visible_at
            # the sighting holds against the ledger: seen after it was visible, within its bound
            assert entry.visible_at <= sighting.at <= entry.visible_at + sighting.error_bound_s
            await until(lambda: flying[0] == 0)  # seen: no request left parked
        probe.replies.want()  # a roll call will read answers: look again, and keep looking
        await until(lambda: flying[0] == 1)
    finally:
        await probe.close()
        await end.close()
