"""LINE WORKS channel (API 2.0): a bot posts to a message room; monitoring reads it.

Registry example::

    - id: chat-lw
      kind: lineworks
      app:                                    # Developer Console app, service account (JWT)
        client_id: 0a1b2c…
        client_secret: env:SHIBUYA_LW_SECRET
        service_account: abcde.serviceaccount@example.lg.jp
        private_key: file:/etc/tsunagari/lineworks-private.key
      bot_id: 2000001
      channel_id: 753449a5-7716-39e4-3de9-770a97f1a5f5
      observer: {interval: 10s}               # optional; the app needs monitoring.read

- Access token: a service-account JWT (RS256, ``iss`` = client id, ``sub`` =
  service account, ``iat``/``exp``) exchanged at the token endpoint with
  ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer``
  (https://developers.worksmobile.com/en/docs/auth-jwt).
- Sending: ``POST /bots/{botId}/channels/{channelId}/messages`` with
  ``{"content": {"type": "text", "text": …}}`` → 201
  (https://developers.worksmobile.com/en/docs/bot-channel-message-send).
- Confirming: the bot API gives a bot no way to read a room back. The only
  documented read of message content is the administrator's monitoring
  download, ``GET /monitoring/message-contents/download`` (scope
  ``monitoring.read``, a 302 to a CSV file;
  https://developers.worksmobile.com/en/docs/content-log-download). It is
  limited to 10 requests a minute and rejects concurrent requests
  (https://developers.worksmobile.com/en/docs/rate-limits), so the observer
  polls it every ``interval`` (≥ 6 s on the real service) and that interval is
  its error bound. Without ``observer`` the probe is *accepted only* and says so.
- The monitoring window runs from just before the drill began watching to a
  minute ahead, every look: a message readable late is never outside it.
- Observer = sender does not apply: the monitoring download is the tenant's
  content log, not what the sending bot sees in the room (and a bot has no
  who-am-I call).
- Errors: 429 ``TOO_MANY_REQUESTS`` (``{"code", "description"}``) with a
  ``rateLimit-reset`` header; an expired access token is renewed once.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import jwt
from cryptography.hazmat.primitives import serialization
from pydantic import Field

from probes.base import (
    Accepted,
    ChannelRejected,
    ChannelSettings,
    ChannelUnreachable,
    DrillMessage,
    ObserverFault,
    ProbeEnv,
)
from probes.chat.base import (
    AccessTokens,
    ChatProbe,
    ChatSettings,
    Throttle,
    Verdict,
    as_observer_fault,
    both,
    foreign_answer,
    retry_after_seconds,
)
from probes.faultcodes import http_code
from probes.settings import Duration, SecretRef
from probes.sim.base import Simulator

if TYPE_CHECKING:
    from probes.preflight import PreflightReport

__all__ = [
    "LineWorksProbe",
    "LineWorksSettings",
    "lineworks_verdict",
    "load_private_key",
    "monitoring_window",
    "service_account_jwt",
]

API_URL = "https://www.worksapis.com/v1.0"
AUTH_URL = "https://auth.worksmobile.com/oauth2/v2.0/token"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
JST = timezone(timedelta(hours=9))


class WorksApp(ChannelSettings):
    """A Developer Console app with a service account (JWT authentication)."""

    client_id: str = Field(
        description="Developer Console のクライアント ID / the Developer Console client id"
    )
    client_secret: SecretRef = Field(description="クライアントシークレット / the client secret")
    service_account: str = Field(description="サービスアカウント / the service account")
    private_key: SecretRef = Field(
        description="サービスアカウントの秘密鍵（PEM） / the service account's private key (PEM)"
    )


class LineWorksObserver(ChannelSettings):
    """Reads message content through monitoring (the app, or another one, needs monitoring.read)."""

    app: WorksApp | None = Field(
        default=None,
        description="読み取りに使う別のアプリ（省略時は送信アプリ、monitoring.read が必要） / another app for reading (default: the sending app; needs monitoring.read)",
    )  # None: the sending app's credentials
    interval: Duration = Field(default=10.0, description="読む間隔 / how often messages are read")


class LineWorksSettings(ChatSettings):
    app: WorksApp = Field(description="送信に使うアプリ / the app that sends")
    bot_id: int | str = Field(description="ボット ID / the bot id")
    channel_id: str = Field(
        min_length=1, description="トークルーム（チャンネル）ID / the message room (channel) id"
    )
    observer: LineWorksObserver | None = Field(
        default=None,
        description="着信を確かめる読み取り側。省略すると「受付のみ」 / the reader that confirms arrival; without it: accepted only",
    )
    api_url: str = Field(
        default=API_URL, pattern=r"^https?://", description="API の URL / the API URL"
    )
    auth_url: str = Field(
        default=AUTH_URL, pattern=r"^https?://", description="認証の URL / the authentication URL"
    )


# --------------------------------------------------------------------------- pure parts


def load_private_key(pem: str) -> Any:
    """The service account's RSA key from PEM (ValueError if it is not one).

    The key comes from the operator's own configuration, so the costly RSA
    consistency check (tens of milliseconds on the event loop) is skipped.
    """
    return serialization.load_pem_private_key(
        pem.encode(), password=None, unsafe_skip_rsa_key_validation=True
    )


def service_account_jwt(client_id: str, service_account: str, key: Any, now: float) -> str:
    """The signed assertion for the token request (valid for an hour)."""
    claims = {"iss": client_id, "sub": service_account, "iat": int(now), "exp": int(now) + 3600}
    return jwt.encode(claims, key, algorithm="RS256")


def lineworks_verdict(status: int, text: str, headers: Any = None) -> Verdict:
    """What a LINE WORKS API 2.0 answer to a bot message means.

    >>> lineworks_verdict(429, '{"code": "TOO_MANY_REQUESTS"}', {"rateLimit-reset": "12"})
    Throttle(seconds=12.0, code='TOO_MANY_REQUESTS')
    >>> lineworks_verdict(201, "") is None
    True
    """
    if 200 <= status < 300:
        return None
    try:
        body = json.loads(text) if text else {}
    except ValueError:
        body = {}
    code = http_code(str(body.get("code") or "") if isinstance(body, dict) else "", status)
    if status == 429:
        reset = (headers or {}).get("rateLimit-reset")
        return Throttle(retry_after_seconds({"Retry-After": reset}, 1.0), code="TOO_MANY_REQUESTS")
    if status in (502, 503, 504):
        return ChannelUnreachable(
            both("LINE WORKS が応答しません", "LINE WORKS unavailable", code), code=code
        )
    if status == 401:
        ja, en = "アクセストークンが拒否されました", "access token refused"
    elif status == 403:
        ja, en = "ボットにこのトークルームへの送信権限がありません", "the bot may not post here"
    elif status == 404:
        ja, en = "ボットまたはトークルームが見つかりません", "bot or message room not found"
    else:
        ja, en = "LINE WORKS が拒否しました", "LINE WORKS refused the message"
    return ChannelRejected(both(ja, en, code), code=code, temporary=status >= 500)


def monitoring_window(opened_wall: float, now_wall: float) -> dict[str, str]:
    """startTime/endTime for the monitoring download (JST, ``YYYY-MM-DDThh:mm:ss+09:00``).

    >>> monitoring_window(1700000000.0, 1700000030.0)["startTime"]
    '2023-11-15T07:13:19+09:00'
    """

    def fmt(wall: float) -> str:
        return datetime.fromtimestamp(wall, JST).strftime("%Y-%m-%dT%H:%M:%S+09:00")

    return {"startTime": fmt(opened_wall - 1.0), "endTime": fmt(now_wall + 60.0)}


# --------------------------------------------------------------------------- probe


class LineWorksProbe(ChatProbe):
    """A bot posts to a message room; the monitoring download confirms (if allowed)."""

    kind = "lineworks"
    summary = (
        "LINE WORKS（API 2.0）: ボットがトークルームに投稿し、モニタリング API で読み取って確認",
        "LINE WORKS (API 2.0): a bot posts to a message room; monitoring reads it",
    )
    service = "LINE WORKS"
    Settings = LineWorksSettings
    settings: LineWorksSettings

    def __init__(self, channel_id: str, settings: ChannelSettings, env: ProbeEnv) -> None:
        super().__init__(channel_id, settings, env)
        self._tokens = AccessTokens()
        self._keys: dict[str, Any] = {}  # client id → loaded private key

    @classmethod
    def simulator(cls) -> type[Simulator]:
        from probes.sim.lineworks import LineWorksSimulator

        return LineWorksSimulator

    def look_interval(self) -> float:
        return self.settings.observer.interval if self.settings.observer else 0.0

    async def preflight(self) -> PreflightReport:
        """Check the channel without posting (probes.chat.preflight): the tokens, the bot and one monitoring request."""
        from probes.chat.checks import LineWorksCheck
        from probes.chat.preflight import check_chat

        return await check_chat(self, LineWorksCheck(self))

    async def _token(self, role: str, app: WorksApp, scope: str) -> str:
        cached = self._tokens.get(role)
        if cached is not None:
            return cached
        try:
            key = self._keys.get(app.client_id)
            if key is None:
                key = self._keys[app.client_id] = load_private_key(app.private_key.reveal())
            assertion = service_account_jwt(app.client_id, app.service_account, key, time.time())
        except (ValueError, TypeError, jwt.PyJWTError) as exc:
            reason = both(
                "秘密鍵を読み込めません", "the private key cannot be used", exc.__class__.__name__
            )
            fault = self._auth_fault(role, reason, "private_key")
            raise fault from None
        form = {
            "assertion": assertion,
            "grant_type": JWT_GRANT,
            "client_id": app.client_id,
            "client_secret": app.client_secret.reveal(),
            "scope": scope,
        }
        status, text, _, _at = await self.fetch("POST", self.settings.auth_url, data=form)
        try:
            body = json.loads(text)
        except ValueError:
            body = {}
        if status != 200 or not isinstance(body, dict) or "access_token" not in body:
            code = http_code(str(body.get("error") or "") if isinstance(body, dict) else "", status)
            reason = both(
                "認証サーバーがサービスアカウントを拒否しました",
                "the auth server refused the service account",
                code,
            )
            raise self._auth_fault(role, reason, code)
        return self._tokens.put(role, str(body["access_token"]), body.get("expires_in"))

    @staticmethod
    def _auth_fault(role: str, reason: str, code: str) -> ChannelRejected | ObserverFault:
        refusal = ChannelRejected(reason, code=code)
        return as_observer_fault(refusal) if role == "observer" else refusal

    # ------------------------------------------------------------------ send

    async def _attempt(self, message: DrillMessage) -> Accepted | Throttle:
        s = self.settings
        token = await self._token("sender", s.app, "bot")
        url = f"{s.api_url}/bots/{quote(str(s.bot_id))}/channels/{quote(s.channel_id)}/messages"
        body = {"content": {"type": "text", "text": message.render()}}
        status, text, headers, answered = await self.fetch("POST", url, token=token, json=body)
        if status == 401:
            self._tokens.drop("sender")  # expired early: renew once, then judge
            token = await self._token("sender", s.app, "bot")
            status, text, headers, answered = await self.fetch("POST", url, token=token, json=body)
        verdict = lineworks_verdict(status, text, headers)
        if verdict is None:  # 201 with an empty body; never an HTML page
            verdict = foreign_answer("LINE WORKS", status, text, headers, json_body=False)
        if verdict is None:
            return Accepted(at=answered, detail=f"HTTP {status}")
        if isinstance(verdict, Throttle):
            return verdict
        raise verdict

    # ------------------------------------------------------------------ observe

    async def _look(self) -> float | None:
        s = self.settings
        assert s.observer is not None
        fresh = self._tokens.get("observer") is None
        token = await self._token("observer", s.observer.app or s.app, "monitoring.read")
        params = {
            **monitoring_window(self.opened_wall, time.time()),
            "botMessageFilterType": "only",
        }
        url = f"{s.api_url}/monitoring/message-contents/download"
        status, text, headers, seen_at = await self.fetch(
            "GET", url, token=token, params=params, allow_redirects=False
        )
        if status in (301, 302, 303, 307) and headers.get("Location"):
            # The file lives behind the redirect; it is fetched with the same token.
            status, text, headers, seen_at = await self.fetch(
                "GET", headers["Location"], token=token
            )
        verdict = lineworks_verdict(status, text, headers)
        if verdict is None:  # the content log is a CSV file, never an HTML page
            verdict = foreign_answer("LINE WORKS", status, text, headers, json_body=False)
        if isinstance(verdict, Throttle):
            return self.look_failed(max(verdict.seconds, self.look_interval()))
        if isinstance(verdict, ChannelUnreachable):
            raise verdict
        if verdict is not None:
            if status == 401 and not fresh:
                self._tokens.drop("observer")  # expired early: renew and look again
                return 0.0
            raise as_observer_fault(verdict)
        self.record_text(text, at=seen_at, bound=self.poll_bound(seen_at))
        self._parked.set()
        return None
