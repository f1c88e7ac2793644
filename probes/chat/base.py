"""What every chat kind shares: throttled sends and a watcher at the far end.

A chat probe sends as a drill *sender* and confirms arrival as a second
identity that reads the room the way a staff member would (the *observer*).
Subclasses implement two small steps::

    async def _attempt(self, message) -> Accepted | Throttle
        # one send; raise ChannelRejected / ChannelUnreachable at the boundary
    async def _look(self) -> float | None
        # one look at the room (a poll, a long-poll, a websocket session);
        # record tokens in self.sightings, call self._parked.set() once the
        # observer is in place; return seconds to wait before the next look
        # (None: the kind's poll interval). Raise ObserverFault when the observer
        # cannot log in, ChannelUnreachable when the far end is down.

and :class:`ChatProbe` supplies the rest: the retry loop that honours the
provider's "slow down" (counting it in ``Accepted.throttled`` and, as it
happens, in :meth:`Probe.throttling`), the watcher task that keeps looking,
and ``observe`` that never misses a token seen before it was awaited.

Two answers that do not say whether the message was taken (the fault matrix,
tests/faults/cases_chat.py):

- an answer cut off mid-body (the connection reset after the service began to
  answer): :class:`AnswerCutOff`. The service may well have taken the message, so
  ``send`` asks the observer (up to ``request_timeout``): seen → accepted (and then
  delivered); not seen → the send fails as unreachable, saying the answer was cut off.
- a 2xx that is not the service's own answer (an HTML page from a proxy, a captive
  portal or a maintenance page): :func:`foreign_answer` → unreachable (``lost``),
  never "accepted".

A look that fails in a way no kind foresaw (an exception that is not
``ChannelUnreachable`` / ``ObserverFault``, e.g. an answer that is not JSON) is
observer trouble like an unreachable far end: the watcher keeps trying, and a
message not seen meanwhile is ``error`` (the drill could not look), not ``lost``.

Three more hooks, optional::

    async def _identity(self, role) -> str | None
        # who-am-I for "sender" / "observer" (None: the service cannot say);
        # open() refuses an observer that is the sender itself (ObserverIsSender,
        # in check_observer(), which kinds may extend)
    def awaited_since(self) -> float | None
        # wall time the oldest message still awaited was sent: a polling observer's
        # window must reach back to it, not just behind the newest message seen
    def look_failed(self, seconds) -> float
        # a look that read nothing (throttled): the next sighting's bound still
        # counts from the last look that did read

A kind whose service offers no way to see arrival with the credentials given
returns False from ``confirms()``; its deliveries are *accepted only*.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, TypeAlias

import aiohttp
from pydantic import Field

from probes.base import (
    Accepted,
    ChannelFault,
    ChannelRejected,
    ChannelSettings,
    ChannelUnreachable,
    Clock,
    DrillMessage,
    ObserverFault,
    ObserverIsSender,
    Probe,
    ProbeEnv,
    ProbeError,
    Sighting,
    Sightings,
    find_tokens,
)
from probes.chat.answers import AnswerCutOff, both, foreign_answer, retry_after_seconds
from probes.faultcodes import transport_code
from probes.replies import ReplyBook
from probes.settings import Duration
from probes.stamped_http import answered_at

__all__ = [
    "AccessTokens",
    "AnswerCutOff",
    "ChatProbe",
    "ChatSettings",
    "Throttle",
    "Verdict",
    "as_observer_fault",
    "both",
    "foreign_answer",
    "rate_limited",
    "retry_after_seconds",
]

log = logging.getLogger(__name__)

# Never sleep longer than this for one "slow down" (a broken Retry-After must not hang a drill).
MAX_THROTTLE_WAIT_S = 60.0
# Longest pause between looks at an unreachable far end while a message is awaited.
BACKOFF_AWAITED_S = 0.5
# How long close() waits for the watcher to stop, and then for the clients to close.
CLOSE_WAIT_S = 2.0


@dataclass(frozen=True, slots=True)
class Throttle:
    """The provider said "slow down": wait ``seconds`` and try the same send again."""

    seconds: float
    code: str = "rate_limited"


# What a provider's answer to a send means: None (accepted), a Throttle, or the fault to raise.
Verdict: TypeAlias = "Throttle | ChannelFault | None"


class ChatSettings(ChannelSettings):
    """Settings every chat kind has."""

    max_retries: int = Field(
        default=5,
        ge=0,
        le=20,
        description="「混雑」（429 など）のとき再送する最大回数 / how many times a throttled send is retried",
    )
    request_timeout: Duration = Field(
        default=10.0, description="1 回の API 呼び出しの制限時間 / time limit of one API call"
    )


@functools.lru_cache(maxsize=64)
def _client_timeout(total: float) -> aiohttp.ClientTimeout:
    """One (frozen) ``ClientTimeout`` per limit, not one per request."""
    return aiohttp.ClientTimeout(total=total)


def as_observer_fault(fault: ProbeError) -> ObserverFault:
    """The same refusal met by the observer: the drill could not look (``error``, not ``lost``).

    >>> as_observer_fault(ChannelRejected(both("拒否", "refused", "401"), code="401")).reason
    '観測側: 401（拒否） / observer: 401 (refused)'
    """
    ja, sep, en = fault.reason.partition(" / ")
    reason = f"観測側: {ja} / observer: {en}" if sep else f"観測側 / observer: {ja}"
    return ObserverFault(reason, code=fault.code)


def rate_limited(kind: str, throttle: Throttle, attempts: int) -> ChannelRejected:
    """The refusal when the provider keeps saying "slow down" past our retries."""
    return ChannelRejected(
        both(
            "レート制限が続いたため送信できません",
            f"still rate limited after {attempts} attempts",
            f"{kind}: {throttle.code}",
        ),
        code=throttle.code,
        temporary=True,
    )


class AccessTokens:
    """Short-lived access tokens a probe obtained (per role), kept until just before expiry."""

    MARGIN_S = 60.0

    def __init__(self) -> None:
        self._tokens: dict[str, tuple[str, float]] = {}

    def get(self, role: str) -> str | None:
        entry = self._tokens.get(role)
        return entry[0] if entry is not None and entry[1] > Clock.monotonic() else None

    def put(self, role: str, value: str, expires_in: Any) -> str:
        try:
            lifetime = float(expires_in)
        except (TypeError, ValueError):
            lifetime = 3600.0
        self._tokens[role] = (value, Clock.monotonic() + max(0.0, lifetime - self.MARGIN_S))
        return value

    def drop(self, role: str) -> None:
        self._tokens.pop(role, None)


class ChatProbe(Probe):
    """Base of the chat kinds: throttled sending plus a watcher feeding :class:`Sightings`."""

    settings: ChatSettings
    # Seconds between looks when ``_look`` returns None (0 for long-poll / streaming kinds).
    poll_interval: ClassVar[float] = 0.0
    # The setting that holds the observer; None there means the probe is accepted-only.
    observer_setting: ClassVar[str] = "observer"
    # How the service is named in "cannot reach …" reasons.
    service: ClassVar[str] = "chat"

    def __init__(self, channel_id: str, settings: ChannelSettings, env: ProbeEnv) -> None:
        super().__init__(channel_id, settings, env)
        self.sightings = Sightings()
        self._wake = asyncio.Event()  # set when a message begins to be awaited
        # answers (RE[token] who) the observer read; wanting them wakes a resting observer
        self.replies = ReplyBook(on_want=self._wake.set)
        self.opened_wall = time.time()  # when the drill began watching (wall clock)
        self._parked = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None
        self._last_look_started = Clock.monotonic()
        self._look_read = True  # did the current look read the room (False: throttled)?
        self._observer_trouble: str | None = None  # why the last look failed, if it did
        self._looking_since: float | None = None  # a look woken by a send: when it began
        self._awaited: dict[str, list[float]] = {}  # token → wall times it began to be awaited
        self._closed = False  # close() was called: the watcher looks no more

    def confirms(self) -> bool:
        return getattr(self.settings, self.observer_setting, None) is not None

    async def fetch(
        self,
        method: str,
        url: str,
        *,
        token: str | None = None,
        timeout: float | None = None,
        **kw: Any,
    ) -> tuple[int, str, Any, float]:
        """One HTTP request on the drill's shared session: (status, body text, headers, at).

        *at* is when the answer's first bytes reached the process (monotonic;
        :func:`probes.stamped_http.answered_at`, else the instant the answer was read): a
        send's acceptance and an observer's sighting are that instant, not when the event
        loop came back to the task that asked. Connection failures and timeouts become
        :class:`ChannelUnreachable`.
        """
        total = timeout if timeout is not None else self.settings.request_timeout
        client_timeout = _client_timeout(total)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            async with self.env.http().request(
                method, url, headers=headers, timeout=client_timeout, **kw
            ) as resp:
                at = answered_at(resp)
                text = await resp.text()
                return resp.status, text, resp.headers, Clock.monotonic() if at is None else at
        except aiohttp.ClientPayloadError as exc:
            raise self.cut_off(exc) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ChannelUnreachable(
                both(
                    f"{self.service} に接続できません",
                    f"cannot reach {self.service}",
                    exc.__class__.__name__,
                ),
                code=transport_code(exc),
            ) from exc

    def cut_off(self, exc: BaseException) -> AnswerCutOff:
        """The fault for an answer that broke off mid-body (see :class:`AnswerCutOff`)."""
        return AnswerCutOff(
            both(
                f"{self.service} の応答が途中で切断されました（受け付けられたかは不明）",
                f"the answer from {self.service} was cut off (taken or not, unknown)",
                exc.__class__.__name__,
            ),
            code="cut_off",
        )

    # ------------------------------------------------------------------ sending

    @abstractmethod
    async def _attempt(self, message: DrillMessage) -> Accepted | Throttle:
        """Send once; an :class:`Accepted` or a :class:`Throttle` (the provider's "slow down")."""

    async def send(self, message: DrillMessage) -> Accepted:
        throttled = 0
        while True:
            self.note_try(message.token)  # a cut from here on leaves its answer unread
            try:
                outcome = await self._attempt(message)
            except AnswerCutOff as exc:
                outcome = await self._taken_after_all(message, exc)
            if isinstance(outcome, Accepted):
                self.note_answered(message.token)
                if outcome.throttled == throttled:  # (as good as a copy: Accepted is frozen)
                    return outcome
                return dataclasses.replace(outcome, throttled=throttled)
            # Counted as it happens: a send cut off by the step's timeout still says so.
            self.note_throttle(message.token, outcome.code)
            if throttled >= self.settings.max_retries:
                raise rate_limited(self.kind, outcome, throttled + 1)
            throttled += 1
            await asyncio.sleep(min(outcome.seconds, MAX_THROTTLE_WAIT_S))

    async def _taken_after_all(self, message: DrillMessage, exc: AnswerCutOff) -> Accepted:
        """The answer to a send broke off: did the service take it? Ask the observer.

        Seen within ``request_timeout`` → accepted at the sighting (it was taken by
        then). Not seen, or nothing can look → *exc*, saying so (unreachable: ``lost``).
        """
        if self.confirms():
            with contextlib.suppress(TimeoutError, ProbeError):
                async with asyncio.timeout(self.settings.request_timeout):
                    sighting = await self.sightings.wait(message.token)
                return Accepted(
                    at=sighting.at,
                    detail=both(
                        "応答は途中で切断されたが、観測側で着信を確認",
                        "the answer was cut off, but the observer saw the message arrive",
                    ),
                )
        ja, _, en = exc.reason.partition(" / ")
        if self.confirms():
            ja, en = f"{ja}。着信も確認できません", f"{en}; not seen at the far end either"
        raise AnswerCutOff(f"{ja} / {en}", code=exc.code) from exc

    # ------------------------------------------------------------------ observing

    async def _look(self) -> float | None:
        """One look at the room; see the module docstring. Needed when ``confirms()``."""
        raise NotImplementedError

    def look_interval(self) -> float:
        """Seconds between looks when ``_look`` does not say otherwise."""
        return self.poll_interval

    async def _identity(self, role: str) -> str | None:
        """Who the ``"sender"`` or ``"observer"`` credential is (None: the service cannot say).

        Kinds whose service has a who-am-I call (Slack ``auth.test``, Matrix
        ``whoami``, Mattermost ``users/me``) implement it; a failed call returns
        None — the send or the first look reports the failure in its own words.
        """
        return None

    async def check_observer(self) -> None:
        """Before watching: refuse an observer that cannot confirm arrival (raised by open).

        Here: an observer credential that is the sender's own identity. Kinds add
        their own checks (Matrix: the observer must be a member of the room).
        """
        if type(self)._identity is ChatProbe._identity:  # the service cannot say: no calls
            return
        sender, observer = await asyncio.gather(
            self._identity("sender"), self._identity("observer")
        )
        if sender is not None and sender == observer:
            raise ObserverIsSender.of(self.channel_id, sender)

    async def open(self) -> None:
        self.opened_wall = time.time()
        if not self.confirms() or self._watcher is not None:
            return
        await self.check_observer()
        self._closed = False
        self._watcher = asyncio.create_task(self._watch(), name=f"watch:{self.channel_id}")
        # A watcher that ends (a refused login, or anything else) ends the wait too.
        self._watcher.add_done_callback(self._watcher_ended)
        # Park the observer before anything is sent; a refused login surfaces here.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.settings.request_timeout):
                await self._parked.wait()

    def _watcher_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled():  # it failed or gave up: nobody waits for it to park
            self._parked.set()

    async def observe(self, message: DrillMessage) -> Sighting:
        awaited = self._awaited.setdefault(message.token, [])
        awaited.append(time.time())
        self._wake.set()  # an observer backing off from an outage looks again now
        try:
            return await self.sightings.wait(message.token)
        finally:
            awaited.pop(0)
            if not awaited:
                self._awaited.pop(message.token, None)

    def awaited_since(self) -> float | None:
        """Wall time the oldest message still awaited began to be awaited (None: none is).

        The runner awaits a message just before sending it, so this is (at most)
        its send time: a polling window that starts a margin before it cannot
        skip the message, however late it becomes readable.
        """
        starts = [at for times in self._awaited.values() for at in times]
        return min(starts) if starts else None

    def observer_trouble(self) -> str | None:
        """Why the observer cannot look right now (its last look could not reach the service)."""
        if self._observer_trouble is None:
            return None
        ja, sep, en = self._observer_trouble.partition(" / ")
        return (
            f"観測側がサービスに接続できず着信を確認できません（{ja}） / the observer cannot "
            f"reach the service, so arrival cannot be confirmed ({en if sep else ja})"
        )

    def observer_looking_since(self) -> float | None:
        return self._looking_since

    def look_failed(self, seconds: float) -> float:
        """A look that read nothing (e.g. throttled); returns *seconds* to wait before the next."""
        self._look_read = False
        return seconds

    def timeout_reason(self, message: DrillMessage) -> str | None:
        """Why *message* was not seen, when the observer knows more than "not in time"."""
        if self._observer_trouble is None:
            return None
        return (
            "着信を確認できず、観測側もサービスに接続できません / not seen, and the observer "
            "could not reach the service either"
        )

    def record_text(self, text: str, *, at: float, bound: float, **extra: Any) -> int:
        """Record every drill token (and answer) in *text* as seen at *at*; how many tokens."""
        self.replies.feed(text, at)
        tokens = find_tokens(text)
        for token in tokens:
            self.sightings.record(token, Sighting(at=at, error_bound_s=bound, extra=dict(extra)))
        return len(tokens)

    def poll_bound(self, seen_at: float) -> float:
        """Error bound of a poll: the message may have arrived any time since the last look."""
        return max(0.0, seen_at - self._last_look_started)

    async def _watch(self) -> None:
        backoff = 0.1
        try:
            while not self._closed:
                started = Clock.monotonic()
                self._look_read = True
                try:
                    wait = await self._look_once()
                except ObserverFault:  # the observer cannot work at all: below, not retried
                    raise
                except Exception as exc:
                    # The far end is down (ChannelUnreachable), or answered what the kind
                    # cannot read: nothing can be seen; keep trying, gently.
                    # (only the class of an unforeseen error: its text may quote an answer)
                    self._observer_trouble = (
                        exc.reason
                        if isinstance(exc, ChannelUnreachable)
                        else both(
                            "観測側が読めない応答を受け取りました",
                            "the observer got an answer it cannot read",
                            exc.__class__.__name__,
                        )
                    )
                    log.debug(
                        "%s: observer cannot look: %s", self.channel_id, self._observer_trouble
                    )
                    self._parked.set()
                    await self._back_off(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                if self._look_read:  # a poll's next bound counts from a look that read
                    self._last_look_started = started
                self._observer_trouble = None
                backoff = 0.1
                delay = self.look_interval() if wait is None else wait
                if delay > 0:
                    await asyncio.sleep(min(delay, MAX_THROTTLE_WAIT_S))
        except ObserverFault as exc:
            self.sightings.fail(exc)
            self._parked.set()

    async def _look_once(self) -> float | None:
        """One look; however it ends, a look a send woke has ended with it."""
        try:
            return await self._look()
        finally:
            self._looking_since = None

    async def _back_off(self, seconds: float) -> None:
        """Sleep *seconds* after a failed look, or less: until a message begins to be awaited.

        An observer that met an outage backs off (0.1 s doubling to 5 s). A message sent
        once the far end is back must not wait out that sleep: it may be readable, and
        awaited for less time than the sleep, long before the next look.
        """
        self._wake.clear()
        if self._awaited:  # while a message is awaited, look at least twice a second
            seconds = min(seconds, BACKOFF_AWAITED_S)
        woken = asyncio.ensure_future(self._wake.wait())
        try:  # (asyncio.wait, not wait_for: it never swallows the watcher's cancellation)
            await asyncio.wait([woken], timeout=seconds)
        finally:
            woken.cancel()

    async def _close_clients(self) -> None:
        """Release the kind's own clients (the shared aiohttp session is the runner's)."""

    async def close(self) -> None:
        """Stop the watcher and release the clients; never waits longer than ~2 × CLOSE_WAIT_S.

        A drill's finish closes every probe: a watcher that will not stop, or a client
        library whose close hangs, must not hang the drill (it is left behind, logged).
        """
        self._closed = True  # a watcher that ate every cancellation still stops looking
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            # Cancel until it stops: on Python 3.11 a cancel that meets a finishing
            # ``asyncio.wait_for`` inside a client library is lost, and the watcher would
            # keep looking (and close() wait for it) for ever.
            deadline = Clock.monotonic() + CLOSE_WAIT_S
            watcher.cancel()
            await asyncio.sleep(0)  # a resting watcher has stopped by the next turn
            while not watcher.done() and Clock.monotonic() < deadline:
                await asyncio.wait([watcher], timeout=0.05)
                if not watcher.done():
                    watcher.cancel()
            if not watcher.done():
                log.warning(
                    "%s: the observer did not stop within %.1f s", self.channel_id, CLOSE_WAIT_S
                )
            elif not watcher.cancelled():
                with contextlib.suppress(Exception):
                    watcher.result()
        if type(self)._close_clients is ChatProbe._close_clients:  # no clients of its own
            return
        closing = asyncio.ensure_future(self._close_clients())
        done, _ = await asyncio.wait([closing], timeout=CLOSE_WAIT_S)
        if not done:
            closing.cancel()
            log.warning("%s: closing the clients took over %.1f s", self.channel_id, CLOSE_WAIT_S)
        elif not closing.cancelled():
            with contextlib.suppress(Exception):
                closing.result()
