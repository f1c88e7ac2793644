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
it is refused with 403 and counted (:attr:`CallbackListener.refused`), and nothing
in it is believed. A body that is not a form of text fields is refused with 400,
one over 64 KiB with 413; the limits, the idle timeout for slow clients and the
quiet logs (no traceback for a malformed request) are :mod:`probes.serving`'s.
One listener serves every SMS channel of a
drill that names the same ``listen_host:listen_port``; requests are routed by
``AccountSid``.

Each webhook is stamped when its handler starts and handed on with an error
bound: how much later than Twilio's POST it may have been handled. On
loopback the wire takes well under a millisecond (:data:`TRANSIT_S` allows
5 ms); what makes it later is queueing on our side, measured two ways and
both added: a :class:`LoopLag` monitor (the event loop's lateness, worst of the
last :data:`LAG_WINDOW_S`) and the age of the current *burst* — webhooks
handled back to back (less than :data:`BURST_GAP_S` apart) queued behind each
other, so the last of a burst of receipts may have waited as long as the burst
has lasted. This is a measurement, not a proof: what happens before Twilio
POSTs (its own webhook queue, the carrier's receipt delay) cannot be seen from
here at all, which is one reason a carrier receipt ranks below a sighting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from twilio.request_validator import RequestValidator, compare

from probes.base import Clock, ProbeEnv
from probes.serving import CLIENT_MAX_SIZE, add_fallback_route, expect_handler, runner_settings
from probes.sms.turns import TurnGate

__all__ = [
    "BURST_GAP_S",
    "INBOUND_PATH",
    "LAG_WINDOW_S",
    "STATUS_PATH",
    "TRANSIT_S",
    "Burst",
    "CallbackListener",
    "CallbackSink",
    "LoopLag",
    "callback_urls",
]

STATUS_PATH = "/twilio/status"
INBOUND_PATH = "/twilio/inbound"

_log = logging.getLogger("tsunagari.twilio.callbacks")

TRANSIT_S = 0.005  # a webhook's way from Twilio's POST to our handler, loop lag aside
LAG_WINDOW_S = 1.0  # the loop lateness looked back over for each webhook
BURST_GAP_S = 0.010  # webhooks closer than this (end to next start) form one burst

# An empty TwiML reply: Twilio sends nothing back to the sender of an inbound message.
_EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def callback_urls(public_url: str) -> tuple[str, str]:
    """The status-callback and inbound-webhook URLs for *public_url*."""
    base = public_url.rstrip("/")
    return base + STATUS_PATH, base + INBOUND_PATH


_Handler = Callable[[dict[str, str], float, float, float], None]


class CallbackSink(Protocol):
    """A probe that wants the callbacks of one Twilio account.

    *at* (monotonic) and *wall* are when the handler started; *bound* is how much
    later than Twilio's POST that may be (transit plus measured loop lag).
    """

    def on_status(self, params: dict[str, str], at: float, wall: float, bound: float) -> None: ...

    def on_inbound(self, params: dict[str, str], at: float, wall: float, bound: float) -> None: ...


class Burst:
    """How long webhooks have been handled back to back (each queued behind the last).

    >>> burst = Burst(gap=0.25)
    >>> burst.enter(10.0), burst.enter(10.5)
    (0.0, 0.5)
    >>> burst.leave(11.0); burst.leave(11.0); burst.enter(11.25)  # within the gap
    1.25
    >>> burst.leave(11.5); burst.enter(12.0)  # a pause: a new burst
    0.0
    """

    def __init__(self, gap: float = BURST_GAP_S) -> None:
        self.gap = gap
        self._since = float("-inf")
        self._active = 0
        self._last_done = float("-inf")

    def enter(self, at: float) -> float:
        """A webhook's handling starts at *at*; how long has its burst lasted?"""
        if self._active == 0 and at - self._last_done > self.gap:
            self._since = at
        self._active += 1
        return at - self._since

    def leave(self, at: float) -> None:
        self._active = max(0, self._active - 1)
        self._last_done = at


class LoopLag:
    """How late this event loop runs: a timer every *period* notes its own lateness.

    ``worst(at)`` is the largest lateness noted in the *window* before *at*, or
    the time the timer is overdue right now, whichever is larger — a webhook
    that waited behind a busy loop was handled at most about that much later.

        >>> lag = LoopLag(period=0.01)
        >>> lag.worst(lag.last_tick) >= 0.0
        True
    """

    def __init__(self, period: float = 0.01, window: float = LAG_WINDOW_S) -> None:
        self.period = period
        self.window = window
        self.last_tick = time.monotonic()
        # (at, lateness > 0), oldest first, each later than and less late than the one
        # before it: a lateness outdone by a later, larger one can never be the worst of
        # a window that holds it, so it is dropped — the first kept is the worst.
        self._late: deque[tuple[float, float]] = deque()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self.last_tick = time.monotonic()
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            due = time.monotonic() + self.period
            await asyncio.sleep(self.period)
            self.note(time.monotonic(), due)

    def note(self, now: float, due: float) -> None:
        """The timer due at *due* ran at *now*."""
        self.last_tick = now
        late = now - due
        if late > 0.0005:
            while self._late and self._late[-1][1] <= late:
                self._late.pop()
            self._late.append((now, late))
        while self._late and self._late[0][0] < now - self.window:
            self._late.popleft()

    def worst(self, at: float) -> float:
        overdue = max(0.0, at - self.last_tick - self.period)
        since = at - self.window
        seen = next((late for when, late in self._late if when >= since), 0.0)
        return max(overdue, seen)


def _signed(
    validator: RequestValidator, url: str, form: Mapping[str, object], signature: str
) -> bool:
    """Is *signature* Twilio's for this request (``RequestValidator.validate``'s answer)?

    ``validate`` signs the URL both with and without its port (two HMACs) for proxies
    that add or drop it; the URL as received is one of the two, so it is tried
    alone first — a match is one HMAC, anything else gets ``validate`` in full.
    """
    if compare(validator.compute_signature(url, form), signature):
        return True
    return bool(validator.validate(url, form, signature))


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

    def __init__(
        self, host: str, port: int, public_url: str, turns: TurnGate | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.public_url = public_url.rstrip("/")
        parts = urlsplit(self.public_url)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._prefix = parts.path
        self._subs: list[_Subscription] = []
        self._runner: web.AppRunner | None = None
        # Webhooks that piled up (a burst of receipts, or the process was preempted)
        # are verified a few milliseconds' worth per loop turn, not all in one.
        self.turns = turns if turns is not None else TurnGate()
        self.accepted = 0
        self.refused = 0
        self.lag = LoopLag()
        self.burst = Burst()
        # Per claimed AccountSid: when a webhook was last refused / last believed.
        self.refused_at: dict[str, float] = {}
        self.accepted_at: dict[str, float] = {}
        self._on_empty: Callable[[], None] | None = None
        self._starting: asyncio.Future[None] | None = None

    @classmethod
    async def shared(cls, env: ProbeEnv, host: str, port: int, public_url: str) -> CallbackListener:
        """The drill's listener on *host:port*, started on first use."""
        key = f"twilio-callbacks:{host}:{port}"
        listener = env.shared.get(key)
        if listener is None:
            # Registered before it starts: probes opening concurrently share this one.
            listener = cls(host, port, public_url, TurnGate.shared(env))
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
        app = web.Application(client_max_size=CLIENT_MAX_SIZE)
        for path, handler in ((STATUS_PATH, self._status), (INBOUND_PATH, self._inbound)):
            app.router.add_post(self._prefix + path, handler, expect_handler=expect_handler)
        add_fallback_route(app)
        self._runner = web.AppRunner(app, **runner_settings(_log.name))
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=2048)
        await site.start()
        self.lag.start()

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
        await self.lag.stop()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    @property
    def running(self) -> bool:
        return self._runner is not None

    def bound(self, at: float, burst_age: float = 0.0) -> float:
        """How much later than Twilio's POST a webhook handled at *at* may have been."""
        return TRANSIT_S + self.lag.worst(at) + burst_age

    def trouble(self, account_sid: str) -> str | None:
        """Why this listener cannot bring *account_sid*'s webhooks right now (None: it can)."""
        if not self.running:
            return "状態通知の受信サーバーが停止しています / the status callback listener is not running"
        refused = self.refused_at.get(account_sid)
        if refused is not None and refused > self.accepted_at.get(account_sid, float("-inf")):
            return (
                "Twilio からの状態通知を署名不一致で拒否しています / "
                "status callbacks are refused (X-Twilio-Signature does not match)"
            )
        return None

    # ------------------------------------------------------------------ handlers

    async def _verified(self, request: web.Request) -> tuple[list[CallbackSink], dict[str, str]]:
        await self.turns.turn()
        return await self._verify(request)

    async def _verify(self, request: web.Request) -> tuple[list[CallbackSink], dict[str, str]]:
        try:
            form = await request.post()
        except web.HTTPException:
            raise  # 413: over CLIENT_MAX_SIZE
        except (ValueError, LookupError, HttpProcessingError) as exc:  # undecodable, bad charset
            raise web.HTTPBadRequest(text="malformed form body") from exc
        if not all(isinstance(v, str) for v in form.values()):
            raise web.HTTPBadRequest(text="form fields must be text")  # Twilio sends no files
        params = {k: str(v) for k, v in form.items()}
        signature = request.headers.get("X-Twilio-Signature", "")
        url = self._origin + request.path_qs
        account = params.get("AccountSid", "")
        sinks = [
            s.sink
            for s in self._subs
            if s.account_sid == account and signature and _signed(s.validator, url, form, signature)
        ]
        if not sinks:
            self.refused += 1
            self.refused_at[account] = time.monotonic()
            _log.warning(
                "refused a Twilio webhook to %s: bad or missing X-Twilio-Signature", request.path
            )
            raise web.HTTPForbidden(text="invalid signature")
        self.accepted += 1
        self.accepted_at[account] = time.monotonic()
        return sinks, params

    async def _status(self, request: web.Request) -> web.StreamResponse:
        await self._deliver(request, lambda sink: sink.on_status)
        return web.Response(status=204)

    async def _inbound(self, request: web.Request) -> web.StreamResponse:
        await self._deliver(request, lambda sink: sink.on_inbound)
        return web.Response(text=_EMPTY_TWIML, content_type="text/xml")

    async def _deliver(
        self, request: web.Request, handler: Callable[[CallbackSink], _Handler]
    ) -> None:
        """Verify one callback and hand it to each sink's *handler*, timed on arrival."""
        at, wall = Clock.monotonic(), Clock.wall()
        age = self.burst.enter(at)
        try:
            sinks, params = await self._verified(request)
            bound = self.bound(at, age)
            for sink in sinks:
                handler(sink)(params, at, wall, bound)
        finally:
            self.burst.leave(Clock.monotonic())
