"""A webhook long-poll rests once it has nothing to wait for (probes.chat.webhook).

Against the chat simulator: after its message is seen the observer keeps no request
parked, a message sent later is still seen and its sighting still holds against the
simulator's ledger (the cursor misses nothing), and a step that wants answers makes
it look again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from probes.base import DrillMessage, ProbeEnv
from probes.chat.webhook import WebhookProbe
from tests.chat.farends import SimFarEnd


async def until(ok: Callable[[], bool], within: float = 5.0) -> None:
    async def poll() -> None:
        while not ok():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), within)


def looks_in_flight(probe: WebhookProbe) -> list[int]:
    """Count the observer's requests in flight (a one-item list the test reads)."""
    flying = [0]
    fetch = probe.fetch

    async def counted(method: str, url: str, **kw: Any) -> tuple[int, str, Any]:
        if method != "GET":
            return await fetch(method, url, **kw)
        flying[0] += 1
        try:
            return await fetch(method, url, **kw)
        finally:
            flying[0] -= 1

    probe.fetch = counted  # type: ignore[method-assign]
    return flying


async def test_the_long_poll_rests_after_its_message_and_misses_nothing(env: ProbeEnv) -> None:
    end = await SimFarEnd(env, WebhookProbe).start()
    try:
        probe = await end.channel(latency=0.05)
        assert isinstance(probe, WebhookProbe)
        assert probe.settings.observer is not None
        assert probe.settings.observer.mode == "longpoll"
        flying = looks_in_flight(probe)
        await probe.open()
        assert flying[0] == 1  # parked before anything is sent
        for text in ("一通目", "二通目"):
            message = DrillMessage.new(text)
            waiting = asyncio.ensure_future(probe.observe(message))
            await probe.send(message)
            sighting = await asyncio.wait_for(waiting, 5)
            entry = end.sim.ledger.entry(message.token)
            assert entry is not None and entry.visible_at is not None
            # the sighting holds against the ledger: seen after it was visible, within its bound
            assert entry.visible_at <= sighting.at <= entry.visible_at + sighting.error_bound_s
            await until(lambda: flying[0] == 0)  # seen: no request left parked
        probe.replies.want()  # a roll call will read answers: look again, and keep looking
        await until(lambda: flying[0] == 1)
    finally:
        await probe.close()
        await end.close()
