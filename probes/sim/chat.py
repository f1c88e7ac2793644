"""Simulated chat services: shared room machinery, and the generic webhook far end.

Every chat simulator (Slack, Teams, Mattermost, LINE WORKS, Matrix, webhook)
is one aiohttp server on 127.0.0.1 serving every simulated channel of its kind.
They share :class:`SimRoom` — a room whose posted messages become visible to
readers after the channel's injected latency (unless the loss knob drops them)
— and :class:`ChatSimBase`, which owns the server, the channel → room map,
rate limiting, and outages (a channel that starts down gets a closed port; a
channel taken down mid-drill has its connections dropped, as a dead host would).

The webhook far end (``ChatSimulator``) API::

    POST /hooks/{room}            {"text": "..."}   Authorization: Bearer <token>
         200 {"ok": true, "id": N}   401 {"ok": false, "error": "invalid_auth"}
         429 {"ok": false, "error": "ratelimited"} + Retry-After
    GET  /rooms/{room}/messages?after=CURSOR&wait=SECONDS   Authorization: Bearer <observer>
         200 {"messages": [{"id": N, "text": "...", "ts": WALL}], "cursor": N}
         (long-poll: waits up to ``wait`` seconds for a message after CURSOR;
         the cursor counts messages in the order they became visible)

With a ``capacity`` knob (surge drills) the far end delivers at most that many
messages per second, first in, first out; past it the visible latency grows.

Fault injection (tests, :mod:`probes.sim.faults`): ``sim.inject(channel_key, Fault(...))``
answers the next request(s) of a role (``send``, ``read``: each kind's ``fault_paths``)
with an injected status, an HTML page, a cut-off answer or a delay;
``sim.expire_observer(channel_key)`` makes the observer's token expire now.

Ground truth (``sim.ledger``, probes/sim/ledger.py), written by every chat kind
through this module: :meth:`ChatSimBase.post` records each drill token as
received, then visible at the moment it joins the room's readable list (or
dropped, by the loss knob); :meth:`ChatSimBase.refuse` records a "slow down"
(``final=False``) or an auth refusal (``final=True``); a channel that starts
down, or is taken down, is a down interval. Latency and loss draw from the
channel's own random stream (``rng_for``). A message that falls due while its
channel is down is held back and becomes readable when the channel returns.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import ssl
import time
from abc import abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, NoReturn

from aiohttp import web

from probes.settings import SecretRef
from probes.sim.base import SimKnobs, Simulator, TokenBucket, closed_port
from probes.sim.faults import Fault, answer_with, take_fault
from probes.sim.ledger import Entry

__all__ = [
    "SIM_POLL_INTERVAL",
    "ChatSimBase",
    "ChatSimulator",
    "Fault",
    "SimMessage",
    "SimRoom",
]

# Poll interval handed to observers of simulated poll-only services (the real services
# allow one look every few seconds; on loopback a short interval keeps the error bound small).
SIM_POLL_INTERVAL = 0.02


@dataclass
class SimMessage:
    """One posted message; ``visible_at`` is set when readers can see it."""

    id: int
    text: str
    posted_at: float  # wall clock
    sender: str = ""
    visible_at: float | None = None  # wall clock
    extra: dict[str, Any] = field(default_factory=dict)
    entries: list[Entry] = field(default_factory=list)  # its ledger entries (one per token)


@dataclass
class SimRoom:
    """A simulated room/channel: credentials, knobs, and messages as readers see them."""

    room_id: str
    knobs: SimKnobs
    credentials: dict[str, str]
    channel: str = ""  # the registry channel key (ledger entries are filed under it)
    visible: list[SimMessage] = field(default_factory=list)
    accepted: list[SimMessage] = field(default_factory=list)
    bucket: TokenBucket | None = None
    held: list[SimMessage] = field(default_factory=list)  # due while the channel was down
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    busy_until: float = 0.0  # monotonic: when the far end has delivered its queue (capacity knob)
    epoch: int = 0  # bumped when the observer's credential expires: parked reads end
    # Roles ("post", "read") whose identity has left the room: membership checks say no.
    away: set[str] = field(default_factory=set)

    def member(self, token: str) -> bool:
        """Is the identity of *token* (a credential of this room) still a member?"""
        role = next((r for r, value in self.credentials.items() if value == token), None)
        return role is not None and role not in self.away

    def queue_wait(self) -> float:
        """Seconds a new message waits behind the queue of a capacity-limited far end.

        With a ``capacity`` knob the far end delivers at most that many messages
        per second, first in, first out: past it, accepted messages queue and the
        visible latency grows with the queue.
        """
        capacity = self.knobs.capacity
        if not capacity:
            return 0.0
        now = time.monotonic()
        self.busy_until = max(now, self.busy_until) + 1.0 / capacity
        return self.busy_until - now

    @property
    def posted(self) -> int:
        """How many messages the service accepted (visible or not yet, or lost)."""
        return len(self.accepted)

    @property
    def messages(self) -> list[dict[str, Any]]:
        """What readers see, as the webhook read-back shows it: id, text, ts (wall)."""
        return [{"id": m.id, "text": m.text, "ts": m.visible_at} for m in self.visible]

    @property
    def post_token(self) -> str:
        return self.credentials["post"]

    @property
    def read_token(self) -> str:
        return self.credentials["read"]

    def wake(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    async def wait_visible(self, after: int, timeout: float, alive: Callable[[], bool]) -> int:
        """Wait up to *timeout* s until more than *after* messages are visible; the count."""
        deadline = time.monotonic() + timeout
        epoch = self.epoch
        while (
            len(self.visible) <= after and alive() and not self.knobs.outage and epoch == self.epoch
        ):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            event = self.changed
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                break
        return len(self.visible)


class ChatSimBase(Simulator):
    """One aiohttp server on loopback for every simulated channel of a chat kind."""

    # Credential names each room gets (random hex values, handed to the probe as inline secrets).
    credential_names: tuple[str, ...] = ("post", "read")
    # Request paths (regular expressions, searched) of each fault role; see :class:`Fault`.
    fault_paths: ClassVar[dict[str, str]] = {}

    def __init__(self, seed: int | None = None, host: str = "127.0.0.1") -> None:
        super().__init__(seed)
        self.host = host
        self.port = 0
        self.rooms: dict[str, SimRoom] = {}
        self._keys: dict[str, str] = {}
        self._runner: web.AppRunner | None = None
        self._timers: set[asyncio.TimerHandle] = set()
        self._next_id = 1
        self.faults: list[Fault] = []
        # Serve HTTPS with this context (set before start; tests of certificate checks).
        self.ssl_context: ssl.SSLContext | None = None

    # ------------------------------------------------------------------ lifecycle

    @abstractmethod
    def routes(self, app: web.Application) -> None:
        """Add the service's endpoints to *app*."""

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context is not None else "http"

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._runner is not None

    async def start(self) -> None:
        app = web.Application(middlewares=[self._faulty])
        self.routes(app)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0, backlog=2048, ssl_context=self.ssl_context)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        runner, self._runner = self._runner, None
        for room in self.rooms.values():
            room.wake()
        if runner is not None:
            await runner.cleanup()

    # ------------------------------------------------------------------ fault injection

    def inject(self, channel_key: str, fault: Fault) -> Fault:
        """Answer the next ``fault.times`` requests of ``fault.role`` with *fault* (tests)."""
        if fault.role not in self.fault_paths:
            raise ValueError(f"{self.kind}: no {fault.role!r} endpoint to inject a fault into")
        fault.channel = channel_key
        self.faults.append(fault)
        return fault

    def leave(self, channel_key: str, role: str) -> None:
        """The identity of *role* (``post``: the sender, ``read``: the observer) leaves the room.

        Membership reads (Matrix ``/joined_rooms``, Slack ``conversations.info``,
        Mattermost channel members) no longer list it; what the drill itself does
        (posting, /sync) is unchanged.
        """
        self.room_for(channel_key).away.add(role)

    def expire_observer(self, channel_key: str) -> None:
        """The observer's credential expires now: a new one is needed, parked reads end.

        Here the read credential is replaced (a static token cannot be renewed by the
        probe); kinds whose observer holds short-lived access tokens renew them instead.
        """
        room = self.room_for(channel_key)
        room.credentials["read"] = secrets.token_hex(12)
        self.expired(room)

    def expired(self, room: SimRoom) -> None:
        """Parked reads of *room* end now (their token is no longer valid)."""
        room.epoch += 1
        room.wake()

    @web.middleware
    async def _faulty(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        fault = take_fault(self.faults, self.fault_paths, request) if self.faults else None
        if fault is None:
            return await handler(request)
        return await answer_with(fault, request, handler, self.ledger)

    # ------------------------------------------------------------------ channels

    def new_room(self, channel_key: str, knobs: SimKnobs, room_id: str | None = None) -> SimRoom:
        """Register a channel's room with fresh credentials."""
        room_id = room_id or f"r{len(self.rooms) + 1}"
        creds = {name: secrets.token_hex(12) for name in self.credential_names}
        room = SimRoom(room_id, knobs, creds, channel=channel_key)
        if knobs.rate_limit:
            room.bucket = TokenBucket(knobs.rate_limit)
        self.rooms[room_id] = room
        self.knobs[channel_key] = knobs
        self._keys[channel_key] = room_id
        if knobs.outage:
            self.ledger.down(channel_key, True)
        return room

    def url_for(self, knobs: SimKnobs) -> str:
        """Base URL a channel's probe should use: a closed port when the channel starts down."""
        port = closed_port(self.host) if knobs.outage else self.port
        return f"{self.scheme}://{self.host}:{port}"

    @staticmethod
    def secret(value: str) -> SecretRef:
        return SecretRef.inline(value)

    def room_for(self, channel_key: str) -> SimRoom:
        return self.rooms[self._keys[channel_key]]

    def set_outage(self, channel_key: str, down: bool) -> None:
        super().set_outage(channel_key, down)
        room = self.room_for(channel_key)
        room.knobs = self.knobs[channel_key]
        room.wake()  # parked long-polls notice and get their connection dropped
        if not down:  # nobody could read while it was down: what fell due shows up now
            held, room.held = room.held, []
            for msg in held:
                self.show(room, msg)

    def show(self, room: SimRoom, msg: SimMessage) -> None:
        """*msg* becomes readable now (held back while the channel is down)."""
        if room.knobs.outage:
            room.held.append(msg)
            return
        msg.visible_at = time.time()
        room.visible.append(msg)
        for entry in msg.entries:  # readers can see it from this moment
            self.ledger.visible(entry)
        room.wake()

    # ------------------------------------------------------------------ behaviour

    @staticmethod
    def drop(request: web.Request) -> NoReturn:
        """A channel taken away mid-drill: drop the connection, as a dead host would."""
        if request.transport is not None:
            request.transport.close()
        raise web.HTTPServiceUnavailable()

    def check_outage(self, request: web.Request, room: SimRoom) -> None:
        if room.knobs.outage or not self.running:
            self.drop(request)

    @staticmethod
    def retry_after(room: SimRoom) -> float | None:
        """Seconds the caller must wait (the rate limit knob), or None to go ahead."""
        if room.bucket is None or room.bucket.take():
            return None
        return max(0.001, room.bucket.retry_after())

    @staticmethod
    def retry_after_header(seconds: float) -> str:
        return str(max(1, math.ceil(seconds)))

    def post(
        self, room: SimRoom, text: str, sender: str = "", *, raw: str | None = None, **extra: Any
    ) -> SimMessage:
        """Accept a message; it becomes visible after the injected latency unless lost.

        The ledger learns every drill token in *text* (or in *raw*, the request as
        sent, for kinds that store the text in another shape, e.g. a Teams card).
        """
        msg = SimMessage(self._next_id, text, time.time(), sender, extra=extra)
        self._next_id += 1
        msg.entries = self.ledger.received_text(room.channel, text if raw is None else raw)
        room.accepted.append(msg)
        rng = self.rng_for(room.channel)
        if rng.random() >= room.knobs.loss:
            delay = room.knobs.latency.sample(rng) + room.queue_wait()
            timer: asyncio.TimerHandle | None = None

            def appear() -> None:
                self.show(room, msg)
                if timer is not None:
                    self._timers.discard(timer)

            timer = asyncio.get_running_loop().call_later(delay, appear)
            self._timers.add(timer)
        else:
            for entry in msg.entries:
                self.ledger.dropped(entry)
        return msg

    async def refuse(self, request: web.Request, room: SimRoom, code: str, *, final: bool) -> None:
        """Ledger: the far end said no to the drill tokens in *request*'s body.

        ``final=False`` is a "slow down" (a retry may be taken); ``True`` is for good.
        """
        body = await request.text() if request.can_read_body else ""
        self.ledger.refused_text(room.channel, body, code=code, final=final)

    async def wait_visible(self, room: SimRoom, after: int, timeout: float) -> int:
        return await room.wait_visible(after, timeout, lambda: self.running)

    @staticmethod
    def bearer(request: web.Request) -> str:
        auth = request.headers.get("Authorization", "")
        return auth[7:] if auth.startswith("Bearer ") else ""


class ChatSimulator(ChatSimBase):
    """Far end of simulated chat channels (generic webhook kind)."""

    kind = "webhook"
    fault_paths: ClassVar[dict[str, str]] = {"send": r"^/hooks/", "read": r"^/rooms/"}

    @staticmethod
    def placeholder_settings() -> dict[str, Any]:
        return {"url": "http://127.0.0.1:9/hooks/placeholder"}

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/hooks/{room}", self._post)
        app.router.add_get("/rooms/{room}/messages", self._read)

    def add_channel(
        self, channel_key: str, knobs: SimKnobs, raw_settings: dict[str, Any]
    ) -> dict[str, Any]:
        room = self.new_room(channel_key, knobs)
        base = self.url_for(knobs)
        settings = {k: v for k, v in raw_settings.items() if k not in ("url", "auth", "observer")}
        settings["url"] = f"{base}/hooks/{room.room_id}"
        settings["auth"] = self.secret(room.credentials["post"])
        settings["observer"] = {
            "url": f"{base}/rooms/{room.room_id}/messages",
            "auth": self.secret(room.credentials["read"]),
            "mode": "longpoll",
        }
        return settings

    def _room(self, request: web.Request) -> SimRoom:
        room = self.rooms.get(request.match_info["room"])
        if room is None:
            raise web.HTTPNotFound(
                text='{"ok": false, "error": "channel_not_found"}', content_type="application/json"
            )
        self.check_outage(request, room)
        return room

    async def _post(self, request: web.Request) -> web.StreamResponse:
        room = self._room(request)
        if room.knobs.reject == "auth" or self.bearer(request) != room.credentials["post"]:
            await self.refuse(request, room, "invalid_auth", final=True)
            return web.json_response({"ok": False, "error": "invalid_auth"}, status=401)
        wait = self.retry_after(room)
        if wait is not None:
            await self.refuse(request, room, "ratelimited", final=False)
            return web.json_response(
                {"ok": False, "error": "ratelimited"},
                status=429,
                headers={"Retry-After": self.retry_after_header(wait)},
            )
        if request.content_type == "application/x-www-form-urlencoded":
            text = str((await request.post()).get("text", ""))
        else:
            text = str((await request.json()).get("text", ""))
        msg = self.post(room, text)
        return web.json_response({"ok": True, "id": msg.id})

    async def _read(self, request: web.Request) -> web.StreamResponse:
        room = self._room(request)
        if self.bearer(request) != room.credentials["read"]:
            return web.json_response({"ok": False, "error": "invalid_auth"}, status=401)
        after = int(request.query.get("after", "0"))
        wait = min(float(request.query.get("wait", "0")), 60.0)
        cursor = await self.wait_visible(room, after, wait)
        self.check_outage(request, room)
        fresh = [
            {"id": m.id, "text": m.text, "ts": m.visible_at} for m in room.visible[after:cursor]
        ]
        return web.json_response({"messages": fresh, "cursor": cursor})
