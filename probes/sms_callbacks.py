"""The harness's Twilio webhook receiver: status callbacks and inbound messages.

When an SMS channel has ``status_callback`` configured, the harness serves two
endpoints under the channel's ``public_url`` (the URL Twilio can reach, mapped
unchanged onto ``listen_host:listen_port``)::

    POST {public_url}/twilio/status    MessageSid, MessageStatus, ErrorCode, AccountSid, …
    POST {public_url}/twilio/inbound   MessageSid, From, To, Body, AccountSid, …

``/twilio/status`` is sent as ``StatusCallback`` with every message.
``/twilio/inbound`` is what the loopback receiver number's "A message comes
in" webhook must be set to (in the Twilio console).

Every request must carry a valid ``X-Twilio-Signature`` (checked with the
twilio library's ``RequestValidator`` against the account's Auth Token), else
it is refused with 403 and counted. One listener serves every SMS channel of a
drill that names the same ``listen_host:listen_port``; requests are routed by
``AccountSid``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from aiohttp import web
from twilio.request_validator import RequestValidator

from probes.base import Clock, ProbeEnv

__all__ = ["INBOUND_PATH", "STATUS_PATH", "CallbackListener", "CallbackSink", "callback_urls"]

STATUS_PATH = "/twilio/status"
INBOUND_PATH = "/twilio/inbound"

_log = logging.getLogger("tsunagari.twilio.callbacks")

# An empty TwiML reply: Twilio sends nothing back to the sender of an inbound message.
_EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def callback_urls(public_url: str) -> tuple[str, str]:
    """The status-callback and inbound-webhook URLs for *public_url*."""
    base = public_url.rstrip("/")
    return base + STATUS_PATH, base + INBOUND_PATH


class CallbackSink(Protocol):
    """A probe that wants the callbacks of one Twilio account."""

    def on_status(self, params: dict[str, str], at: float, wall: float) -> None: ...

    def on_inbound(self, params: dict[str, str], at: float, wall: float) -> None: ...


@dataclass
class _Subscription:
    account_sid: str
    validator: RequestValidator
    sink: CallbackSink


class CallbackListener:
    """One aiohttp server receiving Twilio webhooks for several SMS channels.

    Get it with :meth:`shared` (one per ``host:port`` per drill), then
    :meth:`subscribe`; the last :meth:`unsubscribe` stops it.
    """

    def __init__(self, host: str, port: int, public_url: str) -> None:
        self.host = host
        self.port = port
        self.public_url = public_url.rstrip("/")
        parts = urlsplit(self.public_url)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._prefix = parts.path
        self._subs: list[_Subscription] = []
        self._runner: web.AppRunner | None = None
        # Webhooks that piled up (a burst of receipts, or the process was preempted)
        # are worked through a few dozen per loop turn, not all in one.
        self._gate = asyncio.Semaphore(32)
        self.accepted = 0
        self.refused = 0
        self._on_empty: Callable[[], None] | None = None
        self._starting: asyncio.Future[None] | None = None

    @classmethod
    async def shared(cls, env: ProbeEnv, host: str, port: int, public_url: str) -> CallbackListener:
        """The drill's listener on *host:port*, started on first use."""
        key = f"twilio-callbacks:{host}:{port}"
        listener = env.shared.get(key)
        if listener is None:
            # Registered before it starts: probes opening concurrently share this one.
            listener = cls(host, port, public_url)
            env.shared[key] = listener
            listener._on_empty = lambda: env.shared.pop(key, None)
            listener._starting = asyncio.ensure_future(listener.start())
        elif listener.public_url != public_url.rstrip("/"):
            raise ValueError(
                f"{host}:{port} はすでに {listener.public_url} 用です / "
                f"{host}:{port} already serves {listener.public_url}, not {public_url}"
            )
        assert isinstance(listener, CallbackListener) and listener._starting is not None
        try:
            await asyncio.shield(listener._starting)
        except Exception:
            if env.shared.get(key) is listener:
                env.shared.pop(key, None)
            raise
        return listener

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(self._prefix + STATUS_PATH, self._status)
        app.router.add_post(self._prefix + INBOUND_PATH, self._inbound)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=2048)
        await site.start()

    def subscribe(self, account_sid: str, auth_token: str, sink: CallbackSink) -> None:
        """Route *account_sid*'s callbacks to *sink*, validated with *auth_token*."""
        self._subs.append(_Subscription(account_sid, RequestValidator(auth_token), sink))

    async def unsubscribe(self, sink: CallbackSink) -> None:
        self._subs = [s for s in self._subs if s.sink is not sink]
        if not self._subs:
            await self.aclose()

    async def aclose(self) -> None:
        if self._on_empty is not None:
            self._on_empty()
            self._on_empty = None
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    # ------------------------------------------------------------------ handlers

    async def _verified(self, request: web.Request) -> tuple[list[CallbackSink], dict[str, str]]:
        async with self._gate:
            return await self._verify(request)

    async def _verify(self, request: web.Request) -> tuple[list[CallbackSink], dict[str, str]]:
        form = await request.post()
        params = {k: str(v) for k, v in form.items()}
        signature = request.headers.get("X-Twilio-Signature", "")
        url = self._origin + request.path_qs
        account = params.get("AccountSid", "")
        sinks = [
            s.sink
            for s in self._subs
            if s.account_sid == account and signature and s.validator.validate(url, form, signature)
        ]
        if not sinks:
            self.refused += 1
            _log.warning(
                "refused a Twilio webhook to %s: bad or missing X-Twilio-Signature", request.path
            )
            raise web.HTTPForbidden(text="invalid signature")
        self.accepted += 1
        return sinks, params

    async def _status(self, request: web.Request) -> web.StreamResponse:
        at, wall = Clock.monotonic(), Clock.wall()
        sinks, params = await self._verified(request)
        for sink in sinks:
            sink.on_status(params, at, wall)
        return web.Response(status=204)

    async def _inbound(self, request: web.Request) -> web.StreamResponse:
        at, wall = Clock.monotonic(), Clock.wall()
        sinks, params = await self._verified(request)
        for sink in sinks:
            sink.on_inbound(params, at, wall)
        return web.Response(text=_EMPTY_TWIML, content_type="text/xml")
