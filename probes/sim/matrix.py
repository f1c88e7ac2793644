"""A Matrix-shaped homeserver: the client-server endpoints a drill uses.

For the demo and the parametrized contract suite; the real thing (Synapse)
is exercised by the integration tests. Shapes follow the Matrix spec
(https://spec.matrix.org/v1.11/client-server-api/):

- ``PUT /_matrix/client/v3/rooms/{roomId}/send/m.room.message/{txnId}`` →
  ``{"event_id": …}``; idempotent per (access token, txnId).
- ``GET /_matrix/client/v3/rooms/{roomId}/state/m.room.encryption/`` →
  404 ``M_NOT_FOUND`` (simulated rooms are unencrypted).
- ``POST /_matrix/client/v3/user/{userId}/filter`` → ``{"filter_id": …}``.
- ``GET /_matrix/client/v3/sync?since=&timeout=&filter=`` → long-poll;
  ``{"next_batch", "rooms": {"join": {roomId: {"timeline": {"events", "limited",
  "prev_batch"}}}}}``.
- Errors (spec "Standard error response" and "Rate limiting"): 401
  ``M_UNKNOWN_TOKEN``; 429 ``M_LIMIT_EXCEEDED`` with ``retry_after_ms``.

A message becomes visible in /sync after the channel's injected latency.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from probes.sim.base import SimKnobs
from probes.sim.chat import ChatSimBase, SimRoom

__all__ = ["MatrixSimulator"]

API = "/_matrix/client/v3"
SERVER_NAME = "sim.tsunagari.test"


def _error(status: int, errcode: str, error: str, **extra: Any) -> web.Response:
    return web.json_response({"errcode": errcode, "error": error, **extra}, status=status)


class MatrixSimulator(ChatSimBase):
    """Matrix-shaped far end: a sender posts, an observer's /sync sees it."""

    kind = "matrix"

    def __init__(self, seed: int | None = None, host: str = "127.0.0.1") -> None:
        super().__init__(seed, host)
        self._txns: dict[tuple[str, str], str] = {}

    @staticmethod
    def placeholder_settings() -> dict[str, Any]:
        return {
            "homeserver": "http://127.0.0.1:9",
            "sender": {"user": f"@drill-bot:{SERVER_NAME}", "token": "env:UNUSED_SIM_TOKEN"},
            "room": f"!placeholder:{SERVER_NAME}",
        }

    def routes(self, app: web.Application) -> None:
        app.router.add_put(API + "/rooms/{room}/send/m.room.message/{txn}", self._send)
        app.router.add_get(API + "/rooms/{room}/state/m.room.encryption/", self._encryption)
        app.router.add_post(API + "/user/{user}/filter", self._filter)
        app.router.add_get(API + "/sync", self._sync)

    def add_channel(
        self, channel_key: str, knobs: SimKnobs, raw_settings: dict[str, Any]
    ) -> dict[str, Any]:
        room = self.new_room(channel_key, knobs, room_id=f"!r{len(self.rooms) + 1}:{SERVER_NAME}")
        settings = {
            k: v
            for k, v in raw_settings.items()
            if k not in ("homeserver", "sender", "observer", "room")
        }
        settings["homeserver"] = self.url_for(knobs)
        settings["room"] = room.room_id
        settings["sender"] = {
            "user": f"@drill-bot:{SERVER_NAME}",
            "token": self.secret(room.credentials["post"]),
        }
        settings["observer"] = {
            "user": f"@drill-watch:{SERVER_NAME}",
            "token": self.secret(room.credentials["read"]),
        }
        return settings

    # ------------------------------------------------------------------ helpers

    def _room_by_path(self, request: web.Request) -> SimRoom:
        room = self.rooms.get(request.match_info["room"])
        if room is None:
            raise web.HTTPForbidden(
                text='{"errcode": "M_FORBIDDEN", "error": "User not in room"}',
                content_type="application/json",
            )
        self.check_outage(request, room)
        return room

    def _room_of_reader(self, request: web.Request) -> SimRoom | None:
        token = self.bearer(request)
        for room in self.rooms.values():
            if room.credentials["read"] == token:
                self.check_outage(request, room)
                return room
        return None

    @staticmethod
    def _unknown_token() -> web.Response:
        return _error(401, "M_UNKNOWN_TOKEN", "Invalid access token passed.", soft_logout=False)

    # ------------------------------------------------------------------ handlers

    async def _send(self, request: web.Request) -> web.StreamResponse:
        room = self._room_by_path(request)
        token = self.bearer(request)
        if room.knobs.reject == "auth" or token != room.credentials["post"]:
            return self._unknown_token()
        key = (token, request.match_info["txn"])
        if key in self._txns:  # a retried transaction: same event, not a second message
            return web.json_response({"event_id": self._txns[key]})
        wait = self.retry_after(room)
        if wait is not None:
            ms = int(wait * 1000) + 1
            resp = _error(429, "M_LIMIT_EXCEEDED", "Too Many Requests", retry_after_ms=ms)
            resp.headers["Retry-After"] = self.retry_after_header(wait)
            return resp
        content = await request.json()
        msg = self.post(room, str(content.get("body", "")), sender=f"@drill-bot:{SERVER_NAME}")
        event_id = f"${msg.id}:{SERVER_NAME}"
        msg.extra["event_id"] = event_id
        self._txns[key] = event_id
        return web.json_response({"event_id": event_id})

    async def _encryption(self, request: web.Request) -> web.StreamResponse:
        self._room_by_path(request)
        return _error(404, "M_NOT_FOUND", "Event not found.")

    async def _filter(self, request: web.Request) -> web.StreamResponse:
        if self._room_of_reader(request) is None:
            return self._unknown_token()
        return web.json_response({"filter_id": "0"})

    async def _sync(self, request: web.Request) -> web.StreamResponse:
        room = self._room_of_reader(request)
        if room is None:
            return self._unknown_token()
        since = request.query.get("since", "")
        after = int(since[1:]) if since.startswith("s") and since[1:].isdigit() else 0
        timeout = min(int(request.query.get("timeout", "0")), 60_000) / 1000.0
        cursor = await self.wait_visible(room, after, timeout) if since else len(room.visible)
        self.check_outage(request, room)
        events = [
            {
                "type": "m.room.message",
                "event_id": m.extra.get("event_id", f"${m.id}:{SERVER_NAME}"),
                "sender": m.sender,
                "origin_server_ts": int(m.posted_at * 1000),
                "content": {"msgtype": "m.text", "body": m.text},
            }
            for m in (room.visible[after:cursor] if since else [])
        ]
        rooms: dict[str, Any] = {}
        if events:
            timeline = {"events": events, "limited": False, "prev_batch": f"s{after}"}
            rooms = {"join": {room.room_id: {"timeline": timeline}}}
        return web.json_response({"next_batch": f"s{cursor}", "rooms": rooms})
