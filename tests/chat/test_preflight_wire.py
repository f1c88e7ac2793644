"""The preflight's own connections (``probes.endpoint.Wire``): one verified TLS
connection per check, each step within its limit, a redirect followed — over real
loopback sockets."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from probes.base import ProbeEnv
from probes.chat.webhook import WebhookProbe, WebhookSettings
from probes.endpoint import Wire, check_endpoint
from probes.mail.check import preflight_mail
from probes.mail.probe import MailSettings
from probes.mail.smtp_check import read_reply
from probes.preflight import PhaseTimer
from probes.sim.base import free_port


@pytest.fixture
async def silent() -> AsyncIterator[int]:
    """A port that accepts connections and never says a word (TLS or SMTP)."""
    held: list[socket.socket] = []
    server = socket.create_server(("127.0.0.1", 0))
    server.setblocking(False)
    loop = asyncio.get_running_loop()

    def accept() -> None:
        conn, _ = server.accept()
        held.append(conn)

    loop.add_reader(server.fileno(), accept)
    try:
        yield server.getsockname()[1]
    finally:
        loop.remove_reader(server.fileno())
        for conn in held:
            conn.close()
        server.close()


async def test_a_silent_tls_server_fails_the_tls_phase_at_its_limit(silent: int) -> None:
    limit = 0.3
    async with PhaseTimer("131211/chat", "slack") as timer:
        await check_endpoint(timer, "api", f"https://127.0.0.1:{silent}/", timeout=limit)
    report = timer.report()
    assert [(p.name, p.ok) for p in report.phases] == [
        ("api.dns", True),
        ("api.connect", True),
        ("api.tls", False),
    ]
    failed = report.failure
    assert failed is not None and failed.phase == "tls" and failed.code == "timeout"
    assert failed.seconds >= limit  # it waited its whole limit, no less


async def test_a_silent_smtp_server_fails_the_connect_phase_at_its_limit(silent: int) -> None:
    settings = MailSettings.model_validate(
        {
            "smtp": {"host": "127.0.0.1", "port": silent, "timeout": "300ms"},
            "from": "drill@example.lg.jp",
            "to": "drill@example.lg.jp",
        }
    )
    report = await preflight_mail("131211/mail", settings)
    failed = report.failure
    assert failed is not None
    assert (failed.name, failed.code) == ("smtp.connect", "timeout")
    assert "timed out (connect)" in failed.reason.en  # type: ignore[union-attr]
    assert failed.seconds >= 0.3


@pytest.fixture
async def redirecting() -> AsyncIterator[tuple[str, list[str]]]:
    seen: list[str] = []

    async def health(request: web.Request) -> web.Response:
        seen.append(f"{request.path} {request.headers.get('Connection', '')}")
        if request.path == "/health":
            raise web.HTTPFound("/ok")
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/ok", health)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


async def test_a_redirected_health_url_is_followed_in_a_phase_of_its_own(
    redirecting: tuple[str, list[str]],
) -> None:
    base, seen = redirecting
    env = ProbeEnv()
    try:
        settings = WebhookSettings.model_validate(
            {"url": f"{base}/hook", "health_url": f"{base}/health"}
        )
        report = await WebhookProbe("131211/chat", settings, env).preflight()
    finally:
        await env.aclose()
    assert report.ok, report.reason
    phases = {p.name: p.detail for p in report.phases}
    assert phases["health.read"] == "HTTP 302" and phases["health.redirect"] == "HTTP 200"
    assert seen[0] == "/health close"  # the check's own GET: one connection, then closed
    assert [s.split()[0] for s in seen] == ["/health", "/health", "/ok"]
    assert report.facts["observer_configured"] == 0.0


async def test_an_smtp_reply_is_read_in_one_batch_and_the_next_one_is_left() -> None:
    """A multi-line reply and the start of the next arrive in one segment: the first
    read takes exactly the first reply, the second read the rest."""

    async def speak(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"250-relay.example\r\n250-STARTTLS\r\n250 SIZE 1000\r\n220 next\r\n22")
        await writer.drain()
        await reader.read(1)  # the client's byte: then the rest of the last reply
        writer.write(b"1 done\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(speak, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with await Wire.connect("127.0.0.1", port, 5.0) as wire:
            assert await read_reply(wire) == (250, "relay.example\nSTARTTLS\nSIZE 1000")
            assert await read_reply(wire) == (220, "next")
            await wire.send(b"x")
            assert await read_reply(wire) == (221, "done")  # "22" + "1 done": one line
    finally:
        server.close()
        await server.wait_closed()
