"""A simulated chat service: a post endpoint and a read-back endpoint.

API (all on 127.0.0.1, one aiohttp server for every simulated chat channel)::

    POST /hooks/{room}            {"text": "..."}   Authorization: Bearer <token>
         200 {"ok": true, "id": N}   401 {"ok": false, "error": "invalid_auth"}
         429 {"ok": false, "error": "ratelimited"} + Retry-After
    GET  /rooms/{room}/messages?after=CURSOR&wait=SECONDS   Authorization: Bearer <observer>
         200 {"messages": [{"id": N, "text": "...", "ts": WALL}], "cursor": N}
         (long-poll: waits up to ``wait`` seconds for a message after CURSOR;
         the cursor counts messages in the order they became visible)

A posted message becomes visible to readers after the channel's injected
latency, unless the loss knob drops it. With a ``capacity`` knob the far end
delivers at most that many messages per second, first in, first out: past it,
accepted messages queue and the visible latency grows with the queue.
It is the far end of the generic ``webhook`` kind, and a template for
chat-shaped simulators.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from probes.settings import SecretRef
from probes.sim.base import SimKnobs, Simulator, TokenBucket, closed_port

__all__ = ["ChatSimulator"]


@dataclass
class _Room:
    knobs: SimKnobs
    post_token: str
    read_token: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    bucket: TokenBucket | None = None
    next_id: int = 1
    posted: int = 0
    busy_until: float = 0.0  # monotonic: when the far end has delivered its queue (capacity knob)


class ChatSimulator(Simulator):
    """Far end of simulated chat channels (generic webhook kind)."""

    kind = "webhook"

    def __init__(self, seed: int | None = None, host: str = "127.0.0.1") -> None:
        super().__init__(seed)
        self.host = host
        self.port = 0
        self.rooms: dict[str, _Room] = {}
        self._runner: web.AppRunner | None = None
        self._timers: set[asyncio.TimerHandle] = set()
        self._keys: dict[str, str] = {}
        self._stopping = False

    @staticmethod
    def placeholder_settings() -> dict[str, Any]:
        return {"url": "http://127.0.0.1:9/hooks/placeholder"}

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks/{room}", self._post)
        app.router.add_get("/rooms/{room}/messages", self._read)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0, backlog=2048)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        self._stopping = True  # parked long-polls return now
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        for room in self.rooms.values():
            room.changed.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def add_channel(
        self, channel_key: str, knobs: SimKnobs, raw_settings: dict[str, Any]
    ) -> dict[str, Any]:
        room_id = f"r{len(self.rooms) + 1}"
        room = _Room(knobs, secrets.token_hex(8), secrets.token_hex(8))
        if knobs.rate_limit:
            room.bucket = TokenBucket(knobs.rate_limit)
        self.rooms[room_id] = room
        self.knobs[channel_key] = knobs
        self._keys[channel_key] = room_id
        base = f"http://{self.host}:{closed_port(self.host) if knobs.outage else self.port}"
        settings = {k: v for k, v in raw_settings.items() if k not in ("url", "auth", "observer")}
        settings["url"] = f"{base}/hooks/{room_id}"
        settings["auth"] = SecretRef.inline(room.post_token)
        settings["observer"] = {
            "url": f"{base}/rooms/{room_id}/messages",
            "auth": SecretRef.inline(room.read_token),
            "mode": "longpoll",
        }
        return settings

    def set_outage(self, channel_key: str, down: bool) -> None:
        super().set_outage(channel_key, down)
        room = self.rooms[self._keys[channel_key]]
        room.knobs = self.knobs[channel_key]

    def room_for(self, channel_key: str) -> _Room:
        return self.rooms[self._keys[channel_key]]

    # ------------------------------------------------------------------ handlers

    def _room(self, request: web.Request) -> _Room:
        room = self.rooms.get(request.match_info["room"])
        if room is None:
            raise web.HTTPNotFound(
                text='{"ok": false, "error": "channel_not_found"}', content_type="application/json"
            )
        if room.knobs.outage and request.transport is not None:
            # A channel taken away mid-drill: drop the connection, as a dead host would.
            request.transport.close()
            raise web.HTTPServiceUnavailable()
        return room

    @staticmethod
    def _authorised(request: web.Request, token: str) -> bool:
        return request.headers.get("Authorization", "") == f"Bearer {token}"

    async def _post(self, request: web.Request) -> web.StreamResponse:
        room = self._room(request)
        if room.knobs.reject == "auth" or not self._authorised(request, room.post_token):
            return web.json_response({"ok": False, "error": "invalid_auth"}, status=401)
        if room.bucket is not None and not room.bucket.take():
            retry = max(1, int(room.bucket.retry_after() + 0.999))
            return web.json_response(
                {"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": str(retry)}
            )
        if request.content_type == "application/x-www-form-urlencoded":
            text = str((await request.post()).get("text", ""))
        else:
            text = str((await request.json()).get("text", ""))
        msg_id = room.next_id
        room.next_id += 1
        room.posted += 1
        if self.rng.random() >= room.knobs.loss:
            delay = room.knobs.latency.sample(self.rng) + self._queue_wait(room)
            loop = asyncio.get_running_loop()
            timer: asyncio.TimerHandle | None = None

            def appear() -> None:
                room.messages.append({"id": msg_id, "text": text, "ts": time.time()})
                room.changed.set()
                room.changed = asyncio.Event()
                if timer is not None:
                    self._timers.discard(timer)

            timer = loop.call_later(delay, appear)
            self._timers.add(timer)
        return web.json_response({"ok": True, "id": msg_id})

    @staticmethod
    def _queue_wait(room: _Room) -> float:
        """Seconds this message waits behind the queue of a capacity-limited far end."""
        capacity = room.knobs.capacity
        if not capacity:
            return 0.0
        now = time.monotonic()
        room.busy_until = max(now, room.busy_until) + 1.0 / capacity
        return room.busy_until - now

    async def _read(self, request: web.Request) -> web.StreamResponse:
        room = self._room(request)
        if not self._authorised(request, room.read_token):
            return web.json_response({"ok": False, "error": "invalid_auth"}, status=401)
        after = int(request.query.get("after", "0"))
        wait = min(float(request.query.get("wait", "0")), 60.0)
        deadline = time.monotonic() + wait
        while True:
            # The cursor counts messages in the order they became visible.
            fresh = room.messages[after:]
            remaining = deadline - time.monotonic()
            if fresh or remaining <= 0 or self._stopping:
                break
            event = room.changed
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                pass
        cursor = after + len(fresh)
        return web.json_response({"messages": fresh, "cursor": cursor})
