"""Minimal loopback far ends for surge tests: an SMTP sink and an HTTP counter.

They count what arrived, so a test can hold Locust's statistics against what
the far end really received.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
from dataclasses import dataclass, field

from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session

from probes.base import find_tokens

__all__ = ["HttpCounter", "SmtpSink"]


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
