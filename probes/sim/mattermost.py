"""A Mattermost-shaped server (REST API v4 + websocket), with Mattermost's errors.

Endpoints, each beside the documentation it follows:

- ``POST /api/v4/posts`` → 201 Post.
- ``GET /api/v4/channels/{channel_id}/posts?since=`` → PostList ``{"order", "posts"}``.
- ``GET /api/v4/users/me`` → the caller, or 401.
- ``GET /api/v4/channels/{channel_id}/members/{user_id}`` → ChannelMember, or 404
  when the user is not in the channel (``sim.leave``), 403 for a caller outside it.
- ``GET /api/v4/websocket`` → the event stream after ``authentication_challenge``.

Errors use the server's AppError JSON (``id``, ``message``, ``detailed_error``,
``request_id``, ``status_code``); the rate limit is HTTP 429 with the body
``limit exceeded`` and ``X-RateLimit-Limit/-Remaining/-Reset`` and
``Retry-After`` headers (mattermost server/channels/app/ratelimit.go).
A post becomes visible (websocket ``posted`` event, posts list) after the
channel's injected latency. Its ``create_at`` (and ``update_at``, which the
posts list's ``since`` compares) is the moment it became visible: the injected
latency is modelled as happening before the server, so the server's own stamp
is the ground truth an observer can bound itself by — as a real Mattermost's
``create_at`` (the server's creation time of the post) is. The 201 answer to
the post, given before the post is visible, carries the time it was posted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from typing import Any, ClassVar

from aiohttp import WSMsgType, web

from probes.sim.base import SimKnobs
from probes.sim.chat import ChatSimBase, SimMessage, SimRoom

__all__ = ["MattermostSimulator"]

API = "/api/v4"


def _id() -> str:
    return secrets.token_hex(13)  # 26 lowercase characters, like Mattermost ids


def _app_error(status: int, error_id: str, message: str) -> web.Response:
    body = {
        "id": error_id,
        "message": message,
        "detailed_error": "",
        "request_id": _id(),
        "status_code": status,
    }
    return web.json_response(body, status=status)


class MattermostSimulator(ChatSimBase):
    """Mattermost-shaped far end: REST posts, websocket ``posted`` events."""

    kind = "mattermost"
    fault_paths: ClassVar[dict[str, str]] = {
        "send": r"/api/v4/posts$",
        "read": r"/api/v4/(channels/[^/]+/posts|websocket)$",
    }

    def __init__(self, seed: int | None = None, host: str = "127.0.0.1") -> None:
        super().__init__(seed, host)
        self.user_ids: dict[str, str] = {}
        self._seq = 0

    @staticmethod
    def placeholder_settings() -> dict[str, Any]:
        return {
            "url": "http://127.0.0.1:9",
            "token": "env:UNUSED_SIM_TOKEN",
            "channel_id": "a" * 26,
        }

    def routes(self, app: web.Application) -> None:
        # https://developers.mattermost.com/api-documentation/#/operations/CreatePost
        app.router.add_post(API + "/posts", self._create_post)
        # https://developers.mattermost.com/api-documentation/#/operations/GetPostsForChannel
        app.router.add_get(API + "/channels/{channel}/posts", self._posts_for_channel)
        # https://developers.mattermost.com/api-documentation/#/operations/GetUser ("me")
        app.router.add_get(API + "/users/me", self._me)
        # https://developers.mattermost.com/api-documentation/#/operations/GetChannelMember
        app.router.add_get(API + "/channels/{channel}/members/{user}", self._channel_member)
        # https://developers.mattermost.com/integrate/reference/websocket/
        app.router.add_get(API + "/websocket", self._websocket)

    def add_channel(
        self, channel_key: str, knobs: SimKnobs, raw_settings: dict[str, Any]
    ) -> dict[str, Any]:
        room = self.new_room(channel_key, knobs, room_id=_id())
        for role in ("post", "read"):
            self.user_ids[room.credentials[role]] = _id()
        keep = {"lookback", "max_retries", "request_timeout"}
        settings = {k: v for k, v in raw_settings.items() if k in keep}
        settings["url"] = self.url_for(knobs)
        settings["token"] = self.secret(room.credentials["post"])
        settings["channel_id"] = room.room_id
        settings["observer"] = {"token": self.secret(room.credentials["read"])}
        return settings

    # ------------------------------------------------------------------ helpers

    def _caller(self, request: web.Request, role: str | None = None) -> SimRoom | None:
        token = self.bearer(request)
        for room in self.rooms.values():
            if token in (room.credentials["post"], room.credentials["read"]) and (
                role is None or room.credentials[role] == token
            ):
                self.check_outage(request, room)
                return None if room.knobs.reject == "auth" and role == "post" else room
        return None

    @staticmethod
    def _session_expired() -> web.Response:
        return _app_error(
            401,
            "api.context.session_expired.app_error",
            "Invalid or expired session, please login again.",
        )

    @staticmethod
    def _created_ms(msg: SimMessage) -> int:
        """``create_at``: when the post became visible (posted, while it is not yet)."""
        return int((msg.visible_at or msg.posted_at) * 1000)

    def _post_json(self, room: SimRoom, msg: SimMessage) -> dict[str, Any]:
        created = self._created_ms(msg)
        return {
            "id": msg.extra["post_id"],
            "create_at": created,
            "update_at": created,
            "edit_at": 0,
            "delete_at": 0,
            "user_id": msg.sender,
            "channel_id": room.room_id,
            "root_id": "",
            "message": msg.text,
            "type": "",
            "props": {},
        }

    # ------------------------------------------------------------------ handlers

    async def _create_post(self, request: web.Request) -> web.StreamResponse:
        room = self._caller(request, "post")
        if room is None:  # a message for the channel named in the body, refused
            try:
                target = self.rooms.get(str((await request.json()).get("channel_id", "")))
            except (ValueError, AttributeError):
                target = None
            if target is not None:
                await self.refuse(request, target, "401", final=True)
            return self._session_expired()
        wait = self.retry_after(room)
        if wait is not None:
            await self.refuse(request, room, "429", final=False)
            headers = {
                "X-RateLimit-Limit": str(int(room.knobs.rate_limit or 1)),
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": self.retry_after_header(wait),
                "Retry-After": self.retry_after_header(wait),
            }
            return web.Response(status=429, text="limit exceeded\n", headers=headers)
        body = await request.json()
        if body.get("channel_id") != room.room_id:
            return _app_error(
                403,
                "api.context.permissions.app_error",
                "You do not have the appropriate permissions.",
            )
        user = self.user_ids[room.credentials["post"]]
        msg = self.post(room, str(body.get("message", "")), sender=user, post_id=_id())
        return web.json_response(self._post_json(room, msg), status=201)

    async def _posts_for_channel(self, request: web.Request) -> web.StreamResponse:
        room = self._caller(request, "read")
        if room is None:
            return self._session_expired()
        if request.match_info["channel"] != room.room_id:
            return _app_error(
                403,
                "api.context.permissions.app_error",
                "You do not have the appropriate permissions.",
            )
        since = int(request.query.get("since", "0"))
        posts = [m for m in room.visible if self._created_ms(m) > since]
        order = [m.extra["post_id"] for m in reversed(posts)]
        body = {
            "order": order,
            "posts": {m.extra["post_id"]: self._post_json(room, m) for m in posts},
            "next_post_id": "",
            "prev_post_id": "",
            "has_next": False,
        }
        return web.json_response(body)

    async def _me(self, request: web.Request) -> web.StreamResponse:
        room = self._caller(request)
        token = self.bearer(request)
        if room is None or (room.knobs.reject == "auth" and token == room.credentials["post"]):
            return self._session_expired()
        user_id = self.user_ids[self.bearer(request)]
        return web.json_response({"id": user_id, "username": f"user-{user_id[:6]}"})

    async def _channel_member(self, request: web.Request) -> web.StreamResponse:
        room = self._caller(request)
        if room is None:
            return self._session_expired()
        if request.match_info["channel"] != room.room_id or not room.member(self.bearer(request)):
            return _app_error(
                403,
                "api.context.permissions.app_error",
                "You do not have the appropriate permissions.",
            )
        user = request.match_info["user"]
        token = next((t for t in room.credentials.values() if self.user_ids.get(t) == user), None)
        if token is None or not room.member(token):
            return _app_error(
                404,
                "app.channel.get_member.missing.app_error",
                "No channel member found for that user ID and channel ID.",
            )
        body = {
            "channel_id": room.room_id,
            "user_id": user,
            "roles": "channel_user",
            "last_viewed_at": 0,
            "msg_count": 0,
            "mention_count": 0,
            "notify_props": {"desktop": "default", "mark_unread": "all"},
            "last_update_at": 0,
        }
        return web.json_response(body)

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        room: SimRoom | None = None
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                break
            req = json.loads(msg.data)
            if req.get("action") != "authentication_challenge":
                continue
            token = str((req.get("data") or {}).get("token", ""))
            room = next((r for r in self.rooms.values() if r.credentials["read"] == token), None)
            if room is None or room.knobs.outage:
                # Mattermost closes the socket on a session it cannot find, without a reply.
                await ws.close()
                return ws
            await ws.send_json({"status": "OK", "seq_reply": req.get("seq")})
            break
        if room is not None:
            pusher = asyncio.ensure_future(self._stream(ws, room))
            async for _msg in ws:  # keep reading: close frames and pings are handled here
                pass
            pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await pusher
        return ws

    async def _stream(self, ws: web.WebSocketResponse, room: SimRoom) -> None:
        self._seq += 1
        hello = {"server_version": "9.11.0.sim", "connection_id": _id()}
        broadcast: dict[str, Any] = {"omit_users": None, "user_id": "", "team_id": ""}
        await ws.send_json({"event": "hello", "data": hello, "broadcast": broadcast, "seq": 0})
        cursor = len(room.visible)
        seq = 1
        token = room.credentials["read"]  # a session ends when its token expires
        while not ws.closed and self.running and not room.knobs.outage:
            count = await self.wait_visible(room, cursor, 5.0)
            if room.knobs.outage or not self.running or room.credentials["read"] != token:
                break
            for m in room.visible[cursor:count]:
                event = {
                    "event": "posted",
                    "data": {
                        "channel_display_name": "防災訓練",
                        "channel_name": "bousai-drill",
                        "channel_type": "O",
                        "post": json.dumps(self._post_json(room, m)),
                        "sender_name": "@drill-bot",
                        "team_id": "",
                    },
                    "broadcast": {**broadcast, "channel_id": room.room_id},
                    "seq": seq,
                }
                seq += 1
                await ws.send_json(event)
            cursor = count
        if not ws.closed:
            await ws.close()
