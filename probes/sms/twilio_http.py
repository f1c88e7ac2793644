"""The ``http_client`` seam between the official ``twilio`` client and the network.

The twilio client builds every request itself (URL, form body, headers, Basic
auth) and hands it to an ``http_client``. This one sends it over the drill's
shared aiohttp session, so Twilio calls never block the event loop, and — for
the local Twilio used by the demo and the tests — rewrites
``https://*.twilio.com`` to a loopback base URL (region/edge settings cannot
point the client at loopback; see FIELD-NOTES.md)::

    http = AioTwilioHttp(env.http, base_url="http://127.0.0.1:8931")
    client = Client(account_sid, auth_token, http_client=http)
    message = await client.messages.create_async(to=..., from_=..., body=...)

The twilio client raises ``TwilioRestException`` for 4xx/5xx without the
response headers; the ``Retry-After`` of the last response seen *by the
current task* is kept in :data:`RETRY_AFTER` so a 429 can be honoured, and the
monotonic instant its body was read in :data:`ANSWERED`. With a
:class:`~probes.sms.turns.TurnGate`, turning the answer into the client's
objects (JSON, a ``MessageInstance``) waits for room in the loop's turn —
after :data:`ANSWERED` is stamped, so the wait is never the answer's time.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import aiohttp
from twilio.http import AsyncHttpClient
from twilio.http.response import Response

from probes.base import Clock, parse_retry_after
from probes.sms.turns import TurnGate

__all__ = ["ANSWERED", "RETRY_AFTER", "AioTwilioHttp", "basic_auth_header", "parse_retry_after"]

_log = logging.getLogger("tsunagari.twilio.http")

RETRY_AFTER: ContextVar[float | None] = ContextVar("twilio_retry_after", default=None)
ANSWERED: ContextVar[float | None] = ContextVar("twilio_answered", default=None)


def basic_auth_header(user: str, password: str) -> str:
    """An HTTP Basic ``Authorization`` value (aiohttp 3.14 deprecates ``BasicAuth``)."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


class AioTwilioHttp(AsyncHttpClient):  # type: ignore[misc]
    """An async ``http_client`` for ``twilio.rest.Client`` over an aiohttp session.

    *session* is a callable returning the (shared, long-lived) session, so the
    session can be created lazily inside the running loop. *base_url*, when
    given, replaces the scheme and host of every ``*.twilio.com`` URL.
    Credentials travel only in the Authorization header; nothing here logs them.
    """

    def __init__(
        self,
        session: Callable[[], aiohttp.ClientSession],
        *,
        base_url: str | None = None,
        timeout: float = 10.0,
        turns: TurnGate | None = None,
    ) -> None:
        super().__init__(logger=_log, is_async=True, timeout=timeout)
        self._session = session
        self._turns = turns
        self._base = urlsplit(base_url.rstrip("/")) if base_url else None
        self.requests = 0

    def rewrite(self, url: str) -> str:
        """*url* with a ``*.twilio.com`` host moved to the base URL (if one is set)."""
        if self._base is None:
            return url
        parts = urlsplit(url)
        host = parts.hostname or ""
        if host != "twilio.com" and not host.endswith(".twilio.com"):
            return url
        return urlunsplit(
            (self._base.scheme, self._base.netloc, self._base.path + parts.path, parts.query, "")
        )

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        target = self.rewrite(url)
        body: str | None = None
        if data:
            body = urlencode(_pairs(data))
        headers = dict(headers or {})
        if auth is not None:
            headers["Authorization"] = basic_auth_header(*auth)
        client_timeout = aiohttp.ClientTimeout(total=timeout or self.timeout)
        self.requests += 1
        async with self._session().request(
            method.upper(),
            target,
            params=_pairs(params) if params else None,
            data=body,
            headers=headers,
            timeout=client_timeout,
            allow_redirects=allow_redirects,
        ) as resp:
            text = await resp.text()
            ANSWERED.set(Clock.monotonic())
            status = resp.status
            resp_headers = dict(resp.headers)
        RETRY_AFTER.set(parse_retry_after(resp_headers.get("Retry-After")))
        if self._turns is not None:
            await self._turns.turn()
        _log.debug("twilio %s %s -> %d", method.upper(), urlsplit(target).path, status)
        return Response(status, text, resp_headers)

    async def close(self) -> None:
        """The session belongs to the drill; nothing to close here."""


def _pairs(values: dict[str, Any]) -> list[tuple[str, str]]:
    """Form/query values as string pairs (aiohttp refuses bools; lists repeat the key)."""
    out: list[tuple[str, str]] = []
    for key, value in values.items():
        for item in value if isinstance(value, list | tuple) else [value]:
            if isinstance(item, bool):
                out.append((key, "true" if item else "false"))
            else:
                out.append((key, str(item)))
    return out
