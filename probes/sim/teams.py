"""A Microsoft Teams-shaped far end: Workflows trigger, Entra ID tokens, Graph.

One server plays three hosts (the probe's ``login_url`` and ``graph_url`` and
the workflow URL all point here). Each simulated channel has a workflow URL
with its own signature, a drill user's refresh token (Graph sender) and an
app registration for the observer. A posted message shows up in the
channel's message delta after the injected latency.
"""

from __future__ import annotations

import json
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import quote

from aiohttp import web

from probes.sim.base import SimKnobs
from probes.sim.chat import SIM_POLL_INTERVAL, ChatSimBase, SimMessage, SimRoom

__all__ = ["TeamsSimulator"]

TENANT = "sim-tenant.onmicrosoft.com"


def _graph_error(status: int, code: str, message: str, **headers: str) -> web.Response:
    # Graph error envelope: https://learn.microsoft.com/en-us/graph/errors
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    inner = {"date": now, "request-id": str(uuid.uuid4())}
    body = {"error": {"code": code, "message": message, "innerError": inner}}
    return web.json_response(body, status=status, headers=headers)


def _iso(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _parse_iso(text: str) -> float:
    parsed = datetime.strptime(text.rstrip("Z")[:23], "%Y-%m-%dT%H:%M:%S.%f")
    return parsed.replace(tzinfo=UTC).timestamp()


class TeamsSimulator(ChatSimBase):
    """Teams-shaped far end for Workflows/Graph senders and a Graph observer."""

    kind = "teams"
    credential_names = ("sig", "refresh", "sender_app", "observer_app", "observer_secret")

    def __init__(self, seed: int | None = None, host: str = "127.0.0.1") -> None:
        super().__init__(seed, host)
        self._access: dict[str, tuple[SimRoom, str]] = {}  # access token → (room, role)
        self._teams: dict[str, str] = {}  # room id → team id

    @staticmethod
    def placeholder_settings() -> dict[str, Any]:
        return {"workflow_url": "env:UNUSED_SIM_WORKFLOW_URL"}

    fault_paths: ClassVar[dict[str, str]] = {
        "send": r"(/triggers/manual/paths/invoke|/channels/[^/]+/messages)$",
        "read": r"/messages/delta$",
    }

    def expire_observer(self, channel_key: str) -> None:
        """The observer's access tokens expire (its client secret still holds: renewable)."""
        room = self.room_for(channel_key)
        for token, (owner, role) in list(self._access.items()):
            if owner is room and role == "observer":
                del self._access[token]
        self.expired(room)

    def routes(self, app: web.Application) -> None:
        # Workflows (Power Automate) HTTP trigger, "Send webhook alerts to a channel":
        # https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-connectors/how-to/add-incoming-webhook
        app.router.add_post("/workflows/{flow}/triggers/manual/paths/invoke", self._workflow)
        # Entra ID token endpoint (client credentials / refresh token):
        # https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-client-creds-grant-flow
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self._token)
        # https://learn.microsoft.com/en-us/graph/api/channel-post-messages
        app.router.add_post("/v1.0/teams/{team}/channels/{channel}/messages", self._graph_post)
        # https://learn.microsoft.com/en-us/graph/api/chatmessage-delta
        app.router.add_get("/v1.0/teams/{team}/channels/{channel}/messages/delta", self._delta)

    def add_channel(
        self, channel_key: str, knobs: SimKnobs, raw_settings: dict[str, Any]
    ) -> dict[str, Any]:
        channel = f"19:{secrets.token_hex(16)}@thread.tacv2"
        room = self.new_room(channel_key, knobs, room_id=channel)
        team = str(uuid.uuid4())
        self._teams[channel] = team
        base = self.url_for(knobs)
        flow = uuid.uuid4().hex
        workflow_url = (
            f"{base}/workflows/{flow}/triggers/manual/paths/invoke?api-version=1"
            f"&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={room.credentials['sig']}"
        )
        room.credentials["flow"] = flow
        keep = {"max_retries", "request_timeout"}
        settings = {k: v for k, v in raw_settings.items() if k in keep}
        settings.update(
            workflow_url=self.secret(workflow_url),
            team_id=team,
            channel_id=channel,
            graph_url=f"{base}/v1.0",
            login_url=base,
            observer={
                "tenant": TENANT,
                "client_id": room.credentials["observer_app"],
                "client_secret": self.secret(room.credentials["observer_secret"]),
                "interval": SIM_POLL_INTERVAL,
            },
        )
        return settings

    def graph_sender(self, channel_key: str) -> dict[str, Any]:
        """Settings for a delegated Graph sender on this channel (instead of the workflow)."""
        room = self.room_for(channel_key)
        return {
            "tenant": TENANT,
            "client_id": room.credentials["sender_app"],
            "refresh_token": self.secret(room.credentials["refresh"]),
        }

    # ------------------------------------------------------------------ helpers

    def _message(self, room: SimRoom, msg: SimMessage) -> dict[str, Any]:
        stamp = _iso(msg.posted_at)
        return {
            "id": str(int(msg.posted_at * 1000) * 1000 + msg.id % 1000),
            "replyToId": None,
            "etag": str(int(msg.posted_at * 1000)),
            "messageType": "message",
            "createdDateTime": stamp,
            "lastModifiedDateTime": stamp,
            "deletedDateTime": None,
            "subject": None,
            "importance": "normal",
            "from": msg.extra["from"],
            "body": msg.extra["body"],
            "attachments": msg.extra.get("attachments", []),
            "channelIdentity": {"teamId": self._teams[room.room_id], "channelId": room.room_id},
        }

    def _graph_room(self, request: web.Request, role: str) -> SimRoom | web.Response:
        token = self.bearer(request)
        entry = self._access.get(token)
        if entry is None or entry[1] != role:
            return _graph_error(
                401, "InvalidAuthenticationToken", "Access token validation failure."
            )
        room = entry[0]
        self.check_outage(request, room)
        if request.match_info["channel"] != room.room_id:
            return _graph_error(404, "NotFound", "Channel not found.")
        return room

    # ------------------------------------------------------------------ handlers

    async def _workflow(self, request: web.Request) -> web.StreamResponse:
        flow = request.match_info["flow"]
        room = next((r for r in self.rooms.values() if r.credentials.get("flow") == flow), None)
        if room is None:
            return _graph_error(404, "WorkflowNotFound", "The workflow could not be found.")
        self.check_outage(request, room)
        if room.knobs.reject == "auth" or request.query.get("sig") != room.credentials["sig"]:
            await self.refuse(request, room, "DirectApiInvalidAuthorizationSignature", final=True)
            return _graph_error(
                401,
                "DirectApiInvalidAuthorizationSignature",
                "The provided authorization signature is not valid.",
            )
        wait = self.retry_after(room)
        if wait is not None:
            # Power Platform request limits answer 429 with Retry-After:
            # https://learn.microsoft.com/en-us/power-platform/admin/api-request-limits-allocations
            await self.refuse(request, room, "TooManyRequests", final=False)
            return _graph_error(
                429,
                "TooManyRequests",
                "Rate limit is exceeded. Try again later.",
                **{"Retry-After": self.retry_after_header(wait)},
            )
        payload = await request.json()
        attachments = payload.get("attachments") if isinstance(payload, dict) else None
        if payload.get("type") != "message" or not isinstance(attachments, list):
            return _graph_error(
                400,
                "TriggerInputSchemaMismatch",
                "The input body for trigger 'manual' of type 'Request' did not match its schema.",
            )
        # The flow posts the card as the Workflows app; Graph shows it as an attachment.
        items = [
            {
                "id": uuid.uuid4().hex,
                "contentType": a.get("contentType"),
                "contentUrl": None,
                "content": json.dumps(a.get("content"), ensure_ascii=False),
                "name": None,
                "thumbnailUrl": None,
            }
            for a in attachments
            if isinstance(a, dict)
        ]
        body = {
            "contentType": "html",
            "content": "".join(f'<attachment id="{i["id"]}"></attachment>' for i in items),
        }
        sender = {"application": {"displayName": "Workflows", "id": str(uuid.uuid4())}}
        raw = await request.text()  # the card as sent: the ledger finds the drill token in it
        self.post(
            room, "", sender="Workflows", raw=raw, body=body, attachments=items, **{"from": sender}
        )
        return web.Response(status=202)

    async def _token(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        grant = form.get("grant_type")
        client = form.get("client_id")
        for room in self.rooms.values():
            if grant == "client_credentials" and client == room.credentials["observer_app"]:
                self.check_outage(request, room)
                if form.get("client_secret") != room.credentials["observer_secret"]:
                    break
                return self._issue(room, "observer")
            if grant == "refresh_token" and client == room.credentials["sender_app"]:
                self.check_outage(request, room)
                if (
                    room.knobs.reject == "auth"
                    or form.get("refresh_token") != room.credentials["refresh"]
                ):
                    return web.json_response(
                        {
                            "error": "invalid_grant",
                            "error_description": "AADSTS70000: The provided grant is invalid.",
                            "error_codes": [70000],
                        },
                        status=400,
                    )
                return self._issue(room, "sender")
        # https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes
        body = {
            "error": "invalid_client",
            "error_description": "AADSTS7000215: Invalid client secret provided.",
            "error_codes": [7000215],
        }
        return web.json_response(body, status=401)

    def _issue(self, room: SimRoom, role: str) -> web.Response:
        token = "eyJ0eXAiOiJKV1Qi." + secrets.token_urlsafe(24)
        self._access[token] = (room, role)
        body: dict[str, Any] = {"token_type": "Bearer", "expires_in": 3599, "access_token": token}
        if role == "sender":
            body.update(scope="ChannelMessage.Send", refresh_token=room.credentials["refresh"])
        return web.json_response(body)

    async def _graph_post(self, request: web.Request) -> web.StreamResponse:
        room = self._graph_room(request, "sender")
        if isinstance(room, web.Response):
            return room
        wait = self.retry_after(room)
        if wait is not None:
            await self.refuse(request, room, "TooManyRequests", final=False)
            return _graph_error(
                429,
                "TooManyRequests",
                "Too many requests.",
                **{"Retry-After": self.retry_after_header(wait)},
            )
        payload = await request.json()
        body = payload.get("body") if isinstance(payload, dict) else None
        if not isinstance(body, dict) or not body.get("content"):
            return _graph_error(400, "BadRequest", "Missing body content.")
        sender = {"user": {"id": str(uuid.uuid4()), "displayName": "防災訓練担当"}}
        extra: dict[str, Any] = {"body": body, "from": sender}
        msg = self.post(room, str(body["content"]), sender="user", **extra)
        return web.json_response(self._message(room, msg), status=201)

    async def _delta(self, request: web.Request) -> web.StreamResponse:
        room = self._graph_room(request, "observer")
        if isinstance(room, web.Response):
            return room
        token = request.query.get("$deltatoken")
        if token is not None and token.isdigit():
            cursor = int(token)
            items = room.visible[cursor:]
        else:
            since = 0.0
            filt = request.query.get("$filter", "")
            if filt.startswith("lastModifiedDateTime gt "):
                since = _parse_iso(filt.split(" gt ", 1)[1])
            items = [m for m in room.visible if m.posted_at > since]
        team, channel = self._teams[room.room_id], room.room_id
        link = f"{self.base_url}/v1.0/teams/{team}/channels/{quote(channel)}/messages/delta"
        body = {
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(chatMessage)",
            "@odata.deltaLink": f"{link}?$deltatoken={len(room.visible)}",
            "value": [self._message(room, m) for m in items],
        }
        return web.json_response(body)
