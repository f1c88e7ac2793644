"""SMS through Twilio: send with the official client, confirm by carrier receipt or loopback.

Registry example::

    - id: sms
      kind: twilio
      account_sid: env:ADACHI_TWILIO_SID        # or the plain AC… SID
      auth_token: env:ADACHI_TWILIO_TOKEN       # always a reference
      from: "+815012345678"
      to: ["+819012345678", "+818012345678"]    # one delivery per recipient
      status_callback:                          # optional; without it: polling
        public_url: https://drill.example.lg.jp/tsunagari   # default: the listener itself
        listen_host: 127.0.0.1
        listen_port: 8931
        fallback_poll: 30s                      # poll anyway, in case a callback is lost
      loopback:                                 # optional: true end-to-end
        receiver: "+818012345678"               # a drill number we can read, also in ``to``
      price_per_segment: 0.0845
      currency: USD
      caps: {max_messages: 20, max_segments: 60, max_cost: 5}
      poll_interval: 1s                         # Message polling without callbacks;
                                                # null: no polling (see "What counts")
      max_in_flight: 20                         # Twilio API calls at once
      max_retries: 5                            # 429s honoured (Retry-After) per message

What counts, per recipient (``Sighting.evidence``, then the runner's outcome):

- **seen** — the loopback ``receiver``: the message arrived at a number we can
  read (the inbound webhook, or listing the Messages sent to it). A carrier
  receipt without that arrival is a false receipt: not seen, ``lost``.
- **receipt** — every other number: the carrier's ``delivered`` (status
  callback, or polling the Message resource). A person's phone cannot be read,
  so this is the most that can be known; it is never shown as seen.
- **accepted** — a number nothing can confirm: no status callback and
  ``poll_interval: null`` (no polling). :meth:`TwilioProbe.observes` is False
  for it, so the runner records it unconfirmed, never lost.
- ``undelivered`` / ``failed`` from the carrier → ``rejected`` (with its
  ErrorCode): the carrier refused it.
- Still ``queued``/``sending``/``sent`` when the step ends → ``lost``, with
  :meth:`TwilioProbe.timeout_reason` ("no carrier receipt (still 'sent')").
  Twilio keeps a message at ``sent`` forever when no receipt comes, so ``lost``
  here means "the confirmation this channel is configured to wait for did not
  come", not proof that the handset has nothing; a carrier known to send no
  receipts should be registered without callback and polling (accepted) or
  with a loopback number (seen).
- Twilio unreachable for the observer (polling or listing failed), or status
  callbacks refused by signature: :meth:`TwilioProbe.observer_trouble` says so,
  and a message not confirmed meanwhile is ``error`` (the drill could not look).
  Twilio's API is the send side too, but a message it took before it went away
  is on its way all the same: not being able to look at it is still ``error``;
  a send into the outage is the channel's (unreachable → ``lost``).

Error bounds (``Sighting.error_bound_s``: how much later than the truth the
sighting may be). A poll or a listing is stamped when its answer arrives; the
truth is after the last request that did *not* show it (or the create request
itself), so ``bound = answer − that request's start`` — provable, whatever the
load. A webhook is stamped when its handler starts; its bound is the transit
allowance plus the event loop's measured lag plus the age of the burst of
webhooks it queued in (:mod:`probes.sms.callbacks`), capped by the poll-style
bound — measured, not proven. Twilio's own delay before it POSTs (its queue,
the carrier's receipt delay) cannot be seen and is not in the bound.

Every "slow down" (HTTP 429 / 20429) to a create is counted with
:meth:`~probes.base.Probe.note_throttle` as it comes, so a send cut short by the
step's timeout still reports how often it was throttled — and, with
:meth:`~probes.base.Probe.note_try`, whether its last retry was still unanswered.

Before any send the runner calls :func:`probes.sms.budget.plan_cost` with the
run's SMS; the probe also refuses a send that would cross a cap. Recipients
come only from ``to``; the Auth Token is read at ``open`` and lives only inside
the twilio client and the signature validator (never logged or raised).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
from pydantic import ConfigDict, Field, field_validator, model_validator
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException

from probes.base import (
    Accepted,
    ChannelRejected,
    ChannelSettings,
    ChannelUnreachable,
    Clock,
    DrillMessage,
    ObserverFault,
    Probe,
    ProbeEnv,
    ProbeError,
    Sighting,
    find_tokens,
)
from probes.faultcodes import transport_code
from probes.settings import Duration, SecretRef
from probes.sim.base import Simulator
from probes.sms.budget import Caps, CostProfile, RunBudget
from probes.sms.callbacks import CallbackListener, callback_urls
from probes.sms.status import (
    Phase,
    Reason,
    classify,
    count_segments,
    error_reason,
    is_temporary,
    is_throttle,
    lost_reason,
    parse_e164,
    status_rank,
)
from probes.sms.turns import TurnGate
from probes.sms.twilio_http import ANSWERED, RETRY_AFTER, AioTwilioHttp

if TYPE_CHECKING:
    from probes.preflight import PreflightReport

__all__ = [
    "LoopbackSettings",
    "StatusCallbackSettings",
    "TwilioProbe",
    "TwilioSettings",
    "UnregisteredRecipient",
]

_log = logging.getLogger("tsunagari.twilio")

_SID_RE = r"^AC[0-9a-fA-F]{32}$"
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def _account_sid(value: Any) -> Any:
    if isinstance(value, str) and value.split(":", 1)[0] in ("env", "file"):
        return SecretRef.parse(value)
    if isinstance(value, str):
        if not re.fullmatch(_SID_RE, value):
            raise ValueError(
                "account_sid は AC で始まる 34 文字か env:/file: 参照です / "
                "account_sid must be an AC… SID (34 characters) or an env:/file: reference"
            )
    return value


class StatusCallbackSettings(ChannelSettings):
    """Where Twilio's status callbacks (and inbound webhooks) reach the harness."""

    public_url: str | None = Field(
        default=None,
        description="Twilio が呼ぶ公開 URL（省略時は待ち受けアドレス） / the public URL Twilio calls (default: the listener's own address)",
    )  # default: the listener's own address
    listen_host: str = Field(
        default="127.0.0.1", description="待ち受けるアドレス / the address the listener binds"
    )
    listen_port: int = Field(
        default=8931, ge=1, le=65535, description="待ち受けるポート / the port the listener binds"
    )
    fallback_poll: Duration = Field(
        default=30.0,
        description="コールバックが失われた場合に備えて照会する間隔 / poll anyway this often, in case a callback is lost",
    )  # poll anyway, in case a callback is lost

    @field_validator("public_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or "_" in parts.netloc:
            raise ValueError(
                "public_url は http(s) の URL です（ホスト名に _ は使えません） / "
                "public_url must be an http(s) URL whose host has no underscore"
            )
        return value.rstrip("/")

    @property
    def url(self) -> str:
        """The URL Twilio calls: ``public_url``, or the listener's own address."""
        return self.public_url or f"http://{self.listen_host}:{self.listen_port}"


class LoopbackSettings(ChannelSettings):
    """True end-to-end: a drill number we can read, also listed as a recipient."""

    receiver: str = Field(
        description="読める訓練用の番号（to にも記載） / a drill number we can read (also listed in to)"
    )
    account_sid: str | SecretRef | None = Field(
        default=None,
        description="その番号のアカウント（自分のでない場合） / that number's account, if not ours",
    )  # the receiver's account, if not ours
    auth_token: SecretRef | None = Field(
        default=None, description="そのアカウントの認証トークン / that account's auth token"
    )
    receipt_grace: Duration = Field(
        default=5.0,
        description="着信後、配信通知を待つ時間 / after arrival, how long to wait for the carrier receipt",
    )  # after arrival, wait this long for the carrier receipt

    _sid = field_validator("account_sid", mode="before")(_account_sid)

    @field_validator("receiver")
    @classmethod
    def _e164(cls, value: str) -> str:
        return parse_e164(value, recipient=True)

    @model_validator(mode="after")
    def _both_or_neither(self) -> LoopbackSettings:
        if (self.account_sid is None) != (self.auth_token is None):
            raise ValueError(
                "loopback の account_sid と auth_token は両方指定してください / "
                "give both loopback account_sid and auth_token, or neither"
            )
        return self


class TwilioSettings(ChannelSettings):
    """Settings of a ``twilio`` channel (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    account_sid: str | SecretRef = Field(
        description="アカウント SID（AC…）か env:/file: 参照 / the account SID (AC…) or an env:/file: reference"
    )
    auth_token: SecretRef = Field(
        description="認証トークン（必ず参照） / the auth token (always a reference)"
    )
    from_: str = Field(
        alias="from", description="送信元の番号（E.164、+81…） / the sending number (E.164, +81…)"
    )
    to: list[str] = Field(
        min_length=1,
        description="宛先の番号（E.164、宛先ごとに 1 配信） / the recipients (E.164; each is one delivery)",
    )
    status_callback: StatusCallbackSettings | None = Field(
        default=None,
        description="配信状況のコールバックを受ける設定（省略時は照会のみ） / where status callbacks arrive (without it: polling)",
    )
    loopback: LoopbackSettings | None = Field(
        default=None,
        description="自分で読める番号で本当に届いたか確かめる / confirm true arrival on a number we can read",
    )
    price_per_segment: float | None = Field(
        default=None, ge=0, description="1 セグメントの料金 / the price of one segment"
    )
    currency: str = Field(default="USD", description="料金の通貨 / the price's currency")
    caps: Caps = Field(
        default=Caps(),
        description="1 回の実行の上限（通数・セグメント・費用） / per-run caps (messages, segments, cost)",
    )
    poll_interval: Duration | None = Field(
        default=1.0,
        description="Message を照会する間隔（null: コールバックのみ） / how often a Message is polled (null: callbacks only)",
    )  # None: no Message polling (receipts by callback only)
    max_retries: int = Field(
        default=5,
        ge=0,
        le=20,
        description="「混雑」（429）のとき再送する最大回数 / retries after 429",
    )
    max_backoff: Duration = Field(
        default=30.0, description="再送の待ちの上限 / the longest wait between retries"
    )
    request_timeout: Duration = Field(
        default=10.0, description="1 回の API 呼び出しの制限時間 / time limit of one API call"
    )
    max_in_flight: int = Field(
        default=20,
        ge=1,
        le=100,
        description="同時に送る API 要求の数 / concurrent Twilio API requests",
    )  # concurrent Twilio API requests
    api_base: str | None = Field(
        default=None,
        description="API の URL（省略時は api.twilio.com） / the API URL (default: api.twilio.com)",
    )  # the local Twilio (demo, tests); None is api.twilio.com

    _sid = field_validator("account_sid", mode="before")(_account_sid)

    @field_validator("from_")
    @classmethod
    def _from_e164(cls, value: str) -> str:
        return parse_e164(value)

    @field_validator("to")
    @classmethod
    def _to_e164(cls, value: list[str]) -> list[str]:
        numbers = [parse_e164(n, recipient=True) for n in value]
        if len(set(numbers)) != len(numbers):
            raise ValueError("to に同じ番号が重複しています / 'to' lists a number twice")
        return numbers

    @model_validator(mode="after")
    def _consistent(self) -> TwilioSettings:
        if self.from_ in self.to:
            raise ValueError(
                "from と同じ番号には送れません / 'to' cannot include the 'from' number"
            )
        if self.loopback is not None and self.loopback.receiver not in self.to:
            raise ValueError(
                "loopback.receiver は to にも登録してください / "
                "loopback.receiver must also be listed in 'to'"
            )
        return self


class UnregisteredRecipient(ProbeError, ValueError):
    """Refused: the recipient is not one of the channel's registered numbers."""


@dataclass(slots=True)
class _Track:
    """What the probe knows about one drill message on its way."""

    token: str
    recipient: str
    loopback: bool
    sid: str | None = None
    status: str | None = None
    error_code: int | None = None
    receipt_at: float | None = None
    receipt_wall: float | None = None
    receipt_bound: float = 0.0
    receipt_via: str = ""
    created_at: float = field(default_factory=Clock.monotonic)  # before any create
    unseen_at: float | None = None  # the latest moment it was known not delivered
    inbound_at: float | None = None
    inbound_wall: float | None = None
    inbound_bound: float = 0.0
    polled_at: float | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def touch(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


_VIA_JA = {"status callback": "状態通知", "polling": "ポーリング", "create": "作成応答"}
_EARLY_LIMIT = 10_000
_KEEP_FINISHED = 10_000  # tracks kept after their observer is done (see TwilioProbe._finish)
_LIST_EVERY = 1.0  # listing the loopback number when ``poll_interval`` is null


def _build_client(sid: str, token: str, http: AioTwilioHttp) -> Any:
    """A twilio Client with its Message resources built.

    The twilio package imports (and builds) ``client.messages`` lazily; ~50
    modules on first touch. Called in a worker thread, so the loop never waits.
    """
    from twilio.rest import Client

    client = Client(sid, token, sid, http_client=http)
    _ = client.messages
    return client


class TwilioProbe(Probe):
    """SMS through Twilio, confirmed by carrier receipt — and by arrival, in loopback mode."""

    kind = "twilio"
    summary = (
        "SMS（Twilio）: 公式クライアントで送り、配信レシート（ステータスコールバック）かループバック番号で確認",
        "SMS through Twilio: send with the official client, confirm by carrier receipt or loopback",
    )
    Settings = TwilioSettings
    settings: TwilioSettings

    def __init__(self, channel_id: str, settings: ChannelSettings, env: ProbeEnv) -> None:
        super().__init__(channel_id, settings, env)
        self.budget = RunBudget.shared(env, self.cost_profile())  # the channel's, per drill
        # Twilio API calls in flight (create, fetch, list), parsing included: Twilio
        # answers 429 past an account's concurrency limit, and a bounded number of
        # calls finishing together keeps the event loop's bursts short.
        self._api = asyncio.Semaphore(self.settings.max_in_flight)
        # Building a create request is a slice of CPU: a few milliseconds' worth per
        # loop turn, shared with the callback listener (probes.sms.turns).
        self._turns = TurnGate.shared(env)
        self._client: Any = None
        self._loop_client: Any = None
        self._http: AioTwilioHttp | None = None
        self._tracks: dict[str, _Track] = {}
        self._by_sid: dict[str, _Track] = {}
        self._finished: deque[str] = deque()  # tokens whose observer is done, oldest first
        self._early: OrderedDict[str, tuple[str, int | None, float, float, float]] = OrderedDict()
        self._arrived: OrderedDict[str, tuple[float, float, float]] = OrderedDict()
        self._inbound_sids: set[str] = set()
        self._inbound_task: asyncio.Task[None] | None = None
        self._inbound_wanted = asyncio.Event()
        self._listener: CallbackListener | None = None
        self._opened_wall = Clock.wall()
        self.throttled_polls = 0
        self._api_trouble: str | None = None  # the last poll/listing could not reach Twilio
        self._last_look_ok: float | None = None  # monotonic, the last successful poll/listing
        self._account_sid: str = ""

    # ------------------------------------------------------------------ contract

    @classmethod
    def simulator(cls) -> type[Simulator]:
        from probes.sim.twilio import TwilioSimulator

        return TwilioSimulator

    def recipients(self) -> list[str | None]:
        return list(self.settings.to)

    def is_live(self) -> bool:
        base = self.settings.api_base
        return base is None or (urlsplit(base).hostname or "") not in _LOOPBACK_HOSTS

    def cost_profile(self) -> CostProfile:
        """This channel's caps, price and what it has already sent in this run."""
        s = self.settings
        budget: RunBudget | None = getattr(self, "budget", None)
        return CostProfile(
            self.channel_id,
            len(s.to),
            s.caps,
            s.price_per_segment,
            s.currency,
            spent_messages=budget.messages if budget is not None else 0,
            spent_segments=budget.segments if budget is not None else 0,
        )

    async def preflight(self) -> PreflightReport:
        """Account, sending number, balance against the cost cap, API certificate, callback
        URL — read-only, nothing sent (:mod:`probes.sms.preflight`)."""
        from probes.sms.preflight import check_twilio

        return await check_twilio(self)

    async def open(self) -> None:
        if self._client is not None:
            return
        s = self.settings
        self._opened_wall = Clock.wall()
        self._http = AioTwilioHttp(
            self.env.http, base_url=s.api_base, timeout=s.request_timeout, turns=self._turns
        )
        sid = _reveal(s.account_sid)
        token = s.auth_token.reveal()
        self._client = await asyncio.to_thread(_build_client, sid, token, self._http)
        self._loop_client = self._client
        self._account_sid = sid
        loop_sid, loop_token = sid, token
        if s.loopback is not None and s.loopback.auth_token is not None:
            assert s.loopback.account_sid is not None
            loop_sid = _reveal(s.loopback.account_sid)
            loop_token = s.loopback.auth_token.reveal()
            self._loop_client = await asyncio.to_thread(
                _build_client, loop_sid, loop_token, self._http
            )
        if s.status_callback is not None:
            cb = s.status_callback
            self._listener = await CallbackListener.shared(
                self.env, cb.listen_host, cb.listen_port, cb.url
            )
            self._listener.subscribe(sid, token, self)
            if loop_sid != sid:
                self._listener.subscribe(loop_sid, loop_token, self)
        if s.loopback is not None:
            self._inbound_task = asyncio.create_task(self._inbound_loop())

    async def send(self, message: DrillMessage) -> Accepted:
        s = self.settings
        to = self._recipient(message)
        body = message.render()
        planned = count_segments(body)
        self.budget.charge(planned.segments)  # refuses before anything leaves
        track = self._track(message, to)
        if self._client is None:
            await self.open()
        kwargs: dict[str, Any] = {"to": to, "from_": s.from_, "body": body}
        if s.status_callback is not None:
            kwargs["status_callback"] = callback_urls(s.status_callback.url)[0]
        throttled = 0
        while True:
            try:
                async with self._api:
                    await self._turns.turn()
                    self.note_try(message.token)  # a cut from here on leaves its answer unread
                    attempt_at = Clock.monotonic()
                    created = await self._client.messages.create_async(**kwargs)
                self.note_answered(message.token)
                break
            except (TwilioRestException, TwilioServiceException) as exc:
                code, status = _code_of(exc), int(exc.status)
                if is_throttle(code, status):
                    # Counted as it comes: the step's timeout may cancel the backoff below.
                    self.note_throttle(message.token, str(code or status))
                if is_throttle(code, status) and throttled < s.max_retries:
                    await asyncio.sleep(self._backoff(throttled))
                    throttled += 1
                    continue
                reason = error_reason(code, http_status=status, detail=_detail_of(exc))
                raise ChannelRejected(
                    str(reason), code=str(code or status), temporary=is_temporary(code, status)
                ) from exc
            except TimeoutError as exc:
                wait = s.request_timeout
                raise ChannelUnreachable(
                    f"Twilio が {wait:g} 秒以内に応答しません（受け付けられたかは不明） / "
                    f"Twilio did not answer within {wait:g} s (taken or not, unknown)",
                    code="timeout",
                ) from exc
            except aiohttp.ClientError as exc:
                name = exc.__class__.__name__
                raise ChannelUnreachable(
                    f"Twilio に接続できません（{name}） / cannot reach Twilio ({name})",
                    code=transport_code(exc),
                ) from exc
        # When Twilio's answer was read, not after its wait for a turn (probes.sms.turns).
        accepted_at = _answered(attempt_at)
        sid = str(created.sid)
        track.sid = sid
        track.polled_at = accepted_at  # the first poll is one interval after acceptance
        # Nothing happens to a message before its create reached Twilio.
        track.unseen_at = max(track.unseen_at or attempt_at, attempt_at)
        self._by_sid[sid] = track
        self._apply(
            track,
            str(created.status or "queued"),
            created.error_code,
            accepted_at,
            _wall_at(accepted_at),
            0.0,
            "create",
        )
        if sid in self._early:
            self._apply(track, *self._early.pop(sid), "status callback")
        track.touch()
        segments = _int(created.num_segments) or planned.segments
        return Accepted(
            at=accepted_at,
            provider_id=sid,
            detail=f"Twilio {created.status} ({planned.encoding}, {segments} seg)",
            segments=segments,
            throttled=throttled,
        )

    async def observe(self, message: DrillMessage) -> Sighting:
        # An unregistered recipient is refused by send(); observing it just waits.
        to = message.recipient or (self.settings.to[0] if len(self.settings.to) == 1 else "")
        track = self._track(message, to)
        try:
            return await self._watch(track)
        finally:
            self._finish(message.token)

    async def _watch(self, track: _Track) -> Sighting:
        while True:
            sighting = self._settle(track)
            if sighting is not None:
                return sighting
            now = Clock.monotonic()
            timeouts: list[float] = []
            every = self._poll_every()
            if track.sid is not None and every is not None:
                due = (track.polled_at or now) + every
                if due <= now:
                    await self._poll(track)
                    continue
                timeouts.append(due - now)
            if track.loopback and track.inbound_at is not None:
                timeouts.append(track.inbound_at + self._grace() - now)
            changed = track.changed
            # asyncio.timeout, not wait_for: no extra task per wait (1,000s in flight).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, min(timeouts)) if timeouts else None):
                    await changed.wait()

    def observes(self, recipient: str | None) -> bool:
        """Can arrival at *recipient* be confirmed at all (see "What counts")?

        The loopback receiver always (by its inbound messages); any other number
        only by a carrier receipt, which needs a status callback or polling.
        """
        loop = self.settings.loopback
        if loop is not None and recipient == loop.receiver:
            return True
        s = self.settings
        return s.status_callback is not None or s.poll_interval is not None

    def observer_trouble(self) -> str | None:
        """Why the observer cannot look right now (None: it can).

        Polling or listing could not reach Twilio on its last try, or the status
        callback listener is refusing this account's callbacks (bad signature)
        and no poll has succeeded since.
        """
        if self._api_trouble is not None:
            return self._api_trouble
        if self._listener is not None:
            trouble = self._listener.trouble(self._account_sid)
            refused = self._listener.refused_at.get(self._account_sid)
            polled_since = (
                self._last_look_ok is not None
                and refused is not None
                and self._last_look_ok > refused
            )
            if trouble is not None and not polled_since:
                return trouble
        return None

    def timeout_reason(self, message: DrillMessage) -> str | None:
        """Why *message* timed out, for the runner's ``lost`` record (None: nothing to add)."""
        track = self._tracks.get(message.token)
        if track is None or track.sid is None:
            return None
        receipt_ok = classify(track.status or "").phase is Phase.DELIVERED
        if track.loopback and receipt_ok and track.inbound_at is None:
            return str(lost_reason(track.status, receipt_without_arrival=True))
        return str(lost_reason(track.status))

    async def close(self) -> None:
        if self._inbound_task is not None:
            self._inbound_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._inbound_task
            self._inbound_task = None
        if self._listener is not None:
            await self._listener.unsubscribe(self)
            self._listener = None
        self._client = self._loop_client = None

    # ------------------------------------------------------------------ callbacks (CallbackSink)

    def on_status(self, params: dict[str, str], at: float, wall: float, bound: float) -> None:
        sid = params.get("MessageSid") or params.get("SmsSid") or ""
        status = params.get("MessageStatus") or params.get("SmsStatus") or ""
        code = _int(params.get("ErrorCode"))
        track = self._by_sid.get(sid)
        if track is None:
            # The callback overtook the create response; keep it for send() to apply.
            self._early[sid] = (status, code, at, wall, bound)
            while len(self._early) > _EARLY_LIMIT:
                self._early.popitem(last=False)
            return
        self._apply(track, status, code, at, wall, bound, "status callback")
        track.touch()

    def on_inbound(self, params: dict[str, str], at: float, wall: float, bound: float) -> None:
        loop = self.settings.loopback
        if loop is None or params.get("To") != loop.receiver:
            return
        self._inbound_sids.add(params.get("MessageSid", ""))
        for token in find_tokens(params.get("Body", "")):
            self._arrival(token, at, wall, bound)

    # ------------------------------------------------------------------ internals

    def _recipient(self, message: DrillMessage) -> str:
        to = message.recipient
        if to is None and len(self.settings.to) == 1:
            return self.settings.to[0]
        if to is None or to not in self.settings.to:
            raise UnregisteredRecipient(
                f"登録簿にない宛先には送りません: {to!r} / "
                f"refusing to send to a number not registered for this channel: {to!r}",
                code="unregistered_recipient",
            )
        return to

    def _track(self, message: DrillMessage, to: str) -> _Track:
        track = self._tracks.get(message.token)
        if track is None:
            loop = self.settings.loopback
            track = _Track(message.token, to, loop is not None and loop.receiver == to)
            self._tracks[message.token] = track
            early = self._arrived.pop(message.token, None)
            if early is not None:
                track.inbound_at, track.inbound_wall, track.inbound_bound = early
            if track.loopback:
                self._inbound_wanted.set()
        return track

    def _apply(
        self,
        track: _Track,
        status: str,
        error_code: int | None,
        at: float,
        wall: float,
        bound: float,
        via: str,
    ) -> None:
        if status_rank(status) < status_rank(track.status):
            return  # an out-of-order callback never moves a message back
        if status_rank(status) == status_rank(track.status) and track.status is not None:
            return
        track.status = status
        track.error_code = error_code
        if classify(status).phase is Phase.DELIVERED and track.receipt_at is None:
            if track.unseen_at is not None:
                # Never claim more than "somewhere since it was last known undelivered".
                bound = min(bound, max(0.0, at - track.unseen_at))
            track.receipt_at, track.receipt_wall = at, wall
            track.receipt_bound, track.receipt_via = bound, via

    def _arrival(self, token: str, at: float, wall: float, bound: float) -> None:
        track = self._tracks.get(token)
        if track is None:
            self._arrived[token] = (at, wall, bound)
            while len(self._arrived) > _EARLY_LIMIT:
                self._arrived.popitem(last=False)
            return
        if track.inbound_at is None:
            # It cannot have arrived before its track existed (made before the create).
            bound = min(bound, max(0.0, at - track.created_at))
            track.inbound_at, track.inbound_wall, track.inbound_bound = at, wall, bound
            track.touch()

    def _finish(self, token: str) -> None:
        """*token*'s observer is done; forget the oldest finished tracks past :data:`_KEEP_FINISHED`.

        A finished track is kept a while (the runner asks :meth:`timeout_reason` after
        a timeout; late callbacks find their message), not for the drill's whole life:
        a long drill's memory stays bounded by the messages in flight.
        """
        self._finished.append(token)
        while len(self._finished) > _KEEP_FINISHED:
            track = self._tracks.pop(self._finished.popleft(), None)
            if track is not None and track.sid is not None:
                self._by_sid.pop(track.sid, None)

    def _grace(self) -> float:
        return self.settings.loopback.receipt_grace if self.settings.loopback else 0.0

    def _poll_every(self) -> float | None:
        cb = self.settings.status_callback
        return cb.fallback_poll if cb is not None else self.settings.poll_interval

    def _backoff(self, attempt: int) -> float:
        hinted = RETRY_AFTER.get()
        delay = hinted if hinted is not None else 0.5 * (2**attempt) * random.uniform(0.8, 1.2)
        return min(delay, self.settings.max_backoff)

    def _settle(self, track: _Track) -> Sighting | None:
        """A sighting if *track* is confirmed; raise if it failed; None to keep waiting."""
        verdict = classify(track.status or "queued", track.error_code)
        if track.loopback:
            if track.inbound_at is not None:
                done = verdict.phase in (Phase.DELIVERED, Phase.FAILED)
                if done or Clock.monotonic() >= track.inbound_at + self._grace():
                    return self._sighting(track, track.inbound_at, track.inbound_bound, "seen")
                return None
        elif verdict.phase is Phase.DELIVERED:
            assert track.receipt_at is not None
            return self._sighting(track, track.receipt_at, track.receipt_bound, "receipt")
        if verdict.phase is Phase.FAILED:
            assert verdict.reason is not None
            code = verdict.code
            raise ChannelRejected(
                str(verdict.reason),
                code=str(code) if code is not None else track.status,
                temporary=is_temporary(code),
            )
        return None

    def _sighting(self, track: _Track, at: float, bound: float, evidence: str) -> Sighting:
        receipt = track.receipt_wall
        inbound = track.inbound_wall
        extra: dict[str, Any] = {
            "sid": track.sid,
            "status": track.status,
            "receipt_at_wall": receipt,
            "inbound_at_wall": inbound,
        }
        if receipt is not None and inbound is not None:
            extra["receipt_minus_inbound_s"] = round(receipt - inbound, 6)
        if track.loopback:
            if receipt is None:
                detail = str(
                    Reason(
                        "受信側に着信・キャリアの配信確認なし",
                        "arrived at the receiving number; no carrier receipt",
                    )
                )
            elif classify(track.status or "").phase is Phase.FAILED:
                detail = str(
                    Reason(
                        f"受信側に着信（配信確認は {track.status} と誤報）",
                        "arrived at the receiving number "
                        f"(carrier receipt wrongly said {track.status})",
                    )
                )
            else:
                detail = str(
                    Reason(
                        "受信側に着信・配信確認あり",
                        "arrived at the receiving number; carrier receipt delivered",
                    )
                )
        else:
            via_ja = _VIA_JA.get(track.receipt_via, track.receipt_via)
            detail = str(
                Reason(
                    f"キャリアの配信確認（{via_ja}）",
                    f"carrier receipt delivered (via {track.receipt_via})",
                )
            )
        return Sighting(at=at, error_bound_s=bound, detail=detail, extra=extra, evidence=evidence)

    async def _poll(self, track: _Track) -> None:
        """Fetch the Message resource once and apply what it says."""
        assert track.sid is not None
        try:
            async with self._api:
                asked = Clock.monotonic()
                msg = await self._client.messages(track.sid).fetch_async()
        except (TwilioRestException, TwilioServiceException) as exc:
            track.polled_at = Clock.monotonic()
            code, status = _code_of(exc), int(exc.status)
            if is_throttle(code, status):
                self.throttled_polls += 1
                return
            if status in (401, 403, 404):
                raise ObserverFault(
                    f"Message を参照できません / cannot fetch the Message: "
                    f"{error_reason(code, http_status=status)}",
                    code=str(code or status),
                ) from exc
            self._api_trouble = _unreachable("poll", f"HTTP {status}")
            return
        except (aiohttp.ClientError, TimeoutError, TwilioException) as exc:
            track.polled_at = Clock.monotonic()  # the far end is down: nothing to see, retry
            self._api_trouble = _unreachable("poll", exc.__class__.__name__)
            return
        now = _answered(asked)
        track.polled_at = self._last_look_ok = now
        self._api_trouble = None
        # The answer was made between `asked` and `now`; a delivery it shows happened
        # after the last look that did not show it (track.unseen_at).
        lower = track.unseen_at if track.unseen_at is not None else track.created_at
        bound = max(0.0, now - lower)
        wall = _wall_at(now)
        self._apply(track, str(msg.status), msg.error_code, now, wall, bound, "polling")
        if classify(str(msg.status)).phase is not Phase.DELIVERED:
            track.unseen_at = max(lower, asked)

    async def _inbound_loop(self) -> None:
        """List the Messages sent to the loopback receiver while any arrival is awaited."""
        loop = self.settings.loopback
        assert loop is not None
        # A message a listing shows arrived after the start of the last listing that
        # succeeded (or after its track was made, see _arrival): never after the end.
        last_ok = Clock.monotonic()
        every = self.settings.poll_interval or _LIST_EVERY
        while True:
            if not any(t.loopback and t.inbound_at is None for t in self._tracks.values()):
                self._inbound_wanted.clear()
                await self._inbound_wanted.wait()
                continue
            # Listing is one request per interval for all awaited arrivals, so it runs at
            # poll_interval even with the inbound webhook (which may not be configured).
            await asyncio.sleep(every)
            asked = Clock.monotonic()
            try:
                await self._list_inbound(loop.receiver, last_ok)
            except (TwilioRestException, TwilioServiceException, TwilioException) as exc:
                code, status = getattr(exc, "code", None), getattr(exc, "status", None)
                if not is_throttle(code, status):
                    _log.debug("listing inbound messages failed: %s", exc.__class__.__name__)
                    self._api_trouble = _unreachable("list", f"HTTP {status}")
                continue
            except (aiohttp.ClientError, TimeoutError) as exc:
                _log.debug("listing inbound messages failed: %s", exc.__class__.__name__)
                self._api_trouble = _unreachable("list", exc.__class__.__name__)
                continue
            last_ok = asked
            self._last_look_ok = Clock.monotonic()
            self._api_trouble = None

    async def _list_inbound(self, receiver: str, last_ok: float) -> None:
        since = datetime.fromtimestamp(self._opened_wall - 60, tz=UTC)
        async with self._api:
            page = await self._loop_client.messages.page_async(
                to=receiver, from_=self.settings.from_, date_sent_after=since, page_size=100
            )
        while page is not None:
            now, wall = Clock.monotonic(), Clock.wall()
            fresh = False
            for msg in page:
                if msg.sid in self._inbound_sids or msg.direction != "inbound":
                    continue
                fresh = True
                self._inbound_sids.add(msg.sid)
                for token in find_tokens(msg.body or ""):
                    self._arrival(token, now, wall, max(0.0, now - last_ok))
            if not fresh:
                return
            async with self._api:
                page = await page.next_page_async()


def _answered(asked: float) -> float:
    """When the answer to this task's Twilio call made at *asked* was read (now, if unknown)."""
    answered = ANSWERED.get()
    now = Clock.monotonic()
    return answered if answered is not None and asked <= answered <= now else now


def _wall_at(mono: float) -> float:
    """The wall-clock time of the monotonic instant *mono* (a moment ago)."""
    return Clock.wall() - (Clock.monotonic() - mono)


def _unreachable(how: str, what: str) -> str:
    ja = {"poll": "配信状態を取得", "list": "受信番号の着信を一覧"}[how]
    en = {"poll": "fetch message status", "list": "list the loopback number's messages"}[how]
    return f"Twilio に接続できず{ja}できません（{what}） / cannot reach Twilio to {en} ({what})"


def _reveal(value: str | SecretRef) -> str:
    return value.reveal() if isinstance(value, SecretRef) else value


def _code_of(exc: TwilioRestException | TwilioServiceException) -> int | None:
    """Twilio's error code; None when the library only echoed the HTTP status (no JSON body)."""
    code = _int(getattr(exc, "code", None))
    return None if code == exc.status else code


def _detail_of(exc: TwilioRestException | TwilioServiceException) -> str:
    text = getattr(exc, "msg", None) or getattr(exc, "detail", None) or ""
    return str(text).removeprefix("Unable to create record: ")


def _int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
