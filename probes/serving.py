"""How the harness's own HTTP servers are set up: limits, timeouts and quiet logs.

The harness serves HTTP in two places — the Prometheus exporter (``tsunagari
serve``) and the Twilio webhook receiver (:mod:`probes.sms.callbacks`) — and
both take their aiohttp settings from here::

    app = web.Application(client_max_size=CLIENT_MAX_SIZE)
    runner = web.AppRunner(app, **runner_settings("tsunagari.serve"))

- **Bodies** over :data:`CLIENT_MAX_SIZE` (64 KiB; a Twilio webhook is ~1 KiB)
  are refused with 413 when read.
- **Request line and headers**: a line over :data:`MAX_LINE_SIZE` bytes (an
  8 KiB URL), a header field over :data:`MAX_FIELD_SIZE`, or more than
  :data:`MAX_HEADERS` headers → 400.
- **Slow clients**: every connection gets :data:`IDLE_TIMEOUT_S` to send a
  complete request (aiohttp arms its keep-alive timer when a connection opens
  and closes a connection that has not finished a request by then); requests
  are served concurrently, so slow sockets hold a file descriptor each, never
  the server.
- **Expect**: ``100-continue`` is honoured; any other ``Expect`` gets 417 without
  echoing it (aiohttp's own handler echoes it, and a non-ASCII value became a 500).
  So that no request reaches aiohttp's own handler, :func:`add_fallback_route`
  answers every path and method the routes do not (404, 405).
- **Logs**: a malformed request (bad request line, negative Content-Length,
  oversized header) is the client's problem: one debug line, never a
  traceback. A handler that fails answers 500 and logs one error line naming
  the exception type — no traceback, and no request data (it may carry a secret).

    >>> is_loopback("127.0.0.2"), is_loopback("::1"), is_loopback("localhost")
    (True, True, True)
    >>> is_loopback("0.0.0.0"), is_loopback("192.168.1.10"), is_loopback("::")
    (False, False, False)
"""

from __future__ import annotations

import ipaddress
import logging
import sys
from collections.abc import MutableMapping
from typing import Any

__all__ = [
    "CLIENT_MAX_SIZE",
    "IDLE_TIMEOUT_S",
    "MAX_FIELD_SIZE",
    "MAX_HEADERS",
    "MAX_LINE_SIZE",
    "QuietServerLog",
    "add_fallback_route",
    "expect_handler",
    "is_loopback",
    "runner_settings",
]

CLIENT_MAX_SIZE = 64 * 1024
MAX_LINE_SIZE = 8190  # the request line: an 8 KiB URL is refused
MAX_FIELD_SIZE = 8190
MAX_HEADERS = 64
IDLE_TIMEOUT_S = 15.0


def is_loopback(host: str) -> bool:
    """Does listening on *host* stay on this machine?"""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class QuietServerLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's server logger, minus the tracebacks.

    aiohttp logs every request it cannot parse, and every handler exception,
    with ``logger.exception`` — a full traceback on stderr for a client that sent
    garbage. Here a client's malformed request is a debug line; a failure of our
    own is one error line with the exception's type.
    """

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        from aiohttp.http_exceptions import HttpProcessingError

        exc = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        text = str(msg) % args if args else str(msg)
        if isinstance(exc, HttpProcessingError):  # the client's request was malformed
            self.logger.debug("%s: %s %s", text, exc.code, type(exc).__name__)
        elif exc is None:
            self.logger.error("%s", text)
        else:
            self.logger.error("%s: %s", text, type(exc).__name__)

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        kwargs.pop("exc_info", None)  # no traceback from any other level either
        return msg, kwargs


async def expect_handler(request: Any) -> None:
    """The routes' ``expect_handler``: 100 Continue, or 417 for anything else."""
    from aiohttp import HttpVersion11, web

    expect = request.headers.get("Expect", "")
    if request.version != HttpVersion11:
        return
    if expect.lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0
        return
    raise web.HTTPExpectationFailed(text="417 Expect は 100-continue のみ / only 100-continue\n")


def add_fallback_route(app: Any) -> None:
    """After the routes: answer every other path (404) and method (405), with
    :func:`expect_handler` — aiohttp's 404/405 would use its own Expect handling."""
    from aiohttp import web

    allowed: dict[str, set[str]] = {}
    for resource in app.router.resources():
        path = resource.canonical
        for route in resource:
            allowed.setdefault(path, set()).add(route.method)

    async def fallback(request: web.Request) -> web.StreamResponse:
        methods = allowed.get(request.path)
        if methods is None:
            raise web.HTTPNotFound(text="404 見つかりません / not found\n")
        raise web.HTTPMethodNotAllowed(
            request.method,
            sorted(methods),
            text="405 このメソッドは使えません / method not allowed\n",
        )

    app.router.add_route("*", r"/{tail:[\s\S]*}", fallback, expect_handler=expect_handler)


def runner_settings(logger_name: str) -> dict[str, Any]:
    """``web.AppRunner`` keywords: limits, the idle timeout, no access log, quiet errors."""
    return {
        "access_log": None,
        "handle_signals": False,
        "logger": QuietServerLog(logging.getLogger(logger_name), {}),
        "max_line_size": MAX_LINE_SIZE,
        "max_field_size": MAX_FIELD_SIZE,
        "max_headers": MAX_HEADERS,
        "keepalive_timeout": IDLE_TIMEOUT_S,
    }
