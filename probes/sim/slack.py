"""A Slack-shaped Web API: the two methods a drill uses, with Slack's errors.

Base URL ``http://127.0.0.1:PORT/api/`` (the slack_sdk client's ``base_url``).
Bot tokens post, a staff-like reader token reads; each simulated channel has
its own pair, and each token its own user (``auth.test`` says whose it is).
Message ``ts`` is the post time; the message shows up in
``conversations.history`` only after the channel's injected latency.
"""

from __future__ import annotations

import secrets
import time
from typing import Any, ClassVar

from aiohttp import web

from probes.sim.base import SimKnobs
from probes.sim.chat import SIM_POLL_INTERVAL, ChatSimBase, SimRoom

__all__ = ["SlackSimulator"]


def _ts(wall: float) -> str:
    return f"{wall:.6f}"


class SlackSimulator(ChatSimBase):
    """Slack-shaped far end: chat.postMessage and conversations.history."""

    kind = "slack"
    fault_paths: ClassVar[dict[str, str]] = {
        "send": r"/api/chat\.postMessage$",
        "read": r"/api/conversations\.history$",
    }

    def __init__(self, seed: int | None = None, host: str = "127.0.0.1") -> None:
        super().__init__(seed, host)
        self._last_ts = 0.0
        self.user_ids: dict[str, str] = {}  # token → the user it belongs to

    @staticmethod
    def placeholder_settings() -> dict[str, Any]:
        return {"bot_token": "env:UNUSED_SIM_TOKEN", "channel": "C0SIMULATED"}

    def routes(self, app: web.Application) -> None:
        # https://docs.slack.dev/reference/methods/chat.postMessage (POST, JSON or form body)
        app.router.add_post("/api/chat.postMessage", self._post_message)
        # https://docs.slack.dev/reference/methods/conversations.history (GET or POST)
        app.router.add_route("*", "/api/conversations.history", self._history)
        # https://docs.slack.dev/reference/methods/auth.test (GET or POST): whose token is it?
        app.router.add_route("*", "/api/auth.test", self._auth_test)
        # https://docs.slack.dev/reference/methods/conversations.info (GET or POST): is_member
        app.router.add_route("*", "/api/conversations.info", self._conversation_info)

    def add_channel(
        self, channel_key: str, knobs: SimKnobs, raw_settings: dict[str, Any]
    ) -> dict[str, Any]:
        channel = "C" + secrets.token_hex(5).upper()
        room = self.new_room(channel_key, knobs, room_id=channel)
        room.credentials["post"] = "xoxb-" + room.credentials["post"]
        room.credentials["read"] = "xoxp-" + room.credentials["read"]
        self.user_ids[room.credentials["post"]] = "U0BOT" + secrets.token_hex(3).upper()
        self.user_ids[room.credentials["read"]] = "W0" + secrets.token_hex(4).upper()
        keep = {"poll_interval", "lookback", "max_retries", "request_timeout"}
        settings = {k: v for k, v in raw_settings.items() if k in keep}
        settings.setdefault("poll_interval", SIM_POLL_INTERVAL)
        settings["base_url"] = self.url_for(knobs) + "/api/"
        settings["channel"] = channel
        settings["bot_token"] = self.secret(room.credentials["post"])
        settings["observer_token"] = self.secret(room.credentials["read"])
        return settings

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _fail(error: str, status: int = 200, **headers: str) -> web.Response:
        # Slack answers application errors with HTTP 200 and ok=false; rate limits with 429.
        return web.json_response({"ok": False, "error": error}, status=status, headers=headers)

    async def _args(self, request: web.Request) -> dict[str, Any]:
        args: dict[str, Any] = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                args.update(await request.json())
            else:
                args.update(dict(await request.post()))
        return args

    def _authorise(
        self, request: web.Request, args: dict[str, Any], role: str
    ) -> SimRoom | web.Response:
        """The room the call is for, or the error Slack would give."""
        token = self.bearer(request) or str(args.get("token", ""))
        if not token:
            return self._fail("not_authed")
        own = next((r for r in self.rooms.values() if r.credentials[role] == token), None)
        if own is None:
            target = self.rooms.get(str(args.get("channel", "")))
            if target is not None and role == "post":  # a message for it, refused
                text = str(args.get("text", ""))
                self.ledger.refused_text(target.channel, text, code="invalid_auth")
            return self._fail("invalid_auth")
        self.check_outage(request, own)
        if own.knobs.reject == "auth":
            if role == "post":
                self.ledger.refused_text(
                    own.channel, str(args.get("text", "")), code="invalid_auth"
                )
            return self._fail("invalid_auth")
        target = self.rooms.get(str(args.get("channel", "")))
        if target is None:
            return self._fail("channel_not_found")
        if target is not own:
            return self._fail("not_in_channel")
        return own

    def _next_ts(self) -> float:
        # Slack ts values are unique per channel; keep them strictly increasing.
        self._last_ts = max(time.time(), self._last_ts + 0.000001)
        return self._last_ts

    # ------------------------------------------------------------------ handlers

    async def _post_message(self, request: web.Request) -> web.StreamResponse:
        args = await self._args(request)
        room = self._authorise(request, args, "post")
        if isinstance(room, web.Response):
            return room
        wait = self.retry_after(room)
        if wait is not None:
            # https://docs.slack.dev/apis/web-api/rate-limits: HTTP 429, Retry-After in seconds.
            text = str(args.get("text", ""))
            self.ledger.refused_text(room.channel, text, code="ratelimited", final=False)
            return self._fail("ratelimited", 429, **{"Retry-After": self.retry_after_header(wait)})
        text = str(args.get("text", ""))
        if not text:
            return self._fail("no_text")
        ts = _ts(self._next_ts())
        user = self.user_ids[room.credentials["post"]]
        self.post(room, text, sender=user, ts=ts)
        message = {"type": "message", "user": user, "bot_id": "B0DRILL", "text": text}
        message["ts"] = ts
        body = {"ok": True, "channel": room.room_id, "ts": ts, "message": message}
        return web.json_response(body)

    async def _history(self, request: web.Request) -> web.StreamResponse:
        args = await self._args(request)
        room = self._authorise(request, args, "read")
        if isinstance(room, web.Response):
            return room
        # The rate_limit knob limits posting (Slack limits each method on its own).
        oldest = float(args.get("oldest") or 0)
        inclusive = str(args.get("inclusive", "0")).lower() in ("1", "true")
        limit = max(1, min(int(args.get("limit") or 100), 999))
        offset = int(args.get("cursor") or 0)
        matching = [
            m
            for m in reversed(room.visible)  # newest first, as Slack returns them
            if (float(m.extra["ts"]) >= oldest if inclusive else float(m.extra["ts"]) > oldest)
        ]
        page = matching[offset : offset + limit]
        more = offset + limit < len(matching)
        messages = [
            {"type": "message", "user": m.sender, "text": m.text, "ts": m.extra["ts"]} for m in page
        ]
        return web.json_response(
            {
                "ok": True,
                "messages": messages,
                "has_more": more,
                "pin_count": 0,
                "response_metadata": {"next_cursor": str(offset + limit) if more else ""},
            }
        )

    async def _conversation_info(self, request: web.Request) -> web.StreamResponse:
        """A public channel's info; ``is_member`` for the caller (any workspace token may ask)."""
        args = await self._args(request)
        token = self.bearer(request) or str(args.get("token", ""))
        if not token:
            return self._fail("not_authed")
        own = next((r for r in self.rooms.values() if token in r.credentials.values()), None)
        if own is None or self.user_ids.get(token) is None:
            return self._fail("invalid_auth")
        self.check_outage(request, own)
        if own.knobs.reject == "auth" and token == own.credentials["post"]:
            return self._fail("invalid_auth")
        room = self.rooms.get(str(args.get("channel", "")))
        if room is None:
            return self._fail("channel_not_found")
        channel = {
            "id": room.room_id,
            "name": "bousai-drill",
            "is_channel": True,
            "is_group": False,
            "is_im": False,
            "is_private": False,
            "is_archived": False,
            "is_general": False,
            "created": 1700000000,
            "creator": "U0CREATOR",
            "is_member": room is own and room.member(token),
            "topic": {"value": "", "creator": "", "last_set": 0},
            "purpose": {"value": "防災訓練", "creator": "", "last_set": 0},
        }
        return web.json_response({"ok": True, "channel": channel})

    async def _auth_test(self, request: web.Request) -> web.StreamResponse:
        args = await self._args(request)
        token = self.bearer(request) or str(args.get("token", ""))
        if not token:
            return self._fail("not_authed")
        user_id = self.user_ids.get(token)
        room = next((r for r in self.rooms.values() if token in r.credentials.values()), None)
        if user_id is None or room is None:
            return self._fail("invalid_auth")
        self.check_outage(request, room)
        if room.knobs.reject == "auth" and token == room.credentials["post"]:
            return self._fail("invalid_auth")
        body: dict[str, Any] = {
            "ok": True,
            "url": "https://tsunagari-sim.slack.com/",
            "team": "Tsunagari Sim",
            "user": "drill-bot" if token.startswith("xoxb-") else "staff",
            "team_id": "T0SIMULATED",
            "user_id": user_id,
            "is_enterprise_install": False,
        }
        if token.startswith("xoxb-"):
            body["bot_id"] = "B0DRILL"
        return web.json_response(body)
