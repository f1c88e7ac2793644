"""The probe contract: what every channel kind implements.

A *probe* is one registered channel seen from both ends: it sends a marked
drill message the way the municipality's staff would receive it, and it
confirms arrival *at the far end* (a mailbox, a chat room read by a second
identity, a receiving phone) — never by the provider's "202 Accepted" alone.

The contract is deliberately small (``open``, ``send``, ``observe``,
``close``)::

    probe = kind_class(channel_id, settings, env)
    await probe.open()                      # connect observers, park long-polls
    waiting = asyncio.ensure_future(probe.observe(message))
    accepted = await probe.send(message)    # raises ChannelRejected / ChannelUnreachable
    sighting = await waiting                # when and how precisely it was seen
    await probe.close()

``observe`` must not miss a message that arrived before it was awaited:
observers that watch a stream (IMAP IDLE, /sync, websocket) record every token
they see in a :class:`Sightings` book, and ``observe`` looks there first.

Exceptions (a channel fault and a harness fault mean different things)::

    ProbeError
    ├── ChannelFault              the channel failed — counts against the channel
    │   ├── ChannelRejected       the provider refused (auth, 4xx/5xx, bad number,
    │   │                         a TLS mode the server does not offer)
    │   └── ChannelUnreachable    connection refused, timeout, TLS failure
    └── ObserverFault             the harness could not look (observer login failed,
        │                         not a member of the room, read API unreachable)
        └── ObserverIsSender      the observer credential is the sender's own: a
                                  sender always sees its own message, so nothing
                                  would be confirmed (raised by ``open``)

What the harness asks a probe besides the four calls (all optional, with
defaults here): :meth:`Probe.observes` (is this recipient covered by an
observer? if not, its deliveries are unconfirmed, never lost),
:meth:`Probe.observer_trouble` (why the observer cannot look right now: a
message not seen meanwhile is ``error``, not ``lost``),
:meth:`Probe.observer_looking_since` (when a look begun for a send started, while it has
not answered: a failed send's reason does not claim what that look has not yet said) and
:meth:`Probe.throttling` (how often the provider said "slow down" to one message, for a
send that ran out of time while being throttled).

Optional capabilities a probe declares by having them (structural
``typing.Protocol`` classes, checked with ``isinstance``; a probe need not
name them)::

    Priced            cost_profile() → the caps and price the cost guard checks (SMS)
    ExplainsTimeout   timeout_reason(message) → why a message not seen was lost
    CollectsReplies   replies: ReplyBook → answers read by the observer (roll calls)

Building a probe does no I/O (``open`` does): the harness builds one to ask
:meth:`Probe.is_live` before it decides to contact the channel.

Anything else raised by a probe is a harness fault: recorded as ``error``.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
import secrets as _secrets
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from probes.redact import redact

if TYPE_CHECKING:
    import aiohttp

    from probes.replies import ReplyBook
    from probes.sim.base import Simulator
    from probes.sms.budget import CostProfile

__all__ = [
    "DEFAULT_MARKER",
    "Accepted",
    "ChannelFault",
    "ChannelRejected",
    "ChannelSettings",
    "ChannelUnreachable",
    "Clock",
    "CollectsReplies",
    "DrillMessage",
    "ExplainsTimeout",
    "ObserverFault",
    "ObserverIsSender",
    "Priced",
    "Probe",
    "ProbeEnv",
    "ProbeError",
    "Reason",
    "Sighting",
    "Sightings",
    "Throttling",
    "find_tokens",
    "new_token",
    "parse_retry_after",
]

DEFAULT_MARKER = "【訓練】"

# Crockford-style base32 without I, L, O, U: unambiguous when read aloud or retyped.
_TOKEN_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_TOKEN_SHIFTS = tuple(range(0, 60, 5))  # 12 characters × 5 bits
# Exact: no letter or digit right before or after (a 13-character string is no token).
TOKEN_RE = re.compile(r"(?<![0-9A-Za-z])TSG-[0-9A-HJKMNP-TV-Z]{12}(?![0-9A-Za-z])")


def new_token() -> str:
    """A fresh drill token, e.g. ``TSG-7K3Q9XW2M4PD`` (60 random bits).

    One read of the system's random source, five bits per character (the
    alphabet has exactly 32 letters: every token is equally likely).
    """
    bits = int.from_bytes(_secrets.token_bytes(8), "big")
    return "TSG-" + "".join([_TOKEN_ALPHABET[(bits >> shift) & 31] for shift in _TOKEN_SHIFTS])


@dataclass(frozen=True, slots=True)
class Reason:
    """A reason in both languages (preflight phases, SMS statuses); ``str`` is ``"日本語 / English"``.

    :meth:`parse` splits a probe's ``"ja / en"`` reason; a leading protocol
    word of the Japanese half (``SMTP``, ``IMAP``) is kept on the English side:

    >>> r = Reason.parse("IMAP ログイン失敗 / login refused for drill: [AUTHENTICATIONFAILED]")
    >>> r.ja, r.en
    ('IMAP ログイン失敗', 'IMAP login refused for drill: [AUTHENTICATIONFAILED]')
    >>> Reason.parse("127.0.0.1:25 への接続が拒否されました / connection to 127.0.0.1:25 refused").en
    'connection to 127.0.0.1:25 refused'
    >>> str(Reason.parse("no separator"))
    'no separator / no separator'
    """

    ja: str
    en: str

    def __str__(self) -> str:
        return f"{self.ja} / {self.en}"

    def text(self, lang: str = "ja") -> str:
        return self.en if lang == "en" else self.ja

    @classmethod
    def parse(cls, text: str) -> Reason:
        ja, sep, en = text.partition(" / ")
        if not sep:
            return cls(text, text)
        words = ja.split(" ")
        lead = []
        for word in words[:-1]:  # protocol names only: SMTP, IMAP, HTTP
            if not (word.isascii() and word.isalpha() and word.isupper()):
                break
            lead.append(word)
        prefix = " ".join(lead)
        if prefix and not en.startswith(prefix):
            en = f"{prefix} {en}"
        return cls(ja.strip(), en.strip())


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header, in seconds or as an HTTP date; None if absent.

    RFC 9110 §10.2.3 allows both forms; a date is counted from *now* (wall clock, default
    the current time). Unreadable values are None (the caller's own backoff applies).
    One parser for every kind that is throttled over HTTP (chat, Twilio).

    >>> parse_retry_after("2"), parse_retry_after(None), parse_retry_after("later")
    (2.0, None, None)
    >>> parse_retry_after("Sun, 06 Nov 1994 08:49:39 GMT", now=784111777.0)
    2.0
    """
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": UTC by RFC 5322, but no zone given
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def find_tokens(text: str) -> list[str]:
    """Every drill token in *text*, in order of appearance.

    >>> find_tokens("【訓練】 安否確認 [TSG-7K3Q9XW2M4PD]")
    ['TSG-7K3Q9XW2M4PD']
    """
    return TOKEN_RE.findall(text)


# --------------------------------------------------------------------------- errors


class ProbeError(Exception):
    """Root of everything a probe raises on purpose."""

    def __init__(self, reason: str, *, code: str | None = None) -> None:
        reason = redact(reason)  # a provider's answer may quote the credential
        super().__init__(reason)
        self.reason = reason
        self.code = code


class ChannelFault(ProbeError):
    """The channel failed; counts against the channel on the scorecard."""


class ChannelRejected(ChannelFault):
    """The provider refused the message (auth, 4xx/5xx, invalid recipient).

    ``temporary`` marks refusals that may succeed later (SMTP 4xx, HTTP 503).
    """

    def __init__(self, reason: str, *, code: str | None = None, temporary: bool = False) -> None:
        super().__init__(reason, code=code)
        self.temporary = temporary


class ChannelUnreachable(ChannelFault, ConnectionError):
    """The provider could not be reached: refused, timed out, TLS failed."""


class ObserverFault(ProbeError):
    """The far-end observer could not look (login failed, mailbox missing).

    The drill could not *see*; that is not the same as the message not arriving,
    so it is recorded as ``error``, not ``lost``.
    """


class ObserverIsSender(ObserverFault):
    """The observer credential is the sender's own identity: arrival cannot be confirmed.

    >>> ObserverIsSender.of("131211/chat", "@drill-bot:example.lg.jp").reason.split(" / ")[1]
    'observer is the sender itself (@drill-bot:example.lg.jp) on 131211/chat: a sender always sees its own message — give the observer a separate staff-like account'
    """

    @classmethod
    def of(cls, channel: str, identity: str) -> ObserverIsSender:
        return cls(
            f"{channel} の観測アカウントが送信者と同じです（{identity}）: 送信者には自分の投稿が"
            "必ず見えるため着信を確認できません。職員相当の別アカウントを観測側に設定してください / "
            f"observer is the sender itself ({identity}) on {channel}: a sender always sees its "
            "own message — give the observer a separate staff-like account",
            code="observer_is_sender",
        )


# --------------------------------------------------------------------------- message


@dataclass(frozen=True, slots=True)
class DrillMessage:
    """One marked drill message. It cannot exist without marker and token.

    >>> m = DrillMessage(token=new_token(), text="参集してください")
    >>> m.render().startswith("【訓練】")
    True
    """

    token: str
    text: str
    marker: str = DEFAULT_MARKER
    subject: str = ""
    recipient: str | None = None
    meta: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not self.marker or not self.marker.strip():
            raise ValueError("a drill message needs a non-empty drill marker")
        if not TOKEN_RE.fullmatch(self.token or ""):
            raise ValueError(f"a drill message needs a valid drill token, got {self.token!r}")

    @classmethod
    def new(cls, text: str, **kw: Any) -> DrillMessage:
        return cls(token=new_token(), text=text, **kw)

    def render(self) -> str:
        """The body as sent: marker first, text, then the token in brackets."""
        return f"{self.marker} {self.text}\n[{self.token}]"

    def render_subject(self) -> str:
        """A subject line (mail) that starts with the marker and carries the token."""
        subject = self.subject or self.text.splitlines()[0][:40]
        return f"{self.marker} {subject} [{self.token}]"


# --------------------------------------------------------------------------- results


class Clock:
    """Monotonic time for latency, wall time for humans, and the bridge between.

    Observers that learn *when* something happened from the server (a Maildir
    file's mtime, an event's ``origin_server_ts``) convert that wall time into
    the monotonic timeline with :meth:`monotonic_from_wall`.
    """

    @staticmethod
    def monotonic() -> float:
        return time.monotonic()

    @staticmethod
    def wall() -> float:
        return time.time()

    @staticmethod
    def monotonic_from_wall(wall_ts: float) -> float:
        return time.monotonic() - (time.time() - wall_ts)


@dataclass(frozen=True, slots=True)
class Accepted:
    """The provider took the message (SMTP 250 after DATA, HTTP 2xx, Twilio SID)."""

    at: float  # monotonic
    provider_id: str | None = None
    detail: str = ""
    segments: int | None = None  # SMS segments, where it applies
    throttled: int = 0  # how many times the provider said "slow down" before taking it


@dataclass(frozen=True, slots=True)
class Sighting:
    """The message was seen at the far end.

    ``at`` is monotonic; ``error_bound_s`` is how late (at most) the observer may
    have seen it relative to its true arrival — measured per sighting by the
    observer (time since its previous look, or since the server's own timestamp),
    so a loaded event loop shows up in the bound. ``evidence`` is ``"seen"``
    (our observer saw it where a person reads it) or ``"receipt"`` (the provider
    or carrier reported delivery).
    """

    at: float
    error_bound_s: float = 0.0
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    evidence: str = "seen"


@dataclass(frozen=True, slots=True)
class Throttling:
    """How often the provider said "slow down" to one message, and its last word.

    ``unanswered``: a retry was on its way and its answer not yet read when this was
    asked (a send cut by the step's timeout mid-try). The far end may have taken that
    retry, or refused it once more: the message's fate is not known, so it is not
    "rejected" (:mod:`drills.core.attempt`).
    """

    count: int
    code: str
    unanswered: bool = False


class Sightings:
    """A book of tokens seen by a streaming observer, with waiters.

    Stream readers call :meth:`record`; ``Probe.observe`` calls :meth:`wait`.
    A token recorded before anybody waits is kept (bounded, oldest dropped).
    """

    def __init__(self, capacity: int = 100_000) -> None:
        self._seen: OrderedDict[str, Sighting] = OrderedDict()
        self._waiters: dict[str, list[asyncio.Future[Sighting]]] = {}
        self._capacity = capacity
        self._failure: BaseException | None = None

    def record(self, token: str, sighting: Sighting) -> None:
        if token in self._seen:
            return
        self._seen[token] = sighting
        if len(self._seen) > self._capacity:
            self._seen.popitem(last=False)
        for fut in self._waiters.pop(token, []):
            if not fut.done():
                fut.set_result(sighting)

    def fail(self, exc: BaseException) -> None:
        """The observer broke: every current and future waiter gets *exc*."""
        self._failure = exc
        for futs in self._waiters.values():
            for fut in futs:
                if not fut.done():
                    fut.set_exception(exc)
        self._waiters.clear()

    def recover(self) -> None:
        self._failure = None

    def get(self, token: str) -> Sighting | None:
        return self._seen.get(token)

    async def wait(self, token: str) -> Sighting:
        if token in self._seen:
            return self._seen[token]
        if self._failure is not None:
            raise self._failure
        fut: asyncio.Future[Sighting] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(token, []).append(fut)
        try:
            return await fut
        finally:
            waiters = self._waiters.get(token)
            if waiters and fut in waiters:
                waiters.remove(fut)
                if not waiters:
                    del self._waiters[token]


# --------------------------------------------------------------------------- probe


class ChannelSettings(BaseModel):
    """Base of every kind's settings model: unknown keys are errors, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class ProbeEnv:
    """What the harness lends a probe: live flag, language, shared resources.

    ``http()`` is one aiohttp session shared by every probe of a drill (created
    lazily inside the running loop, closed by the runner through ``aclose``).
    """

    live: bool = False
    lang: str = "ja"
    vantage: str = "default"
    shared: dict[str, Any] = field(default_factory=dict)

    def http(self) -> aiohttp.ClientSession:
        """The shared session (its connections stamp sends and answers: :mod:`probes.stamped_http`)."""
        session = self.shared.get("aiohttp")
        if session is None or session.closed:
            import aiohttp  # not at import time: cron pays for every import

            from probes.stamped_http import connector

            session = aiohttp.ClientSession(connector=connector(), trust_env=False)
            self.shared["aiohttp"] = session
        return session

    async def aclose(self) -> None:
        for key, value in self.shared.items():
            closer = getattr(value, "close", None)
            if closer is not None and key == "aiohttp":
                await closer()
            elif hasattr(value, "aclose"):
                await value.aclose()
        self.shared.clear()


class Probe(ABC):
    """One channel of one municipality, seen from both ends.

    Subclasses set ``kind`` and ``Settings`` and implement :meth:`send` and
    :meth:`observe`. A probe whose :meth:`confirms` is False cannot observe
    arrival with the credentials given: its deliveries are *accepted only*,
    and the runner never calls :meth:`observe`.
    """

    kind: ClassVar[str]
    Settings: ClassVar[type[ChannelSettings]]
    summary: ClassVar[tuple[str, str] | None] = None
    """What the kind is, one line each in Japanese and English (the registry reference and
    the JSON Schema show it); None: the first paragraph of the module docstring (English)."""

    def __init__(self, channel_id: str, settings: ChannelSettings, env: ProbeEnv) -> None:
        self.channel_id = channel_id
        self.settings = settings
        self.env = env
        self._throttles: dict[str, Throttling] = {}

    def confirms(self) -> bool:
        """Can this probe see arrival at the far end? False means accepted-only."""
        return True

    def observes(self, recipient: str | None) -> bool:
        """Does an observer cover *recipient*? If not, its deliveries are unconfirmed.

        A mail channel with several ``to`` addresses and one observed mailbox
        confirms only the observed one; the rest are ``accepted``, never ``lost``.
        """
        return self.confirms()

    def observer_trouble(self) -> str | None:
        """Why the observer cannot look right now (None: it can).

        A message not seen while the observer could not look is ``error``
        ("the drill could not look"), not ``lost``.
        """
        return None

    def observer_looking_since(self) -> float | None:
        """When a look the observer began *for a send* started, while it has not answered
        (monotonic; None: no such look is under way).

        An observer that rests between messages (the webhook's read-back) knows nothing
        of the far end's state now until that look answers: a send that failed meanwhile
        must not claim the observer saw no trouble (:func:`drills.core.reasons.unanswered`).
        An observer that keeps looking (a /sync or a websocket) says None: its last look's
        word stands.
        """
        return None

    def note_throttle(self, token: str, code: str) -> None:
        """Count one "slow down" for *token* (probes call this as it happens)."""
        before = self._throttles.get(token)
        self._throttles[token] = Throttling((before.count if before else 0) + 1, code)

    def note_try(self, token: str) -> None:
        """A try of *token* leaves: after a "slow down", its answer is unread until noted.

        Probes call this just before each try goes on the wire, and :meth:`note_throttle`
        (another "slow down") or :meth:`note_answered` (taken) when its answer is read.
        Before the first "slow down" there is nothing to note.
        """
        self._mark_unanswered(token, True)

    def note_answered(self, token: str) -> None:
        """The answer to *token*'s try was read (it was taken): nothing is left unanswered."""
        self._mark_unanswered(token, False)

    def _mark_unanswered(self, token: str, unanswered: bool) -> None:
        before = self._throttles.get(token)
        if before is not None and before.unanswered is not unanswered:
            self._throttles[token] = Throttling(before.count, before.code, unanswered)

    def throttling(self, token: str) -> Throttling | None:
        """ "Slow down" answers to *token* so far (for a send that ran out of time)."""
        return self._throttles.get(token)

    def recipients(self) -> list[str | None]:
        """Who a broadcast addresses on this channel (one delivery each)."""
        return [None]

    def is_live(self) -> bool:
        """Does this channel talk to a real provider (needs ``--live``)?"""
        return True

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Connect observers; called once before the first send."""

    @abstractmethod
    async def send(self, message: DrillMessage) -> Accepted:
        """Send *message*; return when the provider accepted it."""

    @abstractmethod
    async def observe(self, message: DrillMessage) -> Sighting:
        """Wait until *message* is seen at the far end. The runner applies the timeout."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; called once at the end of the drill."""

    @classmethod
    def simulator(cls) -> type[Simulator] | None:
        """The local simulator class for ``sim:`` channels of this kind, if any."""
        return None


# --------------------------------------------------------------------------- capabilities


@runtime_checkable
class Priced(Protocol):
    """A probe whose sends cost money: the cost guard plans a step with its profile.

    >>> isinstance(object(), Priced)
    False
    """

    def cost_profile(self) -> CostProfile:
        """This channel's caps, price and what it has already sent in this run."""
        ...


@runtime_checkable
class ExplainsTimeout(Protocol):
    """A probe that can say why a message it did not see was lost (e.g. no carrier receipt)."""

    def timeout_reason(self, message: DrillMessage) -> str | None:
        """The reason for the runner's ``lost`` record (None: nothing to add)."""
        ...


@runtime_checkable
class CollectsReplies(Protocol):
    """A probe whose observer reads answers (``RE[<token>] <id>``) into a book."""

    replies: ReplyBook
