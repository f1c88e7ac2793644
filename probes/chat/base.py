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
provider's "slow down" (counting it in ``Accepted.throttled``), the watcher
task that keeps looking, and ``observe`` that never misses a token seen before
it was awaited.

A kind whose service offers no way to see arrival with the credentials given
returns False from ``confirms()``; its deliveries are *accepted only*.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
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
    Probe,
    ProbeEnv,
    Sighting,
    Sightings,
    find_tokens,
)
from probes.replies import ReplyBook
from probes.settings import Duration

__all__ = [
    "AccessTokens",
    "ChatProbe",
    "ChatSettings",
    "Throttle",
    "Verdict",
    "rate_limited",
    "retry_after_seconds",
]

log = logging.getLogger(__name__)

# Never sleep longer than this for one "slow down" (a broken Retry-After must not hang a drill).
MAX_THROTTLE_WAIT_S = 60.0


@dataclass(frozen=True, slots=True)
class Throttle:
    """The provider said "slow down": wait ``seconds`` and try the same send again."""

    seconds: float
    code: str = "rate_limited"


# What a provider's answer to a send means: None (accepted), a Throttle, or the fault to raise.
Verdict: TypeAlias = "Throttle | ChannelFault | None"


class ChatSettings(ChannelSettings):
    """Settings every chat kind has."""

    max_retries: int = Field(default=5, ge=0, le=20)
    request_timeout: Duration = 10.0


def retry_after_seconds(headers: Any, default: float = 1.0) -> float:
    """Seconds to wait from a Retry-After header (seconds form), else *default*.

    >>> retry_after_seconds({"Retry-After": "3"}), retry_after_seconds({}, 0.5)
    (3.0, 0.5)
    """
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return max(0.0, float(value)) if value is not None else default
    except ValueError:
        return default


def rate_limited(kind: str, throttle: Throttle, attempts: int) -> ChannelRejected:
    """The refusal when the provider keeps saying "slow down" past our retries."""
    return ChannelRejected(
        f"{kind}: レート制限が続いたため送信できません / still rate limited after "
        f"{attempts} attempts ({throttle.code})",
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
        self.replies = ReplyBook()  # answers (RE[token] who) the observer read
        self.opened_wall = time.time()  # when the drill began watching (wall clock)
        self._parked = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None
        self._last_look_started = Clock.monotonic()
        self._observer_trouble: str | None = None  # why the last look failed, if it did

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
    ) -> tuple[int, str, Any]:
        """One HTTP request on the drill's shared session: (status, body text, headers).

        Connection failures and timeouts become :class:`ChannelUnreachable`.
        """
        total = timeout if timeout is not None else self.settings.request_timeout
        client_timeout = aiohttp.ClientTimeout(total=total)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            async with self.env.http().request(
                method, url, headers=headers, timeout=client_timeout, **kw
            ) as resp:
                return resp.status, await resp.text(), resp.headers
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ChannelUnreachable(
                f"{self.service} に接続できません / cannot reach {self.service}: "
                f"{exc.__class__.__name__}"
            ) from exc

    # ------------------------------------------------------------------ sending

    @abstractmethod
    async def _attempt(self, message: DrillMessage) -> Accepted | Throttle:
        """Send once; an :class:`Accepted` or a :class:`Throttle` (the provider's "slow down")."""

    async def send(self, message: DrillMessage) -> Accepted:
        throttled = 0
        while True:
            outcome = await self._attempt(message)
            if isinstance(outcome, Accepted):
                return dataclasses.replace(outcome, throttled=throttled)
            if throttled >= self.settings.max_retries:
                raise rate_limited(self.kind, outcome, throttled + 1)
            throttled += 1
            await asyncio.sleep(min(outcome.seconds, MAX_THROTTLE_WAIT_S))

    # ------------------------------------------------------------------ observing

    async def _look(self) -> float | None:
        """One look at the room; see the module docstring. Needed when ``confirms()``."""
        raise NotImplementedError

    def look_interval(self) -> float:
        """Seconds between looks when ``_look`` does not say otherwise."""
        return self.poll_interval

    async def open(self) -> None:
        self.opened_wall = time.time()
        if not self.confirms() or self._watcher is not None:
            return
        self._watcher = asyncio.create_task(self._watch(), name=f"watch:{self.channel_id}")
        parked = asyncio.ensure_future(self._parked.wait())
        try:
            # Park the observer before anything is sent; a refused login surfaces here.
            await asyncio.wait(
                [self._watcher, parked],
                return_when=asyncio.FIRST_COMPLETED,
                timeout=self.settings.request_timeout,
            )
        finally:
            parked.cancel()

    async def observe(self, message: DrillMessage) -> Sighting:
        return await self.sightings.wait(message.token)

    def timeout_reason(self, message: DrillMessage) -> str | None:
        """Why *message* was not seen, when the observer knows more than "not in time"."""
        if self._observer_trouble is None:
            return None
        return (
            "着信を確認できず、観測側もサービスに接続できません / not seen, and the observer "
            f"could not reach the service either ({self._observer_trouble})"
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
            while True:
                started = Clock.monotonic()
                try:
                    wait = await self._look()
                except ChannelUnreachable as exc:
                    # The far end is down: nothing can be seen; keep trying, gently.
                    log.debug("%s: observer cannot reach the far end: %s", self.channel_id, exc)
                    self._observer_trouble = exc.reason
                    self._parked.set()
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                self._last_look_started = started
                self._observer_trouble = None
                backoff = 0.1
                delay = self.look_interval() if wait is None else wait
                if delay > 0:
                    await asyncio.sleep(min(delay, MAX_THROTTLE_WAIT_S))
        except ObserverFault as exc:
            self.sightings.fail(exc)
            self._parked.set()

    async def _close_clients(self) -> None:
        """Release the kind's own clients (the shared aiohttp session is the runner's)."""

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watcher
            self._watcher = None
        await self._close_clients()
