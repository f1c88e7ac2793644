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
  1 a minute for non-Marketplace commercially distributed apps — so the poll
  interval is the observer's error bound; it is reported with each sighting.
- Errors (https://docs.slack.dev/apis/web-api/rate-limits and the methods'
  error lists): HTTP 429 ``ratelimited`` with Retry-After is honoured;
  ``invalid_auth``, ``channel_not_found``, ``not_in_channel`` and the rest are
  mapped by :func:`slack_verdict`.
- Without ``observer_token`` the probe cannot see arrival: accepted only.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal, InvalidOperation
from typing import Any

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
    ObserverFault,
    ProbeEnv,
)
from probes.chat.base import ChatProbe, ChatSettings, Throttle, retry_after_seconds
from probes.settings import Duration, SecretRef
from probes.sim.base import Simulator

__all__ = ["SlackProbe", "SlackSettings", "history_oldest", "slack_verdict"]

BASE_URL = "https://slack.com/api/"

_AUTH_ERRORS = frozenset(
    {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"}
)
_REASONS = {
    "invalid_auth": "トークンが無効です / token refused (invalid_auth)",
    "not_authed": "トークンがありません / no token sent (not_authed)",
    "account_inactive": "アカウントが無効化されています / account deactivated (account_inactive)",
    "token_revoked": "トークンが失効しています / token revoked (token_revoked)",
    "token_expired": "トークンの期限切れです / token expired (token_expired)",
    "channel_not_found": "チャンネルが見つかりません / channel not found (channel_not_found)",
    "not_in_channel": "ボットがチャンネルに参加していません（招待してください） / "
    "the bot is not in the channel — invite it (not_in_channel)",
    "is_archived": "チャンネルがアーカイブされています / channel archived (is_archived)",
    "missing_scope": "権限（スコープ）が不足しています / missing scope (missing_scope)",
    "restricted_action": "ワークスペースの設定で投稿が制限されています / posting restricted "
    "(restricted_action)",
}
_TEMPORARY = frozenset({"internal_error", "fatal_error", "service_unavailable", "request_timeout"})


class SlackSettings(ChatSettings):
    bot_token: SecretRef
    observer_token: SecretRef | None = None
    channel: str = Field(pattern=r"^[CGD][A-Z0-9]{6,}$")
    base_url: str = Field(default=BASE_URL, pattern=r"^https?://")
    poll_interval: Duration = 1.5
    # Re-read this far back each poll: a message may become readable after a later one.
    lookback: Duration = 30.0


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
        return ChannelUnreachable(f"Slack が応答しません / Slack unavailable ({code})")
    reason = _REASONS.get(code, f"Slack が拒否しました / Slack refused ({code})")
    return ChannelRejected(
        f"Slack: {reason}", code=code, temporary=code in _TEMPORARY or status >= 500
    )


def history_oldest(opened_wall: float, newest_seen: Decimal | None, lookback: float) -> str:
    """The ``oldest`` for the next conversations.history call (a Slack ts string).

    >>> history_oldest(1700000000.0, Decimal("1700000100.000200"), 30.0)
    '1700000070.000200'
    >>> history_oldest(1700000000.0, None, 30.0)
    '1699999999.000000'
    """
    floor = Decimal(f"{opened_wall - 1.0:.6f}")
    if newest_seen is None:
        return f"{floor:.6f}"
    return f"{max(floor, newest_seen - Decimal(str(lookback))):.6f}"


def _ts(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


class SlackProbe(ChatProbe):
    """Posts as a bot; confirms through a reader's conversations.history."""

    kind = "slack"
    service = "Slack"
    observer_setting = "observer_token"
    Settings = SlackSettings
    settings: SlackSettings

    def __init__(self, channel_id: str, settings: ChannelSettings, env: ProbeEnv) -> None:
        super().__init__(channel_id, settings, env)
        self._newest: Decimal | None = None

    @classmethod
    def simulator(cls) -> type[Simulator]:
        from probes.sim.slack import SlackSimulator

        return SlackSimulator

    def look_interval(self) -> float:
        return self.settings.poll_interval

    def _client(self, token: SecretRef) -> AsyncWebClient:
        return AsyncWebClient(
            token=token.reveal(),
            base_url=self.settings.base_url,
            session=self.env.http(),
            timeout=int(self.settings.request_timeout) or 1,
            retry_handlers=[],  # rate limits are honoured (and counted) by the probe itself
        )

    async def _call(self, token: SecretRef, method: str, **kw: Any) -> dict[str, Any]:
        """One Web API call; SlackApiError carries the failed response."""
        client = self._client(token)
        post = method == "chat.postMessage"
        call = client.chat_postMessage if post else client.conversations_history
        try:
            resp = await asyncio.wait_for(call(**kw), self.settings.request_timeout)
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise ChannelUnreachable(
                f"Slack に接続できません / Slack unreachable: {exc.__class__.__name__}"
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
            verdict = slack_verdict(
                exc.response.status_code, exc.response.get("error"), exc.response.headers
            )
            if isinstance(verdict, Throttle):
                return verdict
            raise verdict from exc
        except SlackClientError as exc:
            raise ChannelRejected(f"Slack: {exc.__class__.__name__}", code="client") from exc
        return Accepted(at=Clock.monotonic(), provider_id=str(data.get("ts")), detail="ok")

    async def _look(self) -> float | None:
        s = self.settings
        assert s.observer_token is not None
        oldest = history_oldest(self.opened_wall, self._newest, s.lookback)
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
                verdict = slack_verdict(
                    exc.response.status_code, exc.response.get("error"), exc.response.headers
                )
                if isinstance(verdict, Throttle):
                    return verdict.seconds
                if isinstance(verdict, ChannelUnreachable):
                    raise verdict from exc
                raise ObserverFault(
                    f"観測用トークンで履歴を読めません / observer cannot read history: "
                    f"{verdict.reason}",
                    code=verdict.code,
                ) from exc
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
