"""A LINE WORKS API 2.0-shaped far end: JWT token endpoint, bot messages, monitoring.

One server plays the auth server and the API server (the probe's ``auth_url``
and ``api_url`` both point here). Each simulated channel gets its own app: a
client id/secret, a service account and an RSA key pair — the token endpoint
verifies the JWT's signature with the public half. A bot message shows up in
the monitoring download after the channel's injected latency.

The CSV columns of the monitoring download are not spelled out in the API
reference; the probe only relies on the message text (and its token) being in
a row, so the header here is illustrative.
"""

from __future__ import annotations

import csv
import io
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from probes.sim.base import SimKnobs
from probes.sim.chat import SIM_POLL_INTERVAL, ChatSimBase, SimRoom

__all__ = ["LineWorksSimulator"]

JST = timezone(timedelta(hours=9))
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


@dataclass
class _App:
    room: SimRoom
    client_id: str
    service_account: str
    public_key: Any
    private_pem: str
    bot_id: int
    files: dict[str, str] = field(default_factory=dict)


def _api_error(status: int, code: str, description: str, **headers: str) -> web.Response:
    # API 2.0 error body {"code", "description"}: https://developers.worksmobile.com/en/docs/rate-limits
    return web.json_response(
        {"code": code, "description": description}, status=status, headers=headers
    )


def _oauth_error(status: int, error: str, description: str) -> web.Response:
    # Token endpoint errors follow OAuth 2.0 (RFC 6749 §5.2):
    # https://developers.worksmobile.com/en/docs/auth-jwt
    return web.json_response({"error": error, "error_description": description}, status=status)


def _parse_time(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z").timestamp()


class LineWorksSimulator(ChatSimBase):
    """LINE WORKS-shaped far end: service-account tokens, bot posts, monitoring CSV."""

    kind = "lineworks"
    credential_names = ("client_secret",)

    def __init__(self, seed: int | None = None, host: str = "127.0.0.1") -> None:
        super().__init__(seed, host)
        self.apps: dict[str, _App] = {}  # client id → app
        self._tokens: dict[str, tuple[_App, set[str]]] = {}  # access token → (app, scopes)
        self._key: tuple[Any, str] | None = None

    @staticmethod
    def placeholder_settings() -> dict[str, Any]:
        return {
            "app": {
                "client_id": "placeholder",
                "client_secret": "env:UNUSED_SIM_SECRET",
                "service_account": "placeholder.serviceaccount@sim",
                "private_key": "env:UNUSED_SIM_KEY",
            },
            "bot_id": 1,
            "channel_id": "placeholder",
        }

    def _key_pair(self) -> tuple[Any, str]:
        # One RSA key per simulator (generating one costs ~0.1 s); apps still differ by
        # client id, secret and service account, and the token endpoint checks all three.
        if self._key is None:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode()
            self._key = (key, pem)
        return self._key

    def routes(self, app: web.Application) -> None:
        # https://developers.worksmobile.com/en/docs/auth-jwt (service account → access token)
        app.router.add_post("/oauth2/v2.0/token", self._token)
        # https://developers.worksmobile.com/en/docs/bot-channel-message-send
        app.router.add_post("/v1.0/bots/{bot}/channels/{channel}/messages", self._bot_message)
        # https://developers.worksmobile.com/en/docs/bot-get (scope bot or bot.read)
        app.router.add_get("/v1.0/bots/{bot}", self._bot_info)
        # https://developers.worksmobile.com/en/docs/content-log-download (302 → CSV file)
        app.router.add_get("/v1.0/monitoring/message-contents/download", self._monitoring)
        app.router.add_get("/files/{file}", self._file)

    def add_channel(
        self, channel_key: str, knobs: SimKnobs, raw_settings: dict[str, Any]
    ) -> dict[str, Any]:
        room = self.new_room(channel_key, knobs, room_id=str(uuid.uuid4()))
        key, pem = self._key_pair()
        client_id = secrets.token_hex(10)
        app = _App(
            room,
            client_id,
            f"{secrets.token_hex(4)}.serviceaccount@sim.works",
            key.public_key(),
            pem,
            bot_id=2000000 + len(self.apps) + 1,
        )
        self.apps[client_id] = app
        base = self.url_for(knobs)
        keep = {"max_retries", "request_timeout"}
        settings = {k: v for k, v in raw_settings.items() if k in keep}
        settings.update(
            app={
                "client_id": client_id,
                "client_secret": self.secret(room.credentials["client_secret"]),
                "service_account": app.service_account,
                "private_key": self.secret(pem),
            },
            bot_id=app.bot_id,
            channel_id=room.room_id,
            api_url=f"{base}/v1.0",
            auth_url=f"{base}/oauth2/v2.0/token",
            observer={"interval": SIM_POLL_INTERVAL},
        )
        return settings

    # ------------------------------------------------------------------ handlers

    fault_paths: ClassVar[dict[str, str]] = {
        "send": r"/bots/[^/]+/channels/[^/]+/messages$",
        "read": r"(/monitoring/message-contents/download|/files/[^/]+)$",
    }

    def expire_observer(self, channel_key: str) -> None:
        """The monitoring access tokens expire (the app's credentials still hold: renewable)."""
        room = self.room_for(channel_key)
        for token, (app, scopes) in list(self._tokens.items()):
            if app.room is room and "monitoring.read" in scopes:
                del self._tokens[token]
        self.expired(room)

    def _caller(self, request: web.Request, scope: str) -> _App | web.Response:
        entry = self._tokens.get(self.bearer(request))
        if entry is None:
            return _api_error(401, "UNAUTHORIZED", "Authentication failed")
        app, scopes = entry
        self.check_outage(request, app.room)
        if scope not in scopes:
            return _api_error(403, "FORBIDDEN", f"The scope '{scope}' is required")
        return app

    async def _token(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        app = self.apps.get(str(form.get("client_id", "")))
        if app is not None:
            self.check_outage(request, app.room)
        if form.get("grant_type") != JWT_GRANT:
            return _oauth_error(400, "unsupported_grant_type", "grant_type is not supported")
        if (
            app is None
            or app.room.knobs.reject == "auth"
            or form.get("client_secret") != app.room.credentials["client_secret"]
        ):
            return _oauth_error(401, "invalid_client", "client authentication failed")
        try:
            claims = jwt.decode(
                str(form.get("assertion", "")), app.public_key, algorithms=["RS256"]
            )
        except jwt.PyJWTError:
            return _oauth_error(400, "invalid_grant", "the assertion is invalid")
        if claims.get("iss") != app.client_id or claims.get("sub") != app.service_account:
            return _oauth_error(400, "invalid_grant", "the assertion does not match the app")
        scopes = set(str(form.get("scope", "")).split())
        token = "kr1AAAA" + secrets.token_urlsafe(24)
        self._tokens[token] = (app, scopes)
        body = {
            "access_token": token,
            "refresh_token": "kr1RRRR" + secrets.token_urlsafe(16),
            "scope": " ".join(sorted(scopes)),
            "token_type": "Bearer",
            "expires_in": "86400",
        }
        return web.json_response(body)

    async def _bot_message(self, request: web.Request) -> web.StreamResponse:
        app = self._caller(request, "bot")
        if isinstance(app, web.Response):
            return app
        if request.match_info["bot"] != str(app.bot_id) or (
            request.match_info["channel"] != app.room.room_id
        ):
            return _api_error(404, "NOT_FOUND", "The bot or the message room does not exist")
        wait = self.retry_after(app.room)
        if wait is not None:
            await self.refuse(request, app.room, "TOO_MANY_REQUESTS", final=False)
            headers = {
                "rateLimit-limit": str(int(app.room.knobs.rate_limit or 1)),
                "rateLimit-remaining": "0",
                "rateLimit-reset": self.retry_after_header(wait),
            }
            return _api_error(429, "TOO_MANY_REQUESTS", "API rate limit exceeded", **headers)
        payload = await request.json()
        content = payload.get("content") if isinstance(payload, dict) else None
        if not isinstance(content, dict) or content.get("type") != "text":
            return _api_error(400, "BAD_REQUEST", "content.type must be text")
        self.post(app.room, str(content.get("text", "")), sender=f"bot:{app.bot_id}")
        return web.Response(status=201)

    async def _bot_info(self, request: web.Request) -> web.StreamResponse:
        entry = self._tokens.get(self.bearer(request))
        scope = "bot.read" if entry is not None and "bot.read" in entry[1] else "bot"
        app = self._caller(request, scope)
        if isinstance(app, web.Response):
            return app
        if request.match_info["bot"] != str(app.bot_id):
            return _api_error(404, "NOT_FOUND", "The bot does not exist")
        body = {
            "botId": app.bot_id,
            "botName": "防災訓練ボット",
            "photoUrl": "https://example.invalid/bot.png",
            "description": "防災訓練の連絡",
            "administrators": [app.service_account],
            "subadministrators": [],
            "allowDomains": [],
            "enableCallback": False,
            "callbackEvents": [],
            "callbackUrl": None,
            "enableGroupJoinMessage": False,
            "defaultRichmenuId": None,
        }
        return web.json_response(body)

    async def _monitoring(self, request: web.Request) -> web.StreamResponse:
        app = self._caller(request, "monitoring.read")
        if isinstance(app, web.Response):
            return app
        try:
            start = _parse_time(request.query["startTime"])
            end = _parse_time(request.query["endTime"])
        except (KeyError, ValueError):
            return _api_error(400, "BAD_REQUEST", "startTime and endTime are required")
        only_bots = request.query.get("botMessageFilterType", "include")
        rows = [
            m
            for m in app.room.visible
            if start <= m.posted_at <= end and (only_bots != "exclude" or not m.sender)
        ]
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["Date", "Sender", "Message room", "Message"])
        for m in rows:
            stamp = datetime.fromtimestamp(m.posted_at, JST).strftime("%Y-%m-%d %H:%M:%S")
            writer.writerow([stamp, m.sender, app.room.room_id, m.text])
        file_id = secrets.token_hex(8)
        app.files = {file_id: out.getvalue()}
        raise web.HTTPFound(f"{self.base_url}/files/{file_id}")

    async def _file(self, request: web.Request) -> web.StreamResponse:
        entry = self._tokens.get(self.bearer(request))
        file_id = request.match_info["file"]
        app = entry[0] if entry is not None else None
        if app is None or file_id not in app.files:
            return _api_error(404, "NOT_FOUND", "The file does not exist or has expired")
        self.check_outage(request, app.room)
        return web.Response(text=app.files[file_id], content_type="text/csv")
