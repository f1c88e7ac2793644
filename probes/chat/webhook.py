"""Generic webhook channel: POST a message to a URL; optionally read it back.

Covers chat tools that offer only an incoming webhook (many LGWAN chat tools).
Registry example::

    - id: chat-lgwan
      kind: webhook
      url: https://chat.example.lg.jp/hooks/abc
      format: json            # or form
      field: text
      auth: env:CHIYODA_HOOK_TOKEN        # optional, sent as Bearer
      observer:                           # optional; without it: accepted only
        url: https://chat.example.lg.jp/rooms/abc/messages
        auth: env:CHIYODA_READ_TOKEN
        mode: longpoll                    # or poll (every ``interval``)
        interval: 500ms

The observer reads the response body as text and matches drill tokens in it,
so any read-back endpoint that echoes messages works in ``poll`` mode (error
bound: the time since the previous look). ``longpoll`` speaks the simulator's
cursor protocol (``after``/``wait``); each message's ``ts`` (wall time it
became readable) bounds its sighting: from ``ts`` to the moment the answer carrying
it reached the process (:meth:`ChatProbe.fetch`); the runner adds the event
loop's lag around that moment, so a loaded loop shows in the bound, not the latency.

A long-poll is parked only while a message is *on its way*: from the moment
:meth:`send` begins until the message is seen (or nobody awaits it any more), or
while answers are wanted (:meth:`probes.replies.ReplyBook.want`). Otherwise the
watcher *rests*, parking no request: after :meth:`open`'s first look (which
reads the cursor and proves the observer can log in and reach the room — a
refusal or an outage shows there), and again once its message was seen. A
message merely awaited while it waits for its turn to leave
(:mod:`drills.core.pacing`) parks nothing yet. Nothing is missed: the next look
asks for everything after the cursor, and each message carries its own ``ts``
(when it became readable) for the bound; the far end's latency gives the parked
request time to arrive before the message becomes readable, and if it does not,
the look answers at once and the bound says how late it was.

Why: a drill of 10,000 channels that parked every long-poll at the start held
10,000 requests for the whole step, and 25 s later (``LONGPOLL_WAIT_S``) the
unsent channels' polls all came back empty in one burst — seconds of the event
loop's time while other channels' messages were arriving (measured:
benchmarks/bench_core_fanout.py ``--trace``). Parked at the send, each channel's
long-poll lives about as long as its message takes.

Without an observer the tool gives no way to see arrival: the probe says so
(``confirms()`` is False) and its deliveries are *accepted only*.
"""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from probes.base import (
    Accepted,
    ChannelRejected,
    ChannelSettings,
    ChannelUnreachable,
    Clock,
    DrillMessage,
    ObserverFault,
    ProbeEnv,
)
from probes.chat.base import (
    ChatProbe,
    ChatSettings,
    Throttle,
    Verdict,
    both,
    foreign_answer,
    retry_after_seconds,
)
from probes.settings import Duration, SecretRef
from probes.sim.base import Simulator

if TYPE_CHECKING:
    from probes.preflight import PreflightReport

__all__ = [
    "WebhookProbe",
    "WebhookSettings",
    "error_text",
    "retry_after_seconds",
    "webhook_verdict",
]

# The simulator's long-poll answers within this many seconds when nothing new arrives.
LONGPOLL_WAIT_S = 25


class WebhookObserver(ChannelSettings):
    url: str = Field(description="投稿を読み返す URL / the URL that reads the posts back")
    auth: SecretRef | None = Field(
        default=None, description="読み取りの Bearer トークン / Bearer token for reading"
    )
    mode: Literal["poll", "longpoll"] = Field(
        default="poll",
        description="poll: 一定間隔で読む、longpoll: 待ち受け / poll: read every interval; longpoll: a long-poll",
    )
    interval: Duration = Field(default=0.5, description="poll の間隔 / how often poll mode reads")


class WebhookSettings(ChatSettings):
    url: str = Field(description="着信 Webhook の URL / the incoming webhook URL")
    format: Literal["json", "form"] = Field(
        default="json", description="本文の形式 / how the body is sent"
    )
    field: str = Field(
        default="text", description="本文を入れる項目名 / the field that carries the text"
    )
    auth: SecretRef | None = Field(
        default=None,
        description="送信時の Bearer トークン（任意） / Bearer token for sending (optional)",
    )
    observer: WebhookObserver | None = Field(
        default=None,
        description="投稿を読み返す設定。省略すると「受付のみ」 / how to read the posts back; without it: accepted only",
    )
    health_url: str | None = Field(
        default=None,
        description="事前確認（tsunagari check）で GET する URL（任意、認証なし） / a URL the preflight (tsunagari check) GETs, without credentials (optional)",
    )


def error_text(text: str) -> str:
    """The ``error`` field of a JSON error body, else the start of the body.

    >>> error_text('{"ok": false, "error": "invalid_auth"}'), error_text("Bad Gateway")
    ('invalid_auth', 'Bad Gateway')
    """
    with contextlib.suppress(ValueError, AttributeError):
        data = json.loads(text)
        if isinstance(data, dict) and "error" in data:
            return str(data["error"])
    return text[:200]


def webhook_verdict(status: int, text: str, headers: Any = None) -> Verdict:
    """What a webhook's HTTP answer means: None (accepted), a Throttle, or the fault.

    >>> webhook_verdict(401, '{"ok": false, "error": "invalid_auth"}').reason.split(" / ")[0]
    'HTTP 401: invalid_auth（Webhook の認証が拒否されました）'
    """
    if 200 <= status < 300:
        return None
    if status == 429:
        return Throttle(retry_after_seconds(headers), code="429")
    detail = f"HTTP {status}: {error_text(text)}"
    if status in (502, 503, 504):
        return ChannelUnreachable(
            both("Webhook が応答しません", "the webhook is unavailable", detail), code=str(status)
        )
    if status in (401, 403):
        ja, en = "Webhook の認証が拒否されました", "the webhook refused our credentials"
    elif status in (404, 410):
        ja, en = "Webhook の URL が見つかりません", "the webhook URL does not exist"
    else:
        ja, en = "Webhook が拒否しました", "the webhook refused the message"
    return ChannelRejected(both(ja, en, detail), code=str(status), temporary=status >= 500)


class WebhookProbe(ChatProbe):
    """Posts to an incoming webhook; confirms by reading the room back."""

    kind = "webhook"
    summary = (
        "汎用 Webhook: URL にメッセージを POST し、読み返せるなら着信も確認",
        "generic webhook: POST a message to a URL; optionally read it back",
    )
    service = "Webhook"
    Settings = WebhookSettings
    settings: WebhookSettings

    def __init__(self, channel_id: str, settings: ChannelSettings, env: ProbeEnv) -> None:
        super().__init__(channel_id, settings, env)
        self._cursor = 0  # longpoll: messages already read, in the order they became visible
        self._sending = 0  # sends under way: the read-back stays parked (_rest)
        self._sent: set[str] = set()  # tokens sent, maybe not yet seen (_on_its_way)
        self._resting = False  # the read-back parks nothing now (_rest)

    @classmethod
    def simulator(cls) -> type[Simulator]:
        from probes.sim.chat import ChatSimulator

        return ChatSimulator

    async def preflight(self) -> PreflightReport:
        """Health URL and read-back, each with its certificate; never POSTs to the hook."""
        from probes.chat.webhook_check import preflight_webhook

        return await preflight_webhook(self)

    def look_interval(self) -> float:
        obs = self.settings.observer
        return obs.interval if obs is not None and obs.mode == "poll" else 0.0

    async def _attempt(self, message: DrillMessage) -> Accepted | Throttle:
        s = self.settings
        body = {s.field: message.render()}
        as_json = s.format == "json"
        token = s.auth.reveal() if s.auth is not None else None
        status, text, headers, answered = await self.fetch(
            "POST",
            s.url,
            token=token,
            json=body if as_json else None,
            data=None if as_json else body,
        )
        verdict = webhook_verdict(status, text, headers)
        if verdict is None:
            return Accepted(at=answered, detail=f"HTTP {status}")
        if isinstance(verdict, Throttle):
            return verdict
        raise verdict

    async def _look(self) -> float | None:
        obs = self.settings.observer
        assert obs is not None
        longpoll = obs.mode == "longpoll"
        params: dict[str, str] = {}
        wait = 0
        if longpoll:
            await self._rest()
            # After a failed look, answer at once: the trouble clears as soon as it can.
            settled = self._parked.is_set() and self._observer_trouble is None
            wait = LONGPOLL_WAIT_S if settled else 0
            params = {"after": str(self._cursor), "wait": str(wait)}
        token = obs.auth.reveal() if obs.auth is not None else None
        # Seen when the answer's first bytes came in, not when the loop got back to it.
        status, text, headers, seen_at = await self.fetch(
            "GET",
            obs.url,
            token=token,
            params=params,
            timeout=LONGPOLL_WAIT_S + self.settings.request_timeout,
        )
        if status in (401, 403):
            ja, en = "観測用アカウントのログインが拒否されました", "observer login refused"
            raise ObserverFault(both(ja, en, f"HTTP {status}"), code=str(status))
        if status >= 400:
            raise ChannelUnreachable(f"observer read failed: HTTP {status}", code=str(status))
        messages: list[Any] | None = None
        if longpoll:
            with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
                data = json.loads(text)
                self._cursor = int(data["cursor"])
                messages = data.get("messages")
            if messages is None:  # not the cursor protocol: nothing here can be read
                foreign = foreign_answer("Webhook", status, text, headers)
                raise foreign or ChannelUnreachable(
                    both(
                        "観測側の応答に cursor がありません",
                        "the observer's answer has no cursor",
                        f"HTTP {status}",
                    ),
                    code="no_cursor",
                )
        if isinstance(messages, list):
            for m in messages:
                if isinstance(m, dict) and isinstance(m.get("text"), str):
                    self.record_text(m["text"], at=seen_at, bound=self._bound(m, seen_at))
        else:
            self.record_text(text, at=seen_at, bound=self.poll_bound(seen_at))
        self._parked.set()
        return None

    async def send(self, message: DrillMessage) -> Accepted:
        """The send (:class:`ChatProbe`), with the read-back woken to park first (see the module)."""
        self._sending += 1
        self._sent.add(message.token)
        if self._resting:  # a look begins with this send: nothing is known of now until it answers
            self._looking_since = Clock.monotonic()
        self._wake.set()
        try:
            return await super().send(message)
        finally:
            self._sending -= 1

    def _on_its_way(self) -> bool:
        """Is a message under way: being sent, or sent, awaited and not yet seen?"""
        if self._sending:
            return True
        self._sent = {
            token
            for token in self._sent
            if token in self._awaited and self.sightings.get(token) is None
        }
        return bool(self._sent)

    async def _rest(self) -> None:
        """Wait, parking no request, while nothing is on its way (see the module)."""
        self._resting, self._looking_since = True, None  # resting is no look
        try:
            while (
                self._parked.is_set()
                and self._observer_trouble is None
                and not self.replies.wanted
                and not self._closed
                and not self._on_its_way()
            ):
                self._wake.clear()
                await self._wake.wait()
        finally:
            self._resting = False

    def _bound(self, message: dict[str, Any], seen_at: float) -> float:
        """From the read-back's own ``ts`` (when it became readable) to the sighting."""
        ts = message.get("ts")
        if isinstance(ts, int | float) and not isinstance(ts, bool) and ts > 0:
            return max(0.0, seen_at - Clock.monotonic_from_wall(float(ts)))
        return self.poll_bound(seen_at)
