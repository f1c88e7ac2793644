"""A local Twilio: the Messages API on loopback, with status progression and faults.

It is the far end of ``sim:`` channels of kind ``twilio`` and the server the
tests and the demo point the real ``twilio`` client at (through
:class:`probes.sms.twilio_http.AioTwilioHttp`). It reproduces the documented
shapes of the Programmable Messaging REST API
(https://www.twilio.com/docs/messaging/api/message-resource)::

    POST /2010-04-01/Accounts/{AccountSid}/Messages.json          create  → 201 Message
    GET  /2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json    fetch   → 200 Message
    GET  /2010-04-01/Accounts/{AccountSid}/Messages.json          list    → 200 page
         (To, From, DateSent / DateSent< / DateSent>, PageSize, Page, PageToken)

HTTP Basic auth (Account SID : Auth Token) is checked on every request;
errors use Twilio's JSON error body ``{"code", "message", "more_info",
"status"}`` (https://www.twilio.com/docs/usage/twilios-response).

After a create the message moves ``queued → sending → sent → delivered`` over
the channel's latency (the ``latency`` knob is the time until ``delivered``).
Each change after the first is POSTed to the message's ``StatusCallback``,
signed with ``X-Twilio-Signature`` like Twilio does
(https://www.twilio.com/docs/usage/webhooks/webhooks-security). A message to a
number the simulator knows as a *receiver* also arrives there: an inbound
Message appears in the receiver's account and, if the number has an SMS URL,
the inbound webhook is POSTed (https://www.twilio.com/docs/messaging/guides/webhook-request).

Knobs: ``latency``; ``loss`` (the message stays at ``sent`` forever: no
carrier receipt); ``outage`` (the connection is dropped, as a dead host would);
``rate_limit`` (creates per second, then 429 + Retry-After, code 20429);
``reject: auth`` (401, code 20003). The account resources a preflight reads
(Account, Balance, IncomingPhoneNumbers) and their knobs (a low balance, a
number without SMS, a suspended account) are :mod:`probes.sim.twilio_account`
(``sim.account_book``). Tests inject more with :meth:`inject`:
``429``, ``500``, ``20003``, ``21211``, ``21610`` (refused at create),
``30003``, ``30005``, ``30006``, ``30007``, ``30008`` (``undelivered`` or
``failed`` with that ErrorCode), ``stuck_sent``, ``false_delivered`` (receipt
says delivered, nothing arrives), ``503-html`` (an error page, not JSON) and
``timeout`` (the create is never answered: held until the client gives up, and
never taken); a 429's ``Retry-After`` is in seconds, or with
``retry_after_date=True`` an HTTP date (RFC 9110 allows both), rounded up to the
next whole second. :attr:`TwilioSimulator.read_delay` makes fetch and list
answers leave late (made at once, sent after the delay), as a slow API or
network would; :attr:`TwilioSimulator.drop_callbacks` loses every status
callback (Twilio gave up on them: nothing is POSTed) and
:attr:`TwilioSimulator.tamper_signatures` signs them with a wrong key.

Ground truth (:attr:`TwilioSimulator.ledger`, one entry per token and ``To``
number, on the channel's key — or the Account SID for accounts made with
:meth:`TwilioSimulator.add_account`)::

    received   the API answered 201 to the create
    visible    the handset has it: for a receiver number, the moment the inbound
               message can be read (listed, webhook sent); for any other number,
               the moment the carrier reports ``delivered`` (the sim's handset got
               it then). A ``false_delivered`` receipt is *not* visible (dropped).
    dropped    ``loss`` / ``stuck_sent`` (no receipt, never arrives), ``undelivered``
               / ``failed`` (also counted as a refusal with its ErrorCode: the
               carrier refused it), ``false_delivered``
    refused    ``final=False``: 429 / 20429, 5xx (may be taken on a retry);
               ``final=True``: 20003 auth, 21211 invalid To, 21610, 21606 …
    down       a channel's outage (from ``add_channel`` and ``set_outage``)

Latency and loss are drawn from the channel's own stream
(:meth:`~probes.sim.base.Simulator.rng_for`), so two channels never lose the
same positions because they share a seed, and one channel's draws do not
depend on what other channels send.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import hashlib
import hmac
import math
import re
import secrets
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from probes.settings import SecretRef
from probes.sim.base import SimKnobs, Simulator, TokenBucket, reserve_port
from probes.sim.ledger import Entry
from probes.sim.twilio_account import AccountBook
from probes.sms.status import count_segments

__all__ = ["FAULTS", "SimMessage", "TwilioSimulator", "twilio_signature"]

API = "/2010-04-01"
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_SENDING_AT, _SENT_AT = 0.1, 0.3  # fractions of the latency at which those statuses come
_PRICE_PER_SEGMENT = 0.0790  # what the sim bills, USD (price appears once sent)

# Create-time refusals: fault → (HTTP status, code, message). https://www.twilio.com/docs/api/errors
_REFUSALS: dict[str, tuple[int, int, str]] = {
    "429": (429, 20429, "Too Many Requests"),
    "500": (500, 20500, "An internal server error has occurred"),
    "20003": (401, 20003, "Authenticate"),
    "21211": (400, 21211, "The 'To' number is not a valid phone number."),
    "21610": (400, 21610, "Attempt to send to unsubscribed recipient"),
}
# Delivery-time failures: fault → (final status, ErrorCode, error_message).
_FAILURES: dict[str, tuple[str, int, str]] = {
    "30003": ("undelivered", 30003, "Unreachable destination handset"),
    "30005": ("undelivered", 30005, "Unknown destination handset"),
    "30006": ("undelivered", 30006, "Landline or unreachable carrier"),
    "30007": ("undelivered", 30007, "Message filtered"),
    "30008": ("failed", 30008, "Unknown error"),
}
FAULTS = frozenset({*_REFUSALS, *_FAILURES, "stuck_sent", "false_delivered", "503-html", "timeout"})
_HOLD_LIMIT_S = 30.0  # a "timeout" create is held at most this long for a client that stays

_HTML_503 = "<html><body><h1>503 Service Unavailable</h1></body></html>"

Fate = Literal["deliver", "stuck", "fail", "false_delivered"]


def twilio_signature(auth_token: str, url: str, params: dict[str, str]) -> str:
    """``X-Twilio-Signature``: base64 HMAC-SHA1 of the URL followed by each
    POST parameter name and value, sorted by name, keyed with the Auth Token.
    (Written from the documentation, independently of the twilio library.)
    """
    data = url + "".join(name + params[name] for name in sorted(params))
    mac = hmac.new(auth_token.encode("utf-8"), data.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def _rfc2822(ts: float) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(ts))


def _error(
    status: int, code: int, message: str, *, headers: dict[str, str] | None = None
) -> web.Response:
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return web.json_response(body, status=status, headers=headers)


@dataclass
class _Account:
    sid: str
    token: str
    knobs: SimKnobs = field(default_factory=SimKnobs)
    bucket: TokenBucket | None = None
    numbers: dict[str, str | None] = field(default_factory=dict)  # number → SMS URL


@dataclass
class _Fault:
    name: str
    to: str | None
    times: int
    retry_after: float
    retry_after_date: bool = False
    sent: list[str] = field(default_factory=list)  # the Retry-After values answered

    def retry_after_header(self) -> str:
        """``Retry-After``: seconds, or an HTTP date at least that far ahead (whole seconds)."""
        if not self.retry_after_date:
            value = f"{self.retry_after:g}"
        else:
            value = email.utils.formatdate(math.ceil(time.time() + self.retry_after), usegmt=True)
        self.sent.append(value)
        return value


@dataclass
class SimMessage:
    """One Message resource and what the simulator knows about it."""

    data: dict[str, Any]
    status_callback: str | None = None
    created_wall: float = 0.0
    created_mono: float = 0.0
    delivered_mono: float | None = None  # when the receipt said delivered
    arrived_mono: float | None = None  # when it arrived at a receiver number
    entries: list[Entry] = field(default_factory=list)  # its ground truth (one per token)

    @property
    def sid(self) -> str:
        return str(self.data["sid"])


@dataclass(frozen=True)
class RequestRecord:
    """One API request as the simulator saw it (for tests and benchmarks)."""

    at: float  # monotonic, when the response was ready
    method: str
    path: str
    status: int
    to: str | None = None


class TwilioSimulator(Simulator):
    """Local Twilio for simulated ``twilio`` channels, the demo and the tests."""

    kind = "twilio"

    def __init__(self, seed: int | None = None, host: str = "127.0.0.1") -> None:
        super().__init__(seed)
        self.host = host
        self.port = 0
        self.accounts: dict[str, _Account] = {}
        self.messages: dict[str, SimMessage] = {}
        self._callback_port: int | None = None
        self._callback_hold: socket.socket | None = None  # keeps the port ours until stop
        self.requests: list[RequestRecord] = []
        # (monotonic, url, HTTP status; 0: not delivered, -1: dropped by drop_callbacks)
        self.callbacks: list[tuple[float, str, int]] = []
        self.tamper_signatures = False  # sign webhooks with a wrong key
        self.drop_callbacks = False  # lose every status callback (nothing is POSTed)
        self.read_delay = 0.0  # fetch/list answers leave this long after they were made
        self._faults: list[_Fault] = []
        self._channels: dict[str, str] = {}  # channel key → account SID
        self._keys: dict[str, str] = {}  # account SID → channel key
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self._timers: set[asyncio.TimerHandle] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        # Account, Balance, IncomingPhoneNumbers (preflight reads) and their knobs.
        self.account_book = AccountBook(self)
        # Serve the API over HTTPS with this context (set before start: certificate checks).
        self.ssl_context: ssl.SSLContext | None = None

    # ------------------------------------------------------------------ Simulator contract

    @staticmethod
    def placeholder_settings() -> dict[str, Any]:
        return {
            "account_sid": "AC" + "0" * 32,
            "auth_token": "env:TSUNAGARI_SIM_PLACEHOLDER",
            "from": "+815012345678",
            "to": ["+819012345678"],
        }

    @property
    def base_url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    async def start(self) -> None:
        app = web.Application(middlewares=[self._record])
        # https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource
        app.router.add_post(API + "/Accounts/{account}/Messages.json", self._create)
        # https://www.twilio.com/docs/messaging/api/message-resource#read-multiple-message-resources
        app.router.add_get(API + "/Accounts/{account}/Messages.json", self._list)
        # https://www.twilio.com/docs/messaging/api/message-resource#fetch-a-message-resource
        app.router.add_get(API + "/Accounts/{account}/Messages/{sid}.json", self._fetch)
        self.account_book.routes(app)  # Account, Balance, IncomingPhoneNumbers (read-only)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0, backlog=2048, ssl_context=self.ssl_context)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        self._http = aiohttp.ClientSession(connector=connector, trust_env=False)

    async def stop(self) -> None:
        if self._callback_hold is not None:
            self._callback_hold.close()
            self._callback_hold = None
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def add_channel(
        self, channel_key: str, knobs: SimKnobs, raw_settings: dict[str, Any]
    ) -> dict[str, Any]:
        sid, token = self.add_account(knobs=knobs)
        self._channels[channel_key] = sid
        self._keys[sid] = channel_key
        if knobs.outage:
            self.ledger.down(channel_key, True)
        self.knobs[channel_key] = knobs
        placeholder = self.placeholder_settings()
        settings = {k: v for k, v in raw_settings.items() if k not in ("account_sid", "auth_token")}
        settings.setdefault("from", placeholder["from"])
        settings.setdefault("to", placeholder["to"])
        self.add_number(sid, str(settings["from"]))
        public_url: str | None = None
        if "status_callback" in settings:
            # One callback listener serves every simulated channel (routed by AccountSid):
            # one port chosen per simulator keeps the window for a port clash small.
            if self._callback_port is None:
                self._callback_hold = reserve_port(self.host)
                self._callback_port = int(self._callback_hold.getsockname()[1])
            port = self._callback_port
            public_url = f"http://{self.host}:{port}"
            settings["status_callback"] = {
                **(settings["status_callback"] or {}),
                "public_url": public_url,
                "listen_host": self.host,
                "listen_port": port,
            }
        loopback = settings.get("loopback")
        if isinstance(loopback, dict) and loopback.get("receiver"):
            inbound_url = f"{public_url}/twilio/inbound" if public_url else None
            self.add_number(sid, str(loopback["receiver"]), sms_url=inbound_url)
        # A channel that starts down talks to the live port too: its requests are
        # dropped while it is down, and set_outage(False) gives it back (a closed
        # port could never be reopened for it).
        settings["account_sid"] = sid
        settings["auth_token"] = SecretRef.inline(token)
        settings["api_base"] = self.base_url
        return settings

    def set_outage(self, channel_key: str, down: bool) -> None:
        super().set_outage(channel_key, down)
        self.accounts[self._channels[channel_key]].knobs = self.knobs[channel_key]

    # ------------------------------------------------------------------ test helpers

    def add_account(
        self, sid: str | None = None, token: str | None = None, knobs: SimKnobs | None = None
    ) -> tuple[str, str]:
        """A Twilio account; returns (Account SID, Auth Token)."""
        sid = sid or "AC" + "".join(self.rng.choice("0123456789abcdef") for _ in range(32))
        token = token or secrets.token_hex(16)
        knobs = knobs or SimKnobs()
        account = _Account(sid, token, knobs)
        if knobs.rate_limit:
            account.bucket = TokenBucket(knobs.rate_limit)
        self.accounts[sid] = account
        return sid, token

    def add_number(self, account_sid: str, number: str, sms_url: str | None = None) -> None:
        """Give *account_sid* a phone number; with *sms_url*, inbound SMS are POSTed there."""
        self.accounts[account_sid].numbers[number] = sms_url

    def inject(
        self,
        fault: str,
        *,
        to: str | None = None,
        times: int = 1,
        retry_after: float = 1.0,
        retry_after_date: bool = False,
    ) -> _Fault:
        """Make the next *times* creates (to *to*, or to anyone) meet *fault* (see FAULTS).

        Returns the armed fault (its ``sent``: the Retry-After values it answered).
        """
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; known: {sorted(FAULTS)}")
        armed = _Fault(fault, to, times, retry_after, retry_after_date)
        self._faults.append(armed)
        return armed

    def account_of(self, channel_key: str) -> str:
        return self._channels[channel_key]

    def channel_of(self, account_sid: str) -> str:
        """The ledger's channel key of *account_sid* (its SID when it is no channel's)."""
        return self._keys.get(account_sid, account_sid)

    def sign(self, account_sid: str, url: str, params: dict[str, str]) -> str:
        return twilio_signature(self.accounts[account_sid].token, url, params)

    def creates(self) -> list[RequestRecord]:
        return [r for r in self.requests if r.method == "POST"]

    # ------------------------------------------------------------------ handlers

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request)
        to = None
        if request.method == "POST":  # the form is parsed once and cached by aiohttp
            to = str((await request.post()).get("To", "")) or None
        self.requests.append(
            RequestRecord(time.monotonic(), request.method, request.path, response.status, to)
        )
        return response

    def authenticated(self, request: web.Request) -> _Account | web.Response:
        """The authenticated account of *request*, or the error response to send."""
        return self._account(request)

    def _account(self, request: web.Request) -> _Account | web.Response:
        """The authenticated account of *request*, or the error response to send."""
        account = self.accounts.get(request.match_info["account"])
        if account is not None and account.knobs.outage and request.transport is not None:
            # A channel taken away mid-drill: drop the connection, as a dead host would.
            request.transport.close()
            raise web.HTTPServiceUnavailable()
        login, password = _basic_credentials(request.headers.get("Authorization", ""))
        if (
            account is None
            or login != account.sid
            or not hmac.compare_digest(password.encode(), account.token.encode())
            or account.knobs.reject == "auth"
        ):
            return _error(
                401, 20003, "Authenticate", headers={"WWW-Authenticate": 'Basic realm="Twilio API"'}
            )
        return account

    def _take_fault(self, to: str, only: str | None = None) -> _Fault | None:
        """The next fault for *to*: of the name *only*, or (None) any but ``timeout``."""
        for fault in self._faults:
            named = fault.name == only if only is not None else fault.name != "timeout"
            if named and (fault.to is None or fault.to == to):
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    async def _create(self, request: web.Request) -> web.StreamResponse:
        account = self._account(request)
        if isinstance(account, web.Response):
            form = await request.post()
            channel = self.channel_of(request.match_info["account"])
            self._refused(channel, form, 20003, final=True)
            return account
        form = await request.post()
        if self._take_fault(str(form.get("To", "")), only="timeout") is not None:
            return await self._hold(request)
        response = self._create_checked(account, form)
        return response

    @staticmethod
    async def _hold(request: web.Request) -> web.StreamResponse:
        """Never answer: wait until the client gives up (closes), then drop the connection."""
        deadline = time.monotonic() + _HOLD_LIMIT_S
        while time.monotonic() < deadline:
            transport = request.transport
            if transport is None or transport.is_closing():
                break
            await asyncio.sleep(0.02)
        if request.transport is not None:
            request.transport.close()
        raise web.HTTPRequestTimeout()

    def _refused(self, channel: str, form: Any, code: int | str, *, final: bool) -> None:
        body, to = str(form.get("Body", "")), str(form.get("To", "")) or None
        self.ledger.refused_text(channel, body, to, code=str(code), final=final)

    def _create_checked(self, account: _Account, form: Any) -> web.Response:
        to, from_, body = (str(form.get(k, "")) for k in ("To", "From", "Body"))
        channel = self.channel_of(account.sid)

        def refuse(status: int, code: int, text: str, **kw: Any) -> web.Response:
            self._refused(channel, form, code, final=status != 429 and status < 500)
            return _error(status, code, text, **kw)

        if account.bucket is not None and not account.bucket.take():
            retry = max(1, int(account.bucket.retry_after() + 0.999))
            return refuse(429, 20429, "Too Many Requests", headers={"Retry-After": str(retry)})
        fault = self._take_fault(to)
        if fault is not None and fault.name == "503-html":
            # What an overloaded edge in front of the API answers: not Twilio's JSON.
            self._refused(channel, form, 503, final=False)
            return web.Response(status=503, text=_HTML_503, content_type="text/html")
        if fault is not None and fault.name in _REFUSALS:
            status, code, text = _REFUSALS[fault.name]
            headers = {"Retry-After": fault.retry_after_header()} if status == 429 else None
            return refuse(status, code, text, headers=headers)
        if not to:
            return refuse(400, 21604, "A 'To' phone number is required.")
        if not _E164.match(to):
            return refuse(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if from_ not in account.numbers:
            return refuse(
                400,
                21606,
                "The 'From' phone number provided is not a valid message-capable "
                "Twilio phone number for this destination/account.",
            )
        if not body:
            return refuse(400, 21602, "Message body is required.")
        if len(body) > 1600:
            return refuse(
                400, 21617, "The concatenated message body exceeds the 1600 character limit."
            )
        message = self._new_message(account, to, from_, body, "outbound-api", "queued")
        message.status_callback = str(form["StatusCallback"]) if "StatusCallback" in form else None
        message.entries = self.ledger.received_text(channel, body, to, at=message.created_mono)
        self._schedule(account, message, fault)
        return web.json_response(_public(message.data), status=201)

    async def _fetch(self, request: web.Request) -> web.StreamResponse:
        account = self._account(request)
        if isinstance(account, web.Response):
            return account
        message = self.messages.get(request.match_info["sid"])
        if message is None or message.data["account_sid"] != account.sid:
            return _error(404, 20404, f"The requested resource {request.path} was not found")
        return await self._slowly(web.json_response(_public(message.data)))

    async def _slowly(self, response: web.Response) -> web.Response:
        """A read answer made now, sent after :attr:`read_delay` (a slow API or network)."""
        if self.read_delay > 0:
            await asyncio.sleep(self.read_delay)
        return response

    async def _list(self, request: web.Request) -> web.StreamResponse:
        account = self._account(request)
        if isinstance(account, web.Response):
            return account
        q = request.query
        rows = [m for m in self.messages.values() if m.data["account_sid"] == account.sid]
        if "To" in q:
            rows = [m for m in rows if m.data["to"] == q["To"]]
        if "From" in q:
            rows = [m for m in rows if m.data["from"] == q["From"]]
        for key, keep in (
            ("DateSent>", lambda sent, ref: sent >= ref),
            ("DateSent<", lambda sent, ref: sent <= ref),
            ("DateSent", lambda sent, ref: time.gmtime(sent)[:3] == time.gmtime(ref)[:3]),
        ):
            if key in q:
                ref = _parse_when(q[key])
                rows = [
                    m for m in rows if m.data["_sent"] is not None and keep(m.data["_sent"], ref)
                ]
        rows.sort(key=lambda m: m.created_wall, reverse=True)  # newest first, like Twilio
        size = max(1, min(1000, int(q.get("PageSize", "50"))))
        page = max(0, int(q.get("Page", "0")))
        chunk = rows[page * size : (page + 1) * size]
        base = request.path
        keep_q = {k: v for k, v in q.items() if k not in ("Page", "PageToken", "PageSize")}

        def uri(n: int, token: str | None = None) -> str:
            params = {**keep_q, "PageSize": str(size), "Page": str(n)}
            if token:
                params["PageToken"] = token
            return f"{base}?{urlencode(params)}"

        more = (page + 1) * size < len(rows)
        response = web.json_response(
            {
                "messages": [_public(m.data) for m in chunk],
                "end": page * size + len(chunk) - 1 if chunk else 0,
                "first_page_uri": uri(0),
                "next_page_uri": uri(page + 1, "PA" + chunk[-1].sid) if more and chunk else None,
                "page": page,
                "page_size": size,
                "previous_page_uri": uri(page - 1) if page > 0 else None,
                "start": page * size,
                "uri": request.path_qs,
            }
        )
        return await self._slowly(response)

    # ------------------------------------------------------------------ the message lifecycle

    def _new_message(
        self, account: _Account, to: str, from_: str, body: str, direction: str, status: str
    ) -> SimMessage:
        sid = "SM" + secrets.token_hex(16)
        now = time.time()
        segments = count_segments(body).segments
        data: dict[str, Any] = {
            "account_sid": account.sid,
            "api_version": "2010-04-01",
            "body": body,
            "date_created": _rfc2822(now),
            "date_sent": _rfc2822(now) if direction == "inbound" else None,
            "date_updated": _rfc2822(now),
            "direction": direction,
            "error_code": None,
            "error_message": None,
            "from": from_,
            "messaging_service_sid": None,
            "num_media": "0",
            "num_segments": str(segments),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": status,
            "subresource_uris": {
                "media": f"{API}/Accounts/{account.sid}/Messages/{sid}/Media.json",
            },
            "to": to,
            "uri": f"{API}/Accounts/{account.sid}/Messages/{sid}.json",
            "_sent": now if direction == "inbound" else None,
        }
        message = SimMessage(data, created_wall=now, created_mono=time.monotonic())
        self.messages[sid] = message
        return message

    def _schedule(self, account: _Account, message: SimMessage, fault: _Fault | None) -> None:
        # The channel's own stream: both draws are made for every message, so a
        # channel's n-th message meets the same fate whatever the faults injected.
        rng = self.rng_for(self.channel_of(account.sid))
        latency = account.knobs.latency.sample(rng)
        lost = rng.random() < account.knobs.loss
        fate: Fate = "deliver"
        failure: tuple[str, int, str] | None = None
        if fault is not None and fault.name in _FAILURES:
            fate, failure = "fail", _FAILURES[fault.name]
        elif fault is not None and fault.name == "stuck_sent":
            fate = "stuck"
        elif fault is not None and fault.name == "false_delivered":
            fate = "false_delivered"
        elif lost:
            fate = "stuck"
        self._later(latency * _SENDING_AT, lambda: self._advance(account, message, "sending"))
        self._later(latency * _SENT_AT, lambda: self._advance(account, message, "sent"))
        if fate == "stuck":
            why = "loss" if fault is None else "stuck_sent"
            self._drop(message, f"{why}: stays at 'sent', no receipt")
            return
        if fate == "fail":
            assert failure is not None
            status, code, text = failure

            def fail() -> None:
                # The carrier refused it after Twilio took it: refused, and never visible.
                for entry in message.entries:
                    self.ledger.refused(
                        entry.channel, entry.token, entry.recipient, code=str(code), final=True
                    )
                self._drop(message, f"{status} ({code})")
                self._advance(account, message, status, code, text)

            self._later(latency, fail)
            return

        def deliver() -> None:
            if fate == "deliver":
                self._arrive(message)
            else:
                self._drop(message, "false_delivered: the receipt says delivered, nothing arrived")
            self._advance(account, message, "delivered")

        self._later(latency, deliver)

    def _drop(self, message: SimMessage, detail: str) -> None:
        for entry in message.entries:
            self.ledger.dropped(entry, detail)

    def _later(self, delay: float, action: Any) -> None:
        loop = asyncio.get_running_loop()
        timer: asyncio.TimerHandle | None = None

        def fire() -> None:
            if timer is not None:
                self._timers.discard(timer)
            action()

        timer = loop.call_later(max(0.0, delay), fire)
        self._timers.add(timer)

    def _advance(
        self,
        account: _Account,
        message: SimMessage,
        status: str,
        error_code: int | None = None,
        error_message: str | None = None,
    ) -> None:
        now = time.time()
        data = message.data
        data["status"] = status
        data["date_updated"] = _rfc2822(now)
        if status == "sent":
            data["date_sent"] = _rfc2822(now)
            data["_sent"] = now
            segments = int(data["num_segments"])
            data["price"] = f"-{_PRICE_PER_SEGMENT * segments:.5f}"
        if status == "delivered":
            message.delivered_mono = time.monotonic()
        if error_code is not None:
            data["error_code"] = error_code
            data["error_message"] = error_message
        if message.status_callback:
            # https://www.twilio.com/docs/messaging/guides/track-outbound-message-status
            params = {
                "AccountSid": account.sid,
                "ApiVersion": "2010-04-01",
                "From": data["from"],
                "MessageSid": message.sid,
                "MessageStatus": status,
                "SmsSid": message.sid,
                "SmsStatus": status,
                "To": data["to"],
            }
            if error_code is not None:
                params["ErrorCode"] = str(error_code)
            self._post(account, message.status_callback, params)

    def _arrive(self, outbound: SimMessage) -> None:
        """The handset has *outbound*; a receiver number the simulator knows lists it."""
        now = time.monotonic()
        for entry in outbound.entries:
            self.ledger.visible(entry, at=now)
        to = outbound.data["to"]
        # The sender's own account first: simulated channels that list the same receiver
        # number each get the number in their own account, and each must see its arrivals.
        sender = self.accounts.get(outbound.data["account_sid"])
        others = [a for a in self.accounts.values() if a is not sender]
        for account in [sender, *others] if sender is not None else others:
            if to in account.numbers:
                inbound = self._new_message(
                    account, to, outbound.data["from"], outbound.data["body"], "inbound", "received"
                )
                inbound.created_mono = now  # one instant: visible, listable, webhook sent
                outbound.arrived_mono = inbound.created_mono
                sms_url = account.numbers[to]
                if sms_url:
                    # https://www.twilio.com/docs/messaging/guides/webhook-request
                    params = {
                        "AccountSid": account.sid,
                        "ApiVersion": "2010-04-01",
                        "Body": inbound.data["body"],
                        "From": inbound.data["from"],
                        "MessageSid": inbound.sid,
                        "NumMedia": "0",
                        "NumSegments": inbound.data["num_segments"],
                        "SmsMessageSid": inbound.sid,
                        "SmsSid": inbound.sid,
                        "SmsStatus": "received",
                        "To": to,
                    }
                    self._post(account, sms_url, params)
                return

    def _post(self, account: _Account, url: str, params: dict[str, str]) -> None:
        if self.drop_callbacks and "MessageStatus" in params:
            self.callbacks.append((time.monotonic(), url, -1))  # lost on Twilio's side
            return
        key = account.token if not self.tamper_signatures else account.token[::-1] + "x"
        signature = twilio_signature(key, url, params)
        task = asyncio.get_running_loop().create_task(self._deliver_webhook(url, params, signature))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver_webhook(self, url: str, params: dict[str, str], signature: str) -> None:
        assert self._http is not None
        headers = {"X-Twilio-Signature": signature, "User-Agent": "TwilioProxy/1.1"}
        try:
            async with self._http.post(
                url, data=params, headers=headers, timeout=aiohttp.ClientTimeout(total=15)
            ) as resp:
                await resp.read()
                self.callbacks.append((time.monotonic(), url, resp.status))
        except (aiohttp.ClientError, TimeoutError):
            self.callbacks.append((time.monotonic(), url, 0))  # Twilio does not retry these


def _basic_credentials(header: str) -> tuple[str, str]:
    """(login, password) from an HTTP Basic Authorization header; empty strings if none."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return "", ""
    try:
        login, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return "", ""
    return login, password


def _public(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if not k.startswith("_")}


def _parse_when(text: str) -> float:
    """Seconds since the epoch from ``YYYY-MM-DD`` or an ISO 8601 date-time."""
    from datetime import UTC, datetime

    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()
