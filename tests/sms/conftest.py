"""Fixtures for the SMS tests: a local Twilio on loopback and probes pointed at it.

Everything goes through the real ``twilio`` client over real HTTP: the probe
builds ``twilio.rest.Client`` with :class:`probes.sms.twilio_http.AioTwilioHttp`
rewriting ``api.twilio.com`` to the simulator's port.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest

from probes.base import Accepted, Clock, DrillMessage, ProbeEnv, Sighting
from probes.sim.base import LatencySpec, SimKnobs
from probes.sim.twilio import TwilioSimulator
from probes.sms.probe import TwilioProbe, TwilioSettings

FROM = "+815012345678"
PHONE = "+819012345678"  # a staff member's phone: confirmed by carrier receipt only
RECEIVER = "+818012345678"  # a drill number we can read: loopback confirmation


@dataclass
class Delivery:
    """What a runner would record for one message (the tests' tiny runner)."""

    sent_at: float
    accepted: Accepted | None = None
    sighting: Sighting | None = None
    error: BaseException | None = None
    timed_out: bool = False

    @property
    def latency(self) -> float:
        assert self.sighting is not None
        return self.sighting.at - self.sent_at


async def deliver(probe: TwilioProbe, message: DrillMessage, timeout: float = 5.0) -> Delivery:
    """Send and observe like the drill runner does: observe parked before send."""
    watching = asyncio.ensure_future(probe.observe(message))
    record = Delivery(sent_at=Clock.monotonic())
    try:
        record.accepted = await probe.send(message)
    except Exception as exc:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
        record.error = exc
        return record
    try:
        record.sighting = await asyncio.wait_for(watching, timeout)
    except TimeoutError:
        record.timed_out = True
    except Exception as exc:
        record.error = exc
    return record


@pytest.fixture
async def sim() -> AsyncIterator[TwilioSimulator]:
    simulator = TwilioSimulator(seed=7)
    await simulator.start()
    yield simulator
    await simulator.stop()


ProbeFactory = Callable[..., Any]


@pytest.fixture
async def make_probe(sim: TwilioSimulator) -> AsyncIterator[ProbeFactory]:
    """``await make_probe(latency=0.2, callbacks=True, loopback=True, **settings)``."""
    opened: list[tuple[TwilioProbe, ProbeEnv]] = []

    async def factory(
        *,
        latency: float = 0.05,
        callbacks: bool = False,
        loopback: bool = False,
        knobs: dict[str, Any] | None = None,
        key: str | None = None,
        open_probe: bool = True,
        **overrides: Any,
    ) -> TwilioProbe:
        raw: dict[str, Any] = {"from": FROM, "to": [PHONE, RECEIVER], "poll_interval": 0.05}
        if callbacks:
            raw["status_callback"] = {"fallback_poll": 30}
        if loopback:
            raw["loopback"] = {"receiver": RECEIVER, "receipt_grace": 0.5}
        raw.update(overrides)
        channel = key or f"131211/sms-{len(opened)}"
        sim_knobs = SimKnobs(**{"latency": LatencySpec(value=latency), **(knobs or {})})
        settings = sim.add_channel(channel, sim_knobs, raw)
        env = ProbeEnv()
        probe = TwilioProbe(channel, TwilioSettings.model_validate(settings), env)
        opened.append((probe, env))
        if open_probe:
            await probe.open()
        return probe

    yield factory
    for probe, env in opened:
        await probe.close()
        await env.aclose()


@pytest.fixture
def nums() -> SimpleNamespace:
    """The drill numbers every SMS test uses."""
    return SimpleNamespace(FROM=FROM, PHONE=PHONE, RECEIVER=RECEIVER)


@pytest.fixture
def msg() -> Callable[..., DrillMessage]:
    """``msg(to=PHONE, text=...)``: a fresh drill message for one recipient."""

    def make(
        to: str = PHONE, text: str = "参集訓練です。受信したら所属を報告してください。"
    ) -> DrillMessage:
        return DrillMessage.new(text, recipient=to)

    return make


@pytest.fixture
def run() -> Callable[..., Any]:
    """``await run(probe, message, timeout)``: the tests' tiny runner (see :func:`deliver`)."""
    return deliver
