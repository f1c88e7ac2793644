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
  so nothing posted while it was away is missed. Poll mode uses that call only;
  its ``since`` reaches ``lookback`` before the oldest message still awaited
  (and behind the newest seen), so a post that becomes readable after a later
  one is not skipped. Error bound of a read: the time since the previous look.
- Error bound of a websocket sighting, per post: from the post's ``create_at``
  (the server's creation time, whole ms: + 1 ms; converted with
  ``Clock.monotonic_from_wall``) to the moment the observer handled the event,
  so a loaded event loop or a slow socket shows up in it. Without a
  ``create_at``: from when the socket was authenticated (a post pushed on it
  was created after that).
- Observer = sender: ``GET /api/v4/users/me`` for both tokens when the probe
  opens; the same user id is refused (``ObserverIsSender``).
- Errors: the server's AppError JSON (``id``, ``message``, ``status_code``);
  rate limiting is HTTP 429 ``limit exceeded`` with ``X-RateLimit-*`` and
  ``Retry-After`` headers (server/channels/app/ratelimit.go).
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from typing import TYPE_CHECKING, Any, Literal

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
from probes.chat.base import (
    ChatProbe,
    ChatSettings,
    Throttle,
    Verdict,
    both,
    foreign_answer,
    retry_after_seconds,
)
from probes.faultcodes import http_code, transport_code
from probes.settings import Duration, SecretRef
from probes.sim.base import Simulator

if TYPE_CHECKING:
    from probes.preflight import PreflightReport

__all__ = [
    "MattermostProbe",
    "MattermostSettings",
    "mattermost_verdict",
    "posted_message",
    "push_bound",
]

API = "/api/v4"


class MattermostObserver(ChannelSettings):
    token: SecretRef = Field(
        description="チャンネルのメンバーである読み取り用アカウントのトークン / a reader's token, a member of the channel"
    )
    mode: Literal["websocket", "poll"] = Field(
        default="websocket",
        description="websocket: 即時、poll: 一定間隔 / websocket: as it happens; poll: every interval",
    )
    interval: Duration = Field(default=1.0, description="poll の間隔 / how often poll mode reads")


class MattermostSettings(ChatSettings):
    url: str = Field(pattern=r"^https?://", description="Mattermost の URL / the server's URL")
    token: SecretRef = Field(
        description="送信するボットか個人アクセストークン / the sending bot's (or personal access) token"
    )
    channel_id: str = Field(
        pattern=r"^[a-z0-9]{26}$",
        description="チャンネル ID（26 文字） / the channel id (26 characters)",
    )
    observer: MattermostObserver | None = Field(
        default=None,
        description="着信を確かめる読み取り側。省略すると「受付のみ」 / the reader that confirms arrival; without it: accepted only",
    )
    # Each read reaches this far behind the oldest message still awaited (and the newest
    # seen): a message may become readable after a later one, and the service's clock
    # may differ from ours.
    lookback: Duration = Field(
        default=30.0, description="読み返す幅 / how far back each read reaches"
    )


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
    'api.context.session_expired.app_error HTTP 401'
    """
    if 200 <= status < 300:
        return None
    if status == 429:
        default = retry_after_seconds({"Retry-After": (headers or {}).get("X-RateLimit-Reset")})
        return Throttle(retry_after_seconds(headers, default), code="429")
    error_id, message = _app_error(text)
    code = http_code(error_id, status)
    if status in (502, 503, 504):
        return ChannelUnreachable(
            both("Mattermost が応答しません", "Mattermost unavailable", code), code=code
        )
    if status == 401:
        ja, en = "トークンが無効か期限切れです", "token invalid or expired"
    elif status == 403:
        ja, en = "チャンネルへの投稿権限がありません", "no permission to post in the channel"
    elif status == 404 or "channel" in error_id:
        ja, en = "チャンネルが見つかりません", "channel not found"
    else:
        ja, en = "Mattermost が拒否しました", "Mattermost refused the post"
    detail = f"{code}: {message}" if message else code
    return ChannelRejected(both(ja, en, detail), code=code, temporary=status >= 500)


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


def push_bound(post: dict[str, Any], seen_at: float, fallback: float) -> float:
    """Error bound of a pushed post seen at *seen_at* (monotonic): since its ``create_at``.

    ``create_at`` is whole milliseconds (+ 1 ms); without one, since *fallback*.

    >>> import time
    >>> now = time.monotonic()
    >>> created = int((time.time() - 0.05) * 1000)
    >>> 0.049 <= push_bound({"create_at": created}, now, now) <= 0.06
    True
    >>> round(push_bound({}, now, now - 0.3), 6)
    0.3
    """
    created = post.get("create_at")
    if isinstance(created, int) and not isinstance(created, bool) and created > 0:
        earliest = Clock.monotonic_from_wall(created / 1000.0)
        return max(0.0, seen_at - earliest) + 0.001
    return max(0.0, seen_at - fallback)


def _ws_url(base: str) -> str:
    return "ws" + base[len("http") :] + API + "/websocket"


class MattermostProbe(ChatProbe):
    """Posts through REST; sees the post arrive on a reader's websocket (or by polling)."""

    kind = "mattermost"
    summary = (
        "Mattermost（REST API v4）: 訓練用ボットとして投稿し、閲覧用アカウントで確認",
        "Mattermost (REST API v4): post as the drill bot, see it as a reader",
    )
    service = "Mattermost"
    Settings = MattermostSettings
    settings: MattermostSettings

    def __init__(self, channel_id: str, settings: ChannelSettings, env: ProbeEnv) -> None:
        super().__init__(channel_id, settings, env)
        self._newest_ms = 0
        self._away_since: float | None = None  # wall time the websocket was lost
        self._away_mono = 0.0  # the same moment, monotonic
        self._closing: asyncio.Future[None] | None = None  # a session ended by a failed read-back

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

    async def preflight(self) -> PreflightReport:
        """Check the channel without posting (probes.chat.preflight): users/me and channel membership of both tokens."""
        from probes.chat.checks import MattermostCheck
        from probes.chat.preflight import check_chat

        return await check_chat(self, MattermostCheck(self))

    async def _api(
        self, method: str, path: str, token: SecretRef, **kw: Any
    ) -> tuple[int, str, Any, float]:
        return await self.fetch(method, self.settings.url + API + path, token=token.reveal(), **kw)

    # ------------------------------------------------------------------ send

    async def _attempt(self, message: DrillMessage) -> Accepted | Throttle:
        s = self.settings
        body = {"channel_id": s.channel_id, "message": message.render()}
        status, text, headers, answered = await self._api("POST", "/posts", s.token, json=body)
        verdict = mattermost_verdict(status, text, headers)
        if verdict is None:  # 201 and the Post as JSON; an HTML page is not Mattermost's
            verdict = foreign_answer("Mattermost", status, text, headers)
        if verdict is None:
            post_id = None
            try:
                post_id = str(json.loads(text).get("id"))
            except (ValueError, AttributeError):
                pass
            return Accepted(at=answered, provider_id=post_id, detail=f"HTTP {status}")
        if isinstance(verdict, Throttle):
            return verdict
        raise verdict

    # ------------------------------------------------------------------ observe

    def _refused(self, status: int, text: str) -> ObserverFault:
        code = http_code(_app_error(text)[0], status)
        ja, en = "観測用アカウントでチャンネルを読めません", "observer cannot read the channel"
        return ObserverFault(both(ja, en, code), code=code)

    async def _identity(self, role: str) -> str | None:
        obs = self.settings.observer
        token = self.settings.token if role == "sender" else (obs.token if obs else None)
        if token is None:
            return None
        try:
            status, text, _, _at = await self._api("GET", "/users/me", token)
            user = json.loads(text).get("id") if status == 200 else None
        except (ChannelUnreachable, ValueError, AttributeError):
            return None
        return str(user) if user else None

    async def _read_posts(self, since_ms: int, earliest: float) -> float | None:
        """Read posts changed since *since_ms*; none was readable before *earliest* (monotonic)."""
        path = f"/channels/{self.settings.channel_id}/posts"
        status, text, headers, seen_at = await self._api(
            "GET", path, self._observer().token, params={"since": str(since_ms)}
        )
        bound = max(0.0, seen_at - earliest)
        if status == 429:
            return self.look_failed(retry_after_seconds(headers, 1.0))
        if status in (401, 403, 404):
            raise self._refused(status, text)
        if status != 200:
            raise ChannelUnreachable(
                f"posts read failed: HTTP {status}", code=http_code("", status)
            )
        posts = (json.loads(text) or {}).get("posts") or {}
        for post in posts.values():
            if isinstance(post, dict) and isinstance(post.get("message"), str):
                self.record_text(post["message"], at=seen_at, bound=bound, post_id=post.get("id"))
                self._newest_ms = max(self._newest_ms, int(post.get("update_at") or 0))
        return None

    def _since_ms(self, floor_wall: float) -> int:
        """``since`` for a read: behind the newest seen or the oldest awaited, not before *floor*."""
        lookback_ms = int(self.settings.lookback * 1000)
        floor = int(floor_wall * 1000) - 1000
        starts = [self._newest_ms - lookback_ms] if self._newest_ms else []
        awaited = self.awaited_since()
        if awaited is not None:
            starts.append(int(awaited * 1000) - lookback_ms)
        return max(floor, min(starts)) if starts else floor

    async def _look(self) -> float | None:
        if self._observer().mode == "poll":
            wait = await self._read_posts(self._since_ms(self.opened_wall), self._last_look_started)
            self._parked.set()
            return wait
        return await self._websocket_session()

    async def _websocket_session(self) -> float | None:
        obs = self._observer()
        authed, authed_at = False, Clock.monotonic()
        catch_up: asyncio.Task[None] | None = None
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
                        authed, authed_at = True, Clock.monotonic()
                        self._observer_trouble = None  # the socket is back: it can look
                        # Read back beside the socket, not instead of it: a post pushed
                        # meanwhile is handled as it comes, so its bound stays small.
                        catch_up = asyncio.create_task(self._catch_up())
                        catch_up.add_done_callback(functools.partial(self._close_on_failure, ws))
                        self._parked.set()
                        continue
                    post = posted_message(frame, self.settings.channel_id)
                    if post is not None and isinstance(post.get("message"), str):
                        seen_at = Clock.monotonic()
                        bound = push_bound(post, seen_at, authed_at)
                        self.record_text(post["message"], at=seen_at, bound=bound, post=post["id"])
                if catch_up is not None and catch_up.done() and not catch_up.cancelled():
                    catch_up.result()  # an observer fault or an outage met while reading back
        except websockets.InvalidStatus as exc:
            status = exc.response.status_code
            if status in (401, 403):
                raise self._refused(status, "") from exc
            raise ChannelUnreachable(
                f"websocket refused: HTTP {status}", code=http_code("", status)
            ) from exc
        except (OSError, TimeoutError, websockets.WebSocketException) as exc:
            if not authed:
                await self._check_login()
            raise ChannelUnreachable(
                f"websocket lost: {exc.__class__.__name__}", code=transport_code(exc)
            ) from exc
        finally:
            if catch_up is not None and not catch_up.done():
                catch_up.cancel()
            if self._away_since is None:  # (still set: not read back yet, keep the earlier)
                self._away_since, self._away_mono = time.time(), Clock.monotonic()
        if not authed:
            # Mattermost closes the socket, silently, on a refused authentication challenge
            # (then users/me says 401: an observer fault) — or the server is going away.
            await self._check_login()
            raise ChannelUnreachable(
                both(
                    "Mattermost の WebSocket が認証前に閉じられました",
                    "the Mattermost websocket closed before authentication",
                ),
                code="cut_off",
            )
        return 0.0

    def _close_on_failure(self, ws: Any, task: asyncio.Task[None]) -> None:
        """A read-back that failed ends the websocket session (which then raises its error)."""
        if not task.cancelled() and task.exception() is not None:
            self._closing = asyncio.ensure_future(ws.close())

    async def _catch_up(self) -> None:
        """After a reconnect, read back what was posted while the socket was away."""
        away = self._away_since
        if away is not None:
            since = self._since_ms(self.opened_wall)
            await self._read_posts(min(since, int(away * 1000) - 1000), self._away_mono)
            if self._away_since == away:
                self._away_since = None

    async def _check_login(self) -> None:
        try:
            status, text, _, _at = await self._api("GET", "/users/me", self._observer().token)
        except ChannelUnreachable:
            return
        if status in (401, 403):
            raise self._refused(status, text)
