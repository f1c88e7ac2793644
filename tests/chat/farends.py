"""The far ends the chat contract suite runs against, behind one small interface.

- :class:`SimFarEnd`: a kind's local fake server (probes/sim/<kind>.py) with
  the simulator knobs (latency, outage, rate_limit, reject).
- :class:`SynapseFarEnd`: a real Synapse. Latency is injected by a proxy that
  delays what the observer reads; bad credentials are a wrong access token;
  the rate limit is a Synapse per-user override; an outage stops a Synapse
  of its own mid-drill.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from probes.base import Accepted, Clock, DrillMessage, Probe, ProbeEnv, Sighting
from probes.settings import SecretRef
from probes.sim.base import SimKnobs
from probes.sim.chat import ChatSimBase
from tests.servers.delay_proxy import DelayProxy
from tests.servers.synapse import MatrixUser, Synapse

_keys = itertools.count(1)


async def deliver(probe: Probe, text: str = "参集訓練") -> tuple[Accepted, Sighting, float]:
    """Send one drill message and wait (10 s at most) for the observer to see it."""
    message = DrillMessage.new(text)
    waiting = asyncio.ensure_future(probe.observe(message))
    sent = Clock.monotonic()
    try:
        accepted = await probe.send(message)
        sighting = await asyncio.wait_for(waiting, 10)
    finally:
        waiting.cancel()
    return accepted, sighting, sent


def rebuild(probe: Probe, **updates: Any) -> Probe:
    """The same channel with some settings changed."""
    return type(probe)(probe.channel_id, probe.settings.model_copy(update=updates), probe.env)


def break_observer(kind: str, settings: dict[str, Any]) -> None:
    """Give the observer identity a credential the service will refuse."""
    wrong = SecretRef.inline("wrong-" + secrets.token_hex(10))
    if kind == "slack":
        settings["observer_token"] = SecretRef.inline("xoxp-" + secrets.token_hex(10))
    elif kind == "lineworks":
        app = {**settings["app"], "client_secret": wrong}
        settings["observer"] = {**settings["observer"], "app": app}
    elif kind == "teams":
        settings["observer"] = {**settings["observer"], "client_secret": wrong}
    elif kind == "webhook":
        settings["observer"] = {**settings["observer"], "auth": wrong}
    else:  # matrix, mattermost
        settings["observer"] = {**settings["observer"], "token": wrong}


def secret_values(obj: Any) -> list[str]:
    """Every secret a settings object holds (and the signature inside secret URLs)."""
    found: list[str] = []
    if isinstance(obj, SecretRef):
        value = obj.reveal()
        found.append(value)
        found += parse_qs(urlsplit(value).query).get("sig", [])
    elif hasattr(obj, "__pydantic_fields__"):
        for name in obj.__pydantic_fields__:
            found += secret_values(getattr(obj, name))
    elif isinstance(obj, dict):
        for v in obj.values():
            found += secret_values(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            found += secret_values(v)
    return found


class FarEnd:
    kind: str
    probe_class: type[Probe]

    def __init__(self, env: ProbeEnv) -> None:
        self.env = env

    async def channel(
        self,
        *,
        latency: float = 0.0,
        rate_limit: float | None = None,
        reject: str | None = None,
        disposable: bool = False,
        observer_reject: bool = False,
        **overrides: Any,
    ) -> Probe:
        raise NotImplementedError

    async def take_down(self, probe: Probe) -> None:
        """The far end goes away mid-drill (the channel must be made ``disposable``)."""
        raise NotImplementedError

    async def visible_at(self, probe: Probe, token: str, sighting: Sighting) -> float | None:
        """Ground truth: when (monotonic) a reader could first see *token* (None: never)."""
        raise NotImplementedError

    # How early (s) the ground truth may be, by its own resolution (Synapse: whole ms).
    truth_resolution: float = 0.0

    async def close(self) -> None:
        pass

    def make(self, key: str, settings: dict[str, Any]) -> Probe:
        cls = self.probe_class
        return cls(key, cls.Settings.model_validate(settings), self.env)


class SimFarEnd(FarEnd):
    def __init__(self, env: ProbeEnv, probe_class: type[Probe]) -> None:
        super().__init__(env)
        self.probe_class = probe_class
        self.kind = probe_class.kind
        sim_class = probe_class.simulator()
        assert sim_class is not None
        self.sim: ChatSimBase = sim_class(seed=7)  # type: ignore[assignment]

    async def start(self) -> SimFarEnd:
        await self.sim.start()
        return self

    async def channel(
        self,
        *,
        latency: float = 0.0,
        rate_limit: float | None = None,
        reject: str | None = None,
        disposable: bool = False,
        observer_reject: bool = False,
        **overrides: Any,
    ) -> Probe:
        knobs = SimKnobs(latency=latency, rate_limit=rate_limit, reject=reject)  # type: ignore[arg-type]
        key = f"131016/chat-{next(_keys)}"
        settings = self.sim.add_channel(
            key, knobs, {**self.sim.placeholder_settings(), **overrides}
        )
        settings.update(overrides)
        if observer_reject:
            break_observer(self.kind, settings)
        return self.make(key, settings)

    async def take_down(self, probe: Probe) -> None:
        self.sim.set_outage(probe.channel_id, True)

    async def visible_at(self, probe: Probe, token: str, sighting: Sighting) -> float | None:
        entry = self.sim.ledger.entry(token)
        return entry.visible_at if entry is not None else None

    async def close(self) -> None:
        await self.sim.stop()


def origin_server_ts(setup: SynapseSetup, room: str, event_id: str) -> int:
    """Synapse's own receive time of an event (ms since the epoch): the ground truth."""
    path = f"/_matrix/client/v3/rooms/{quote(room, safe='')}/event/{quote(event_id, safe='')}"
    return int(setup.hs._call("GET", path, setup.bot)["origin_server_ts"])


@dataclass
class SynapseSetup:
    """A running Synapse with the accounts the suite needs."""

    hs: Synapse
    admin: MatrixUser
    bot: MatrixUser
    watch: MatrixUser
    throttled: MatrixUser
    room: str
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def start(cls, run_dir: Path, *, throttle: tuple[int, int] = (2, 2)) -> SynapseSetup:
        hs = Synapse(run_dir)
        hs.start()
        admin = hs.register("admin", admin=True)
        bot = hs.register("drill-bot")
        watch = hs.register("drill-watch")
        throttled = hs.register("drill-bot-throttled")
        hs.override_ratelimit(admin, throttled, *throttle)
        room = hs.create_room(bot, invite=[watch, throttled])
        hs.join(watch, room)
        hs.join(throttled, room)
        return cls(hs, admin, bot, watch, throttled, room)

    def settings(self, sender: MatrixUser, **overrides: Any) -> dict[str, Any]:
        return {
            "homeserver": self.hs.base_url,
            "sender": {"user": sender.user_id, "token": SecretRef.inline(sender.token)},
            "observer": {"user": self.watch.user_id, "token": SecretRef.inline(self.watch.token)},
            "room": self.room,
            **overrides,
        }


class SynapseFarEnd(FarEnd):
    kind = "matrix-synapse"

    def __init__(self, env: ProbeEnv, setup: SynapseSetup, scratch: Path) -> None:
        from probes.chat.matrix import MatrixProbe

        super().__init__(env)
        self.probe_class = MatrixProbe
        self.setup = setup
        self.scratch = scratch
        self.proxies: list[DelayProxy] = []
        self.disposables: dict[str, SynapseSetup] = {}
        self.delays: dict[str, float] = {}  # channel → the proxy's injected delay

    async def channel(
        self,
        *,
        latency: float = 0.0,
        rate_limit: float | None = None,
        reject: str | None = None,
        disposable: bool = False,
        observer_reject: bool = False,
        **overrides: Any,
    ) -> Probe:
        key = f"131016/matrix-{next(_keys)}"
        setup = self.setup
        if disposable:
            setup = await asyncio.to_thread(
                SynapseSetup.start, self.scratch / key.replace("/", "-")
            )
            self.disposables[key] = setup
        sender = setup.throttled if rate_limit else setup.bot
        settings = setup.settings(sender, **overrides)
        if reject == "auth":
            settings["sender"]["token"] = SecretRef.inline(
                "syt_ZHJpbGw_wrongtokenwrongtoken_0abcde"
            )
        if observer_reject:
            break_observer("matrix", settings)
        if latency:
            proxy = DelayProxy("127.0.0.1", setup.hs.port, latency)
            await proxy.start()
            self.proxies.append(proxy)
            settings["observer"]["homeserver"] = proxy.url
            self.delays[key] = latency
        return self.make(key, settings)

    truth_resolution = 0.001  # origin_server_ts is in whole milliseconds

    async def take_down(self, probe: Probe) -> None:
        setup = self.disposables[probe.channel_id]
        await asyncio.to_thread(setup.hs.stop)

    async def visible_at(self, probe: Probe, token: str, sighting: Sighting) -> float | None:
        """Synapse's own ``origin_server_ts`` of the event, plus the proxy's injected delay."""
        setup = self.disposables.get(probe.channel_id, self.setup)
        origin_ms = await asyncio.to_thread(
            origin_server_ts, setup, setup.room, str(sighting.extra["event_id"])
        )
        return Clock.monotonic_from_wall(origin_ms / 1000.0) + self.delays.get(
            probe.channel_id, 0.0
        )

    async def close(self) -> None:
        for proxy in self.proxies:
            await proxy.stop()
        for setup in self.disposables.values():
            await asyncio.to_thread(setup.hs.close)


async def seen_through_a_stalled_loop(
    end: SimFarEnd, stall_s: float = 0.15
) -> tuple[str, Sighting]:
    """Send one message while the event loop stalls *stall_s* right as it becomes visible.

    A loaded harness in miniature: the sighting is late by the stall, and a bound that
    does not say so is a lie the oracle catches. Returns the token and the sighting.
    """
    probe = await end.channel(latency=0.05)
    ledger = end.sim.ledger
    visible = ledger.visible
    stalls: list[float] = []

    def visible_then_stall(entry: Any, *, at: float | None = None) -> None:
        visible(entry, at=at)
        stalls.append(stall_s)
        asyncio.get_running_loop().call_soon(time.sleep, stall_s)

    ledger.visible = visible_then_stall  # type: ignore[method-assign]
    await probe.open()
    try:
        message = DrillMessage.new("負荷")
        waiting = asyncio.ensure_future(probe.observe(message))
        await probe.send(message)
        sighting = await asyncio.wait_for(waiting, 5)
    finally:
        await probe.close()
    assert stalls
    return message.token, sighting
