"""Slack channel: chat.postMessage as the drill bot, conversations.history as a reader.

Uses the official ``slack_sdk`` async client. Registry example::

    - id: chat-slack
      kind: slack
      bot_token: env:MINATO_SLACK_BOT        # xoxb-…, scope chat:write, bot invited to the channel
      observer_token: env:MINATO_SLACK_READ  # xoxp-… of a staff-like account, channels:history
      channel: C0123456789

- Sending: ``chat.postMessage`` (https://docs.slack.dev/reference/methods/chat.postMessage).
- Confirming: ``conversations.history`` with ``oldest`` as the observer token
  (https://docs.slack.dev/reference/methods/conversations.history), polled
  every ``poll_interval``. The method is Tier 3 (50+ calls a minute) — and only
  1 a minute for non-Marketplace commercially distributed apps — so the time
  since the previous look is the observer's error bound, measured per sighting.
  ``oldest`` reaches back ``lookback`` before the oldest message still awaited
  (and behind the newest seen): a message that becomes readable after a later
  one is still in the window (:func:`history_oldest`).
- Observer = sender: ``auth.test`` for both tokens when the probe opens
  (https://docs.slack.dev/reference/methods/auth.test); the same ``user_id``
  is refused (``ObserverIsSender``).
- Errors (https://docs.slack.dev/apis/web-api/rate-limits and the methods'
  error lists): HTTP 429 ``ratelimited`` with Retry-After is honoured;
  ``invalid_auth``, ``channel_not_found``, ``not_in_channel`` and the rest are
  mapped by :func:`slack_verdict`.
- Without ``observer_token`` the probe cannot see arrival: accepted only.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

import aiohttp
from pydantic import Field
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from probes.base import (
    Accepted,
    ChannelFault,
    ChannelRejected,
    ChannelSettings,
    ChannelUnreachable,
    Clock,
    DrillMessage,
    ProbeEnv,
)
from probes.chat.base import (
    ChatProbe,
    ChatSettings,
    Throttle,
    as_observer_fault,
    both,
    foreign_answer,
    retry_after_seconds,
)
from probes.faultcodes import transport_code
from probes.settings import Duration, SecretRef
from probes.sim.base import Simulator

if TYPE_CHECKING:
    from probes.preflight import PreflightReport

__all__ = ["SlackProbe", "SlackSettings", "api_error_verdict", "history_oldest", "slack_verdict"]

BASE_URL = "https://slack.com/api/"

_REASONS = {
    "invalid_auth": ("トークンが無効です", "token refused"),
    "not_authed": ("トークンがありません", "no token sent"),
    "account_inactive": ("アカウントが無効化されています", "account deactivated"),
    "token_revoked": ("トークンが失効しています", "token revoked"),
    "token_expired": ("トークンの期限切れです", "token expired"),
    "channel_not_found": ("チャンネルが見つかりません", "channel not found"),
    "not_in_channel": (
        "ボットがチャンネルに参加していません（招待してください）",
        "the bot is not in the channel — invite it",
    ),
    "is_archived": ("チャンネルがアーカイブされています", "channel archived"),
    "missing_scope": ("権限（スコープ）が不足しています", "missing scope"),
    "restricted_action": ("ワークスペースの設定で投稿が制限されています", "posting restricted"),
}
_TEMPORARY = frozenset({"internal_error", "fatal_error", "service_unavailable", "request_timeout"})


class SlackSettings(ChatSettings):
    bot_token: SecretRef = Field(
        description="送信するボットのトークン（xoxb-…, chat:write） / the sending bot's token (xoxb-…, chat:write)"
    )
    observer_token: SecretRef | None = Field(
        default=None,
        description="職員に近いアカウントの読み取りトークン（channels:history）。省略すると「受付のみ」 / a staff-like reader's token (channels:history); without it: accepted only",
    )
    channel: str = Field(
        pattern=r"^[CGD][A-Z0-9]{6,}$", description="チャンネル ID（C…） / the channel id (C…)"
    )
    base_url: str = Field(
        default=BASE_URL, pattern=r"^https?://", description="Web API の URL / the Web API's URL"
    )
    poll_interval: Duration = Field(
        default=1.5, description="履歴を読む間隔 / how often the history is read"
    )
    # Each read reaches this far behind the oldest message still awaited (and the newest
    # seen): a message may become readable after a later one, and the service's clock
    # may differ from ours.
    lookback: Duration = Field(
        default=30.0, description="読み返す幅 / how far back each read reaches"
    )


def slack_verdict(status: int, error: str | None, headers: Any = None) -> Throttle | ChannelFault:
    """What a failed Slack Web API call means for the send (a Throttle, or the fault).

    >>> slack_verdict(429, "ratelimited", {"Retry-After": "3"})
    Throttle(seconds=3.0, code='ratelimited')
    >>> slack_verdict(200, "not_in_channel").code
    'not_in_channel'
    """
    code = error or f"HTTP {status}"
    if status == 429 or code in ("ratelimited", "rate_limited"):
        return Throttle(retry_after_seconds(headers, 1.0), code="ratelimited")
    if status in (502, 503, 504) or code == "service_unavailable":
        return ChannelUnreachable(
            both("Slack が応答しません", "Slack unavailable", code), code=code
        )
    ja, en = _REASONS.get(code, ("Slack が拒否しました", "Slack refused"))
    temporary = code in _TEMPORARY or status >= 500
    return ChannelRejected(both(ja, en, code), code=code, temporary=temporary)


def api_error_verdict(exc: SlackApiError) -> Throttle | ChannelFault:
    """:func:`slack_verdict` of a failed call, or unreachable when the answer was not Slack's.

    slack_sdk raises SlackApiError for an ``ok: false`` answer, and also for one it could
    not read (an HTML page: empty data; a body that is not JSON: the raw aiohttp response).
    """
    resp = exc.response
    data = getattr(resp, "data", None)
    status = int(getattr(resp, "status_code", None) or getattr(resp, "status", 0) or 0)
    if not isinstance(data, dict) or "ok" not in data:
        headers = getattr(resp, "headers", None) or {}
        text = data if isinstance(data, str) else str(exc).split("\n", 1)[0]
        return foreign_answer("Slack", status, text, headers) or ChannelUnreachable(
            both("Slack 以外からの応答です", "the answer was not from Slack", f"HTTP {status}"),
            code="not_json",
        )
    return slack_verdict(status, data.get("error"), getattr(resp, "headers", None))


def history_oldest(
    opened_wall: float,
    newest_seen: Decimal | None,
    lookback: float,
    awaited_since: float | None = None,
) -> str:
    """The ``oldest`` for the next conversations.history call (a Slack ts string).

    ``lookback`` before the oldest message still awaited (*awaited_since*, wall),
    or behind the newest message seen, whichever reaches further back — never
    before the drill began watching. Following only the newest seen would skip
    an older message that becomes readable after a later one.

    >>> history_oldest(1700000000.0, Decimal("1700000100.000200"), 30.0)
    '1700000070.000200'
    >>> history_oldest(1700000000.0, Decimal("1700000100.000200"), 30.0, 1700000050.0)
    '1700000020.000000'
    >>> history_oldest(1700000000.0, None, 30.0)
    '1699999999.000000'
    """
    floor = Decimal(f"{opened_wall - 1.0:.6f}")
    back = Decimal(str(lookback))
    starts = []
    if newest_seen is not None:
        starts.append(newest_seen - back)
    if awaited_since is not None:
        starts.append(Decimal(f"{awaited_since:.6f}") - back)
    if not starts:
        return f"{floor:.6f}"
    return f"{max(floor, min(starts)):.6f}"


def _ts(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


class SlackProbe(ChatProbe):
    """Posts as a bot; confirms through a reader's conversations.history."""

    kind = "slack"
    summary = (
        "Slack: 訓練用ボットが chat.postMessage で投稿し、閲覧用トークンの conversations.history で確認",
        "Slack: chat.postMessage as the drill bot, conversations.history as a reader",
    )
    service = "Slack"
    observer_setting = "observer_token"
    Settings = SlackSettings
    settings: SlackSettings

    def __init__(self, channel_id: str, settings: ChannelSettings, env: ProbeEnv) -> None:
        super().__init__(channel_id, settings, env)
        self._newest: Decimal | None = None
        self._clients: dict[str, AsyncWebClient] = {}  # one per token, for the probe's life

    @classmethod
    def simulator(cls) -> type[Simulator]:
        from probes.sim.slack import SlackSimulator

        return SlackSimulator

    def look_interval(self) -> float:
        return self.settings.poll_interval

    async def preflight(self) -> PreflightReport:
        """Check the channel without posting (probes.chat.preflight): auth.test and conversations.info of both tokens."""
        from probes.chat.checks import SlackCheck
        from probes.chat.preflight import check_chat

        return await check_chat(self, SlackCheck(self))

    def _client(self, token: SecretRef) -> AsyncWebClient:
        session = self.env.http()
        value = token.reveal()
        client = self._clients.get(value)
        if client is None or client.session is not session:
            client = AsyncWebClient(
                token=value,
                base_url=self.settings.base_url,
                session=session,
                timeout=int(self.settings.request_timeout) or 1,
                retry_handlers=[],  # rate limits are honoured (and counted) by the probe itself
            )
            # slack_sdk reads HTTPS_PROXY/HTTP_PROXY itself and passes it with every
            # request, ignoring NO_PROXY and the drill session's trust_env=False: loopback
            # simulators (and every other kind) are reached directly, so Slack is too.
            client.proxy = None
            self._clients[value] = client
        return client

    async def _call(self, token: SecretRef, method: str, **kw: Any) -> dict[str, Any]:
        """One Web API call; SlackApiError carries the failed response."""
        client = self._client(token)
        calls = {
            "chat.postMessage": client.chat_postMessage,
            "conversations.history": client.conversations_history,
            "auth.test": client.auth_test,
            "conversations.info": client.conversations_info,  # preflight (probes.chat.preflight)
        }
        call = calls[method]
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can lose a cancellation.
            async with asyncio.timeout(self.settings.request_timeout):
                resp = await call(**kw)
        except aiohttp.ClientPayloadError as exc:
            raise self.cut_off(exc) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ChannelUnreachable(
                both("Slack に接続できません", "cannot reach Slack", exc.__class__.__name__),
                code=transport_code(exc),
            ) from exc
        return dict(resp.data) if isinstance(resp.data, dict) else {}

    async def _attempt(self, message: DrillMessage) -> Accepted | Throttle:
        s = self.settings
        try:
            data = await self._call(
                s.bot_token,
                "chat.postMessage",
                channel=s.channel,
                text=message.render(),
                unfurl_links=False,
                unfurl_media=False,
            )
        except SlackApiError as exc:
            verdict = api_error_verdict(exc)
            if isinstance(verdict, Throttle):
                return verdict
            raise verdict from exc
        except SlackClientError as exc:
            reason = both("Slack クライアントの異常", "Slack client error", exc.__class__.__name__)
            raise ChannelRejected(reason, code="client") from exc
        return Accepted(at=Clock.monotonic(), provider_id=str(data.get("ts")), detail="ok")

    async def _identity(self, role: str) -> str | None:
        s = self.settings
        token = s.bot_token if role == "sender" else s.observer_token
        if token is None:
            return None
        try:
            data = await self._call(token, "auth.test")
        except (SlackClientError, ChannelUnreachable):
            return None  # the send or the first look says why, in its own words
        user = data.get("user_id")
        return str(user) if user else None

    async def _look(self) -> float | None:
        s = self.settings
        assert s.observer_token is not None
        oldest = history_oldest(self.opened_wall, self._newest, s.lookback, self.awaited_since())
        cursor: str | None = None
        seen_at = Clock.monotonic()
        for _page in range(20):
            try:
                data = await self._call(
                    s.observer_token,
                    "conversations.history",
                    channel=s.channel,
                    oldest=oldest,
                    inclusive=True,
                    limit=200,
                    cursor=cursor,
                )
            except SlackApiError as exc:
                verdict = api_error_verdict(exc)
                if isinstance(verdict, Throttle):
                    return self.look_failed(verdict.seconds)
                if isinstance(verdict, ChannelUnreachable):
                    raise verdict from exc
                raise as_observer_fault(verdict) from exc
            seen_at = Clock.monotonic()
            bound = self.poll_bound(seen_at)
            for msg in data.get("messages") or []:
                text = msg.get("text") if isinstance(msg, dict) else None
                if isinstance(text, str):
                    self.record_text(text, at=seen_at, bound=bound, ts=msg.get("ts"))
                    ts = _ts(msg.get("ts"))
                    if ts is not None and (self._newest is None or ts > self._newest):
                        self._newest = ts
            cursor = (data.get("response_metadata") or {}).get("next_cursor") or None
            if not data.get("has_more") or not cursor:
                break
        self._parked.set()
        return None
