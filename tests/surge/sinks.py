"""Minimal loopback far ends for surge tests: an SMTP sink, a Twilio-shaped API, an HTTP counter.

They count what arrived, so a test can hold Locust's statistics against what
the far end really received.
"""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import secrets
from dataclasses import dataclass, field

from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session

from probes.base import find_tokens

__all__ = ["HttpCounter", "SmtpSink", "TwilioSink"]


@dataclass
class SmtpSink:
    """An aiosmtpd server in the test's loop; keeps subject and tokens of every accepted mail."""

    host: str = "127.0.0.1"
    port: int = 0
    subjects: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    _server: asyncio.base_events.Server | None = None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        mail = email.message_from_bytes(raw, policy=email.policy.default)
        self.subjects.append(str(mail["Subject"]))
        self.tokens.extend(find_tokens(str(mail["Subject"]))[:1])
        return "250 OK queued"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(self, hostname="sink.test", loop=loop), self.host, 0
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


class _AiohttpSink:
    """An aiohttp server on a free loopback port; subclasses add their routes."""

    def __init__(self) -> None:
        self.port = 0
        self._runner: web.AppRunner | None = None

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class TwilioSink(_AiohttpSink):
    """The Messages resource of the Twilio REST API, as far as creating a message goes.

    POST /2010-04-01/Accounts/{AccountSid}/Messages.json, form fields To, From,
    Body, HTTP Basic auth (Account SID : Auth Token); 201 with the Message
    resource (``sid`` SM…, ``status`` queued) — per
    https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource ;
    errors as JSON ``{"code", "message", "more_info", "status"}`` (20003 on bad
    credentials) per https://www.twilio.com/docs/usage/twilios-response .
    """

    def __init__(self) -> None:
        super().__init__()
        self.sid = "AC" + secrets.token_hex(16)
        self.token = secrets.token_hex(16)
        self.bodies: list[str] = []
        self.recipients: list[str] = []
        self.refused = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self._create)

    async def _create(self, request: web.Request) -> web.Response:
        expected = "Basic " + base64.b64encode(f"{self.sid}:{self.token}".encode()).decode()
        if (
            request.match_info["sid"] != self.sid
            or request.headers.get("Authorization") != expected
        ):
            self.refused += 1
            return web.json_response(
                {
                    "code": 20003,
                    "message": "Authenticate",
                    "more_info": "https://www.twilio.com/docs/errors/20003",
                    "status": 401,
                },
                status=401,
            )
        form = await request.post()
        body, to = str(form.get("Body", "")), str(form.get("To", ""))
        self.bodies.append(body)
        self.recipients.append(to)
        sid = "SM" + secrets.token_hex(16)
        return web.json_response(
            {
                "sid": sid,
                "account_sid": self.sid,
                "to": to,
                "from": str(form.get("From", "")),
                "body": body,
                "status": "queued",
                "num_segments": "1",
                "direction": "outbound-api",
                "api_version": "2010-04-01",
                "uri": f"/2010-04-01/Accounts/{self.sid}/Messages/{sid}.json",
            },
            status=201,
        )


class HttpCounter(_AiohttpSink):
    """Answers 200 to anything and counts the requests (a live channel's stand-in)."""

    def __init__(self) -> None:
        super().__init__()
        self.requests = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/live"

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._any)

    async def _any(self, request: web.Request) -> web.Response:
        self.requests += 1
        return web.json_response({"ok": True})
