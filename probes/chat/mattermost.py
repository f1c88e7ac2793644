"""Mattermost channel (REST API v4): post as the drill bot, see it as a reader.

Registry example::

    - id: chat-mm
      kind: mattermost
      url: https://mm.example.lg.jp
      token: env:SETAGAYA_MM_BOT              # bot or personal access token
      channel_id: 4xp9fdt4pbgd9b4x5yfzq8sdgw
      observer:
        token: env:SETAGAYA_MM_WATCH          # a staff-like account in the channel
        mode: websocket                       # or poll (every ``interval``)

- Sending: ``POST /api/v4/posts`` ``{"channel_id", "message"}`` → 201 Post
  (https://developers.mattermost.com/api-documentation/#/operations/CreatePost).
- Confirming (websocket mode): ``/api/v4/websocket``, authenticated with the
  ``authentication_challenge`` action; the ``posted`` event of the channel
  carries the post as a JSON string
  (https://developers.mattermost.com/integrate/reference/websocket/). After a
  reconnect the observer reads back ``GET /api/v4/channels/{id}/posts?since=``
  so nothing posted while it was away is missed. Poll mode uses that call only.
- Errors: the server's AppError JSON (``id``, ``message``, ``status_code``);
  rate limiting is HTTP 429 ``limit exceeded`` with ``X-RateLimit-*`` and
  ``Retry-After`` headers (server/channels/app/ratelimit.go).
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

import websockets
from pydantic import Field
from websockets.asyncio.client import connect

from probes.base import (
    Accepted,
    ChannelRejected,
    ChannelSettings,
    ChannelUnreachable,
    Clock,
    DrillMessage,
    ObserverFault,
    ProbeEnv,
)
from probes.chat.base import ChatProbe, ChatSettings, Throttle, Verdict, retry_after_seconds
from probes.settings import Duration, SecretRef
from probes.sim.base import Simulator

__all__ = ["MattermostProbe", "MattermostSettings", "mattermost_verdict", "posted_message"]

API = "/api/v4"


class MattermostObserver(ChannelSettings):
    token: SecretRef
    mode: Literal["websocket", "poll"] = "websocket"
    interval: Duration = 1.0


class MattermostSettings(ChatSettings):
    url: str = Field(pattern=r"^https?://")
    token: SecretRef
    channel_id: str = Field(pattern=r"^[a-z0-9]{26}$")
    observer: MattermostObserver | None = None
    # Read back this far when catching up (a post may become readable after a later one).
    lookback: Duration = 30.0


def _app_error(text: str) -> tuple[str, str]:
    try:
        body = json.loads(text)
    except ValueError:
        return "", text.strip()[:200]
    if isinstance(body, dict):
        return str(body.get("id", "")), str(body.get("message", ""))[:200]
    return "", ""


def mattermost_verdict(status: int, text: str, headers: Any = None) -> Verdict:
    """What a Mattermost answer to a post means: None (accepted), a Throttle, or the fault.

    >>> mattermost_verdict(429, "limit exceeded", {"Retry-After": "2"})
    Throttle(seconds=2.0, code='429')
    >>> mattermost_verdict(401, '{"id": "api.context.session_expired.app_error"}').code
    'api.context.session_expired.app_error'
    """
    if 200 <= status < 300:
        return None
    if status == 429:
        default = retry_after_seconds({"Retry-After": (headers or {}).get("X-RateLimit-Reset")})
        return Throttle(retry_after_seconds(headers, default), code="429")
    error_id, message = _app_error(text)
    code = error_id or f"HTTP {status}"
    if status in (502, 503, 504):
        return ChannelUnreachable(f"Mattermost が応答しません / Mattermost unavailable ({code})")
    if status == 401:
        reason = "トークンが無効か期限切れです / token invalid or expired"
    elif status == 403:
        reason = "チャンネルへの投稿権限がありません / no permission to post in the channel"
    elif status == 404 or "channel" in error_id:
        reason = "チャンネルが見つかりません / channel not found"
    else:
        reason = "Mattermost が拒否しました / Mattermost refused the post"
    return ChannelRejected(
        f"Mattermost: {reason} ({code}: {message})", code=code, temporary=status >= 500
    )


def posted_message(frame: Any, channel_id: str) -> dict[str, Any] | None:
    """The post of a websocket ``posted`` event in *channel_id*, else None.

    >>> posted_message({"event": "posted", "broadcast": {"channel_id": "c"},
    ...                 "data": {"post": '{"id": "p", "message": "hi"}'}}, "c")["message"]
    'hi'
    """
    if not isinstance(frame, dict) or frame.get("event") != "posted":
        return None
    data, broadcast = frame.get("data"), frame.get("broadcast")
    if not isinstance(data, dict) or not isinstance(broadcast, dict):
        return None
    try:
        post = json.loads(data.get("post") or "")
    except (TypeError, ValueError):
        return None
    if not isinstance(post, dict):
        return None
    if channel_id not in (broadcast.get("channel_id"), post.get("channel_id")):
        return None
    return post


def _ws_url(base: str) -> str:
    return "ws" + base[len("http") :] + API + "/websocket"


class MattermostProbe(ChatProbe):
    """Posts through REST; sees the post arrive on a reader's websocket (or by polling)."""

    kind = "mattermost"
    service = "Mattermost"
    Settings = MattermostSettings
    settings: MattermostSettings

    def __init__(self, channel_id: str, settings: ChannelSettings, env: ProbeEnv) -> None:
        super().__init__(channel_id, settings, env)
        self._newest_ms = 0
        self._away_since: float | None = None  # wall time the websocket was lost

    @classmethod
    def simulator(cls) -> type[Simulator]:
        from probes.sim.mattermost import MattermostSimulator

        return MattermostSimulator

    def look_interval(self) -> float:
        obs = self.settings.observer
        return obs.interval if obs is not None and obs.mode == "poll" else 0.0

    def _observer(self) -> MattermostObserver:
        assert self.settings.observer is not None
        return self.settings.observer

    async def _api(
        self, method: str, path: str, token: SecretRef, **kw: Any
    ) -> tuple[int, str, Any]:
        return await self.fetch(method, self.settings.url + API + path, token=token.reveal(), **kw)

    # ------------------------------------------------------------------ send

    async def _attempt(self, message: DrillMessage) -> Accepted | Throttle:
        s = self.settings
        body = {"channel_id": s.channel_id, "message": message.render()}
        status, text, headers = await self._api("POST", "/posts", s.token, json=body)
        verdict = mattermost_verdict(status, text, headers)
        if verdict is None:
            post_id = None
            try:
                post_id = str(json.loads(text).get("id"))
            except (ValueError, AttributeError):
                pass
            return Accepted(at=Clock.monotonic(), provider_id=post_id, detail=f"HTTP {status}")
        if isinstance(verdict, Throttle):
            return verdict
        raise verdict

    # ------------------------------------------------------------------ observe

    def _refused(self, status: int, text: str) -> ObserverFault:
        code = _app_error(text)[0] or f"HTTP {status}"
        return ObserverFault(
            f"観測用アカウントでチャンネルを読めません / observer cannot read the channel ({code})",
            code=code,
        )

    async def _read_posts(self, since_ms: int, bound: float) -> float | None:
        path = f"/channels/{self.settings.channel_id}/posts"
        status, text, headers = await self._api(
            "GET", path, self._observer().token, params={"since": str(since_ms)}
        )
        seen_at = Clock.monotonic()
        if status == 429:
            return retry_after_seconds(headers, 1.0)
        if status in (401, 403, 404):
            raise self._refused(status, text)
        if status != 200:
            raise ChannelUnreachable(f"posts read failed: HTTP {status}")
        posts = (json.loads(text) or {}).get("posts") or {}
        for post in posts.values():
            if isinstance(post, dict) and isinstance(post.get("message"), str):
                self.record_text(post["message"], at=seen_at, bound=bound, post_id=post.get("id"))
                self._newest_ms = max(self._newest_ms, int(post.get("update_at") or 0))
        return None

    def _since_ms(self, floor_wall: float) -> int:
        lookback_ms = int(self.settings.lookback * 1000)
        floor = int(floor_wall * 1000) - 1000
        return max(floor, self._newest_ms - lookback_ms) if self._newest_ms else floor

    async def _look(self) -> float | None:
        if self._observer().mode == "poll":
            wait = await self._read_posts(
                self._since_ms(self.opened_wall), self.poll_bound(Clock.monotonic())
            )
            self._parked.set()
            return wait
        return await self._websocket_session()

    async def _websocket_session(self) -> float | None:
        obs = self._observer()
        authed = False
        try:
            async with connect(
                _ws_url(self.settings.url),
                proxy=None,
                open_timeout=self.settings.request_timeout,
                close_timeout=1.0,
                max_size=2**22,
            ) as ws:
                challenge = {"seq": 1, "action": "authentication_challenge"}
                await ws.send(json.dumps({**challenge, "data": {"token": obs.token.reveal()}}))
                async for raw in ws:
                    frame = json.loads(raw)
                    if frame.get("seq_reply") == 1:
                        if frame.get("status") != "OK":
                            raise self._refused(401, json.dumps(frame.get("error") or {}))
                        authed = True
                        await self._catch_up()
                        self._parked.set()
                        continue
                    post = posted_message(frame, self.settings.channel_id)
                    if post is not None and isinstance(post.get("message"), str):
                        # Pushed when the post became visible: late by socket delivery only.
                        seen_at = Clock.monotonic()
                        self.record_text(post["message"], at=seen_at, bound=0.002, post=post["id"])
        except websockets.InvalidStatus as exc:
            status = exc.response.status_code
            if status in (401, 403):
                raise self._refused(status, "") from exc
            raise ChannelUnreachable(f"websocket refused: HTTP {status}") from exc
        except (OSError, TimeoutError, websockets.WebSocketException) as exc:
            if not authed:
                await self._check_login()
            raise ChannelUnreachable(f"websocket lost: {exc.__class__.__name__}") from exc
        finally:
            if authed or self._away_since is None:
                self._away_since = time.time()
        if not authed:
            # Mattermost closes the socket, silently, on a refused authentication challenge.
            await self._check_login()
        return 0.0

    async def _catch_up(self) -> None:
        """After a reconnect, read back what was posted while the socket was away."""
        away, self._away_since = self._away_since, None
        if away is not None:
            await self._read_posts(self._since_ms(away), max(0.0, time.time() - away))

    async def _check_login(self) -> None:
        try:
            status, text, _ = await self._api("GET", "/users/me", self._observer().token)
        except ChannelUnreachable:
            return
        if status in (401, 403):
            raise self._refused(status, text)
