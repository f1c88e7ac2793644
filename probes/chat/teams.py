"""Microsoft Teams channel: post through Workflows or Graph, confirm through Graph.

Registry example (Workflows sender, Graph observer)::

    - id: chat-teams
      kind: teams
      workflow_url: env:MEGURO_TEAMS_WORKFLOW     # the URL carries a signature: a secret
      team_id: 5b2c…
      channel_id: "19:abc…@thread.tacv2"
      observer:                                   # app-only, ChannelMessage.Read.All
        tenant: contoso.onmicrosoft.com
        client_id: 6731de76-…
        client_secret: env:MEGURO_GRAPH_SECRET

or, instead of ``workflow_url``, a delegated Graph sender (a drill user's
refresh token with ``ChannelMessage.Send``; Graph does not let apps post
ordinary channel messages app-only)::

      graph_sender: {tenant: …, client_id: …, refresh_token: env:MEGURO_DRILL_REFRESH}

- Workflows: the "Send webhook alerts to a channel" template's HTTP trigger
  takes an Adaptive Card message and answers 202 Accepted
  (https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-connectors/how-to/add-incoming-webhook).
  A wrong signature is 401 ``DirectApiInvalidAuthorizationSignature``, a
  deleted or disabled flow 404 ``WorkflowNotFound`` (Logic Apps request-trigger
  errors), throttling 429 with Retry-After.
- Graph send: ``POST /teams/{id}/channels/{id}/messages``
  (https://learn.microsoft.com/en-us/graph/api/channel-post-messages).
- Graph observer: client-credentials token
  (https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-client-creds-grant-flow),
  then the channel's message delta — a full round once, then the
  ``@odata.deltaLink`` polled every ``interval``
  (https://learn.microsoft.com/en-us/graph/api/chatmessage-delta). Throttling
  is 429 with Retry-After (https://learn.microsoft.com/en-us/graph/throttling).
- The delta is change tracking, not a time window: a message that becomes
  readable after a later one is in the next round all the same.
- Observer = sender cannot happen here: the observer is an app-only identity
  (client credentials) and the sender the Workflows app or a delegated user,
  so there is no who-am-I to compare.
- Without an observer the probe cannot see arrival: accepted only.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from pydantic import Field, model_validator

from probes.base import (
    Accepted,
    ChannelRejected,
    ChannelSettings,
    ChannelUnreachable,
    DrillMessage,
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
    "GraphApp",
    "GraphObserver",
    "GraphSender",
    "TeamsProbe",
    "TeamsSettings",
    "adaptive_card",
    "graph_verdict",
    "token_refusal",
    "workflow_verdict",
]

GRAPH_URL = "https://graph.microsoft.com/v1.0"
LOGIN_URL = "https://login.microsoftonline.com"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
SEND_SCOPE = "https://graph.microsoft.com/ChannelMessage.Send offline_access"


class GraphApp(ChannelSettings):
    """An Entra ID app registration."""

    tenant: str = Field(
        description="テナント（contoso.onmicrosoft.com か ID） / the tenant (contoso.onmicrosoft.com or its id)"
    )
    client_id: str = Field(description="アプリ（クライアント）ID / the app (client) id")
    client_secret: SecretRef | None = Field(
        default=None, description="クライアントシークレット / the client secret"
    )


class GraphSender(GraphApp):
    """A drill user's delegated grant (refresh token with ChannelMessage.Send)."""

    refresh_token: SecretRef = Field(
        description="訓練ユーザーのリフレッシュトークン（ChannelMessage.Send） / the drill user's refresh token (ChannelMessage.Send)"
    )


class GraphObserver(GraphApp):
    """App-only reader (ChannelMessage.Read.All)."""

    client_secret: SecretRef = Field(
        description="クライアントシークレット（ChannelMessage.Read.All） / the client secret (ChannelMessage.Read.All)"
    )
    interval: Duration = Field(default=5.0, description="読む間隔 / how often the channel is read")


class TeamsSettings(ChatSettings):
    workflow_url: SecretRef | None = Field(
        default=None,
        description="Workflows の HTTP トリガー URL（署名入りなので秘密情報） / the Workflows HTTP trigger URL (it carries a signature: a secret)",
    )
    graph_sender: GraphSender | None = Field(
        default=None,
        description="workflow_url の代わりに Graph で送る訓練ユーザー / instead of workflow_url: a drill user sending through Graph",
    )
    team_id: str | None = Field(
        default=None,
        description="チーム ID（Graph を使うとき必須） / the team id (needed with Graph)",
    )
    channel_id: str | None = Field(
        default=None,
        description="チャネル ID（19:…@thread.tacv2） / the channel id (19:…@thread.tacv2)",
    )
    observer: GraphObserver | None = Field(
        default=None,
        description="Graph で読むアプリ。省略すると「受付のみ」 / an app that reads through Graph; without it: accepted only",
    )
    graph_url: str = Field(
        default=GRAPH_URL, pattern=r"^https?://", description="Graph の URL / the Graph URL"
    )
    login_url: str = Field(
        default=LOGIN_URL,
        pattern=r"^https?://",
        description="Entra ID のログイン URL / the Entra ID login URL",
    )

    @model_validator(mode="after")
    def _check(self) -> TeamsSettings:
        if (self.workflow_url is None) == (self.graph_sender is None):
            raise ValueError("give exactly one sender: workflow_url or graph_sender")
        if (self.graph_sender or self.observer) and not (self.team_id and self.channel_id):
            raise ValueError("Graph (graph_sender or observer) needs team_id and channel_id")
        return self


# --------------------------------------------------------------------------- pure parts


def adaptive_card(text: str) -> dict[str, Any]:
    """The message body the Workflows "post to a channel" template expects."""
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [{"type": "TextBlock", "text": text, "wrap": True}],
    }
    attachment = {
        "contentType": "application/vnd.microsoft.card.adaptive",
        "contentUrl": None,
        "content": card,
    }
    return {"type": "message", "attachments": [attachment]}


def _error_code(text: str) -> str:
    try:
        body = json.loads(text)
    except ValueError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("code", ""))
    return str(error or "")


def workflow_verdict(status: int, text: str, headers: Any = None) -> Verdict:
    """What the Workflows trigger's answer means.

    >>> workflow_verdict(202, "") is None
    True
    >>> workflow_verdict(401, '{"error": {"code": "DirectApiInvalidAuthorizationSignature"}}').code
    'DirectApiInvalidAuthorizationSignature HTTP 401'
    """
    if 200 <= status < 300:
        return None
    if status == 429:
        return Throttle(retry_after_seconds(headers, 1.0), code="429")
    code = http_code(_error_code(text), status)
    if status in (502, 503, 504):
        return ChannelUnreachable(
            both("Workflows が応答しません", "Workflows unavailable", code), code=code
        )
    if status in (401, 403):
        ja = "Workflows の URL の署名が無効か、呼び出しが許可されていません"
        en = "the workflow URL's signature is invalid or the caller is not allowed"
    elif status == 404:
        ja, en = "ワークフローが見つからないか無効です", "the workflow is missing or turned off"
    else:
        ja, en = "Workflows が拒否しました", "Workflows refused the message"
    return ChannelRejected(both(ja, en, code), code=code, temporary=status >= 500)


def graph_verdict(status: int, text: str, headers: Any = None) -> Verdict:
    """What a Microsoft Graph answer means.

    >>> graph_verdict(429, "", {"Retry-After": "7"})
    Throttle(seconds=7.0, code='TooManyRequests')
    """
    if 200 <= status < 300:
        return None
    retry = headers.get("Retry-After") if headers is not None else None
    if status == 429 or (status == 503 and retry is not None):
        return Throttle(retry_after_seconds(headers, 1.0), code="TooManyRequests")
    code = http_code(_error_code(text), status)
    if status in (502, 503, 504):
        return ChannelUnreachable(
            both("Microsoft Graph が応答しません", "Graph unavailable", code), code=code
        )
    if status == 401:
        ja, en = "Graph のトークンが拒否されました", "Graph refused the access token"
    elif status == 403:
        ja, en = "Graph の権限が不足しています", "Graph permission missing"
    elif status == 404:
        ja, en = "チームまたはチャネルが見つかりません", "team or channel not found"
    else:
        ja, en = "Graph が拒否しました", "Graph refused the request"
    return ChannelRejected(both(ja, en, code), code=code, temporary=status >= 500)


def token_refusal(status: int, text: str) -> tuple[str, str]:
    """(code, reason) for a refused token request (RFC 6749 §5.2 ``error``)."""
    try:
        body = json.loads(text)
    except ValueError:
        body = {}
    code = http_code(str(body.get("error") or "") if isinstance(body, dict) else "", status)
    reason = both("Entra ID が認証情報を拒否しました", "Entra ID refused the credentials", code)
    return code, reason


def _iso(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --------------------------------------------------------------------------- probe


class TeamsProbe(ChatProbe):
    """Posts through Workflows (or Graph); sees the message in Graph's channel delta."""

    kind = "teams"
    summary = (
        "Microsoft Teams: Workflows か Graph で投稿し、Graph で着信を確認",
        "Microsoft Teams: post through Workflows or Graph, confirm through Graph",
    )
    service = "Teams/Graph"
    Settings = TeamsSettings
    settings: TeamsSettings

    def __init__(self, channel_id: str, settings: ChannelSettings, env: ProbeEnv) -> None:
        super().__init__(channel_id, settings, env)
        self._tokens = AccessTokens()
        self._refresh: str | None = None  # the sender's refresh token, once rotated
        self._delta_link: str | None = None

    @classmethod
    def simulator(cls) -> type[Simulator]:
        from probes.sim.teams import TeamsSimulator

        return TeamsSimulator

    def look_interval(self) -> float:
        return self.settings.observer.interval if self.settings.observer else 0.0

    async def preflight(self) -> PreflightReport:
        """Check the channel without posting (probes.chat.preflight): the Graph tokens and one empty read of the channel."""
        from probes.chat.checks import TeamsCheck
        from probes.chat.preflight import check_chat

        return await check_chat(self, TeamsCheck(self))

    def _channel_path(self) -> str:
        s = self.settings
        return f"{s.graph_url}/teams/{quote(s.team_id or '')}/channels/{quote(s.channel_id or '')}"

    # ------------------------------------------------------------------ tokens

    async def _token(self, role: str, app: GraphApp, form: dict[str, str]) -> str:
        cached = self._tokens.get(role)
        if cached is not None:
            return cached
        form = {"client_id": app.client_id, **form}
        if app.client_secret is not None:
            form["client_secret"] = app.client_secret.reveal()
        url = f"{self.settings.login_url}/{quote(app.tenant)}/oauth2/v2.0/token"
        status, text, headers, _at = await self.fetch("POST", url, data=form)
        if status != 200:
            code, reason = token_refusal(status, text)
            if role == "observer":
                raise as_observer_fault(ChannelRejected(reason, code=code))
            raise ChannelRejected(reason, code=code)
        foreign = foreign_answer("Entra ID", status, text, headers)
        if foreign is not None:
            raise foreign
        body = json.loads(text)
        if isinstance(body.get("refresh_token"), str) and role == "sender":
            self._refresh = body["refresh_token"]
        return self._tokens.put(role, str(body["access_token"]), body.get("expires_in"))

    async def _sender_token(self) -> str:
        sender = self.settings.graph_sender
        assert sender is not None
        refresh = self._refresh or sender.refresh_token.reveal()
        form = {"grant_type": "refresh_token", "refresh_token": refresh, "scope": SEND_SCOPE}
        return await self._token("sender", sender, form)

    async def _observer_token(self) -> str:
        obs = self.settings.observer
        assert obs is not None
        form = {"grant_type": "client_credentials", "scope": GRAPH_SCOPE}
        return await self._token("observer", obs, form)

    # ------------------------------------------------------------------ send

    async def _attempt(self, message: DrillMessage) -> Accepted | Throttle:
        s = self.settings
        if s.workflow_url is not None:
            status, text, headers, answered = await self.fetch(
                "POST", s.workflow_url.reveal(), json=adaptive_card(message.render())
            )
            verdict = workflow_verdict(status, text, headers)
            if verdict is None:  # 202 with an empty body, or JSON; never an HTML page
                verdict = foreign_answer("Workflows", status, text, headers, json_body=False)
        else:
            body = {"body": {"contentType": "text", "content": message.render()}}
            token = await self._sender_token()
            url = f"{self._channel_path()}/messages"
            status, text, headers, answered = await self.fetch("POST", url, token=token, json=body)
            if status == 401:
                self._tokens.drop("sender")  # expired early: the next attempt refreshes
            verdict = graph_verdict(status, text, headers)
            if verdict is None:
                verdict = foreign_answer("Microsoft Graph", status, text, headers)
        if verdict is None:
            return Accepted(at=answered, detail=f"HTTP {status}")
        if isinstance(verdict, Throttle):
            return verdict
        raise verdict

    # ------------------------------------------------------------------ observe

    async def _look(self) -> float | None:
        fresh = self._tokens.get("observer") is None
        token = await self._observer_token()
        url = self._delta_link
        params: dict[str, str] = {}
        if url is None:  # the first round: messages changed since just before the drill
            url = f"{self._channel_path()}/messages/delta"
            params = {"$filter": f"lastModifiedDateTime gt {_iso(self.opened_wall - 1.0)}"}
        for _page in range(50):
            status, text, headers, seen_at = await self.fetch(
                "GET", url, token=token, params=params
            )
            if status == 401 and not fresh:
                self._tokens.drop("observer")  # expired early: fetch a new one, look again
                return 0.0
            verdict = graph_verdict(status, text, headers)
            if isinstance(verdict, Throttle):
                return self.look_failed(verdict.seconds)
            if isinstance(verdict, ChannelUnreachable):
                raise verdict
            if verdict is not None:
                raise as_observer_fault(verdict)
            body = json.loads(text)
            bound = self.poll_bound(seen_at)
            for item in body.get("value") or []:
                self.record_text(
                    json.dumps(item, ensure_ascii=False), at=seen_at, bound=bound, id=item.get("id")
                )
            params = {}
            if isinstance(body.get("@odata.nextLink"), str):
                url = body["@odata.nextLink"]
                continue
            if isinstance(body.get("@odata.deltaLink"), str):
                self._delta_link = body["@odata.deltaLink"]
            break
        self._parked.set()
        return None
