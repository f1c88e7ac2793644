"""A Matrix-shaped homeserver: the client-server endpoints a drill uses.

For the demo and the parametrized contract suite; the real thing (Synapse)
is exercised by the integration tests. Shapes follow the Matrix spec
(https://spec.matrix.org/v1.11/client-server-api/):

- ``PUT /_matrix/client/v3/rooms/{roomId}/send/m.room.message/{txnId}`` →
  ``{"event_id": …}``; idempotent per (access token, txnId).
- ``GET /_matrix/client/v3/rooms/{roomId}/state/m.room.encryption/`` →
  404 ``M_NOT_FOUND`` (simulated rooms are unencrypted).
- ``POST /_matrix/client/v3/user/{userId}/filter`` → ``{"filter_id": …}``.
- ``GET /_matrix/client/v3/account/whoami`` → ``{"user_id", "device_id", "is_guest"}``.
- ``GET /_matrix/client/v3/joined_rooms`` → ``{"joined_rooms": [...]}``: a token
  belongs to the rooms it was made for (sender and observer of that channel),
  less those its account has left (``sim.leave(channel, "post" | "read")``).
- ``GET /_matrix/client/v3/sync?since=&timeout=&filter=`` → long-poll;
  ``{"next_batch", "rooms": {"join": {roomId: {"timeline": {"events", "limited",
  "prev_batch"}}}}}``. As Synapse: without ``since`` (an initial sync) the
  timeline holds the room's latest messages, not nothing; a timeline holds at
  most the filter's ``room.timeline.limit`` (default 10) latest events, and says
  ``limited`` (with ``prev_batch`` just before them) when there were more.
- ``GET /_matrix/client/v3/rooms/{roomId}/messages?from=&to=&dir=b&limit=`` →
  ``{"chunk", "start", "end"}``, newest first; ``end`` is absent at the room's start.
- Errors (spec "Standard error response" and "Rate limiting"): 401
  ``M_UNKNOWN_TOKEN``; 429 ``M_LIMIT_EXCEEDED`` with ``retry_after_ms``.

A message becomes visible in /sync after the channel's injected latency. Its
``origin_server_ts`` is the moment it became visible: the injected latency is
modelled as happening before the homeserver (as over federation), so the
server's own timestamp is the ground truth an observer can bound itself by —
as Synapse's is on a real server.
"""

from __future__ import annotations

from typing import Any, ClassVar

from aiohttp import web

from probes.sim.base import SimKnobs
from probes.sim.chat import ChatSimBase, SimMessage, SimRoom

__all__ = ["MatrixSimulator"]

API = "/_matrix/client/v3"
SERVER_NAME = "sim.tsunagari.test"
# Synapse's timeline limit for a /sync without a filter that sets one.
DEFAULT_TIMELINE_LIMIT = 10


def _error(status: int, errcode: str, error: str, **extra: Any) -> web.Response:
    return web.json_response({"errcode": errcode, "error": error, **extra}, status=status)


class MatrixSimulator(ChatSimBase):
    """Matrix-shaped far end: a sender posts, an observer's /sync sees it."""

    kind = "matrix"
    fault_paths: ClassVar[dict[str, str]] = {
        "send": r"/send/m\.room\.message/[^/]+$",
        "read": r"/sync$",
    }

    def __init__(self, seed: int | None = None, host: str = "127.0.0.1") -> None:
        super().__init__(seed, host)
        self._txns: dict[tuple[str, str], str] = {}
        self._filters: list[int] = []  # filter id (its index) → timeline limit

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
        app.router.add_get(API + "/rooms/{room}/messages", self._messages)
        app.router.add_get(API + "/account/whoami", self._whoami)
        app.router.add_get(API + "/joined_rooms", self._joined_rooms)

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

    def _identity(self, token: str) -> tuple[str, list[SimRoom]]:
        """(user id, rooms joined) of an access token ("" when nobody has it)."""
        rooms = [r for r in self.rooms.values() if token in (r.post_token, r.read_token)]
        if not token or not rooms:
            return "", []
        who = "drill-bot" if token == rooms[0].post_token else "drill-watch"
        return f"@{who}:{SERVER_NAME}", rooms

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
            await self.refuse(request, room, "M_UNKNOWN_TOKEN", final=True)
            return self._unknown_token()
        key = (token, request.match_info["txn"])
        if key in self._txns:  # a retried transaction: same event, not a second message
            return web.json_response({"event_id": self._txns[key]})
        wait = self.retry_after(room)
        if wait is not None:
            ms = int(wait * 1000) + 1
            resp = _error(429, "M_LIMIT_EXCEEDED", "Too Many Requests", retry_after_ms=ms)
            resp.headers["Retry-After"] = self.retry_after_header(wait)
            await self.refuse(request, room, "M_LIMIT_EXCEEDED", final=False)
            return resp
        content = await request.json()
        msg = self.post(room, str(content.get("body", "")), sender=f"@drill-bot:{SERVER_NAME}")
        event_id = f"${msg.id}:{SERVER_NAME}"
        msg.extra["event_id"] = event_id
        self._txns[key] = event_id
        return web.json_response({"event_id": event_id})

    async def _encryption(self, request: web.Request) -> web.StreamResponse:
        room = self._room_by_path(request)
        user, joined = self._identity(self.bearer(request))
        if not user:
            return self._unknown_token()
        if room not in joined:  # as Synapse answers a non-member
            return _error(403, "M_FORBIDDEN", f"User {user} not in room {room.room_id}")
        return _error(404, "M_NOT_FOUND", "Event not found.")

    async def _whoami(self, request: web.Request) -> web.StreamResponse:
        token = self.bearer(request)
        user, joined = self._identity(token)
        if not user:
            return self._unknown_token()
        self.check_outage(request, joined[0])
        if joined[0].knobs.reject == "auth" and token == joined[0].post_token:
            return self._unknown_token()  # the reject knob: the sender's token is refused
        return web.json_response({"user_id": user, "device_id": "SIMDEVICE", "is_guest": False})

    async def _joined_rooms(self, request: web.Request) -> web.StreamResponse:
        user, joined = self._identity(self.bearer(request))
        if not user:
            return self._unknown_token()
        self.check_outage(request, joined[0])
        token = self.bearer(request)
        rooms = [r.room_id for r in joined if r.member(token)]
        return web.json_response({"joined_rooms": rooms})

    async def _filter(self, request: web.Request) -> web.StreamResponse:
        if self._room_of_reader(request) is None:
            return self._unknown_token()
        try:
            body = await request.json()
            limit = int(body["room"]["timeline"]["limit"])
        except (ValueError, TypeError, KeyError):
            limit = DEFAULT_TIMELINE_LIMIT
        self._filters.append(max(1, limit))
        return web.json_response({"filter_id": str(len(self._filters) - 1)})

    def _timeline_limit(self, filter_id: str) -> int:
        index = int(filter_id) if filter_id.isdigit() else -1
        return self._filters[index] if 0 <= index < len(self._filters) else DEFAULT_TIMELINE_LIMIT

    @staticmethod
    def _event(m: SimMessage) -> dict[str, Any]:
        return {
            "type": "m.room.message",
            "event_id": m.extra.get("event_id", f"${m.id}:{SERVER_NAME}"),
            "sender": m.sender,
            "origin_server_ts": int((m.visible_at or m.posted_at) * 1000),
            "content": {"msgtype": "m.text", "body": m.text},
        }

    @staticmethod
    def _position(token: str) -> int | None:
        return int(token[1:]) if token.startswith("s") and token[1:].isdigit() else None

    async def _sync(self, request: web.Request) -> web.StreamResponse:
        room = self._room_of_reader(request)
        if room is None:
            return self._unknown_token()
        since = request.query.get("since", "")
        after = self._position(since) or 0
        timeout = min(int(request.query.get("timeout", "0")), 60_000) / 1000.0
        cursor = await self.wait_visible(room, after, timeout) if since else len(room.visible)
        self.check_outage(request, room)
        # An initial sync (no since) shows the room's latest messages, as Synapse does.
        fresh = room.visible[after:cursor] if since else room.visible[:cursor]
        limit = self._timeline_limit(request.query.get("filter", ""))
        shown = fresh[-limit:]
        rooms: dict[str, Any] = {}
        if shown:
            timeline = {
                "events": [self._event(m) for m in shown],
                "limited": len(fresh) > len(shown),
                "prev_batch": f"s{cursor - len(shown)}",
            }
            rooms = {"join": {room.room_id: {"timeline": timeline}}}
        return web.json_response({"next_batch": f"s{cursor}", "rooms": rooms})

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        room = self._room_by_path(request)
        if self.bearer(request) not in (room.post_token, room.read_token):
            return self._unknown_token()
        start = self._position(request.query.get("from", ""))
        if start is None or request.query.get("dir") != "b":
            return _error(400, "M_INVALID_PARAM", "only dir=b from a sync token is simulated")
        stop = self._position(request.query.get("to", "")) or 0
        limit = max(1, min(int(request.query.get("limit", "10")), 1000))
        start = min(start, len(room.visible))
        end = max(stop, start - limit)
        body: dict[str, Any] = {
            "chunk": [self._event(m) for m in reversed(room.visible[end:start])],
            "start": f"s{start}",
        }
        if end > 0 and end > stop:
            body["end"] = f"s{end}"
        return web.json_response(body)
