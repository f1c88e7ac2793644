"""Pacing: how fast the runner lets drill messages leave, so it never times its own queue.

Two cores cannot put 10,000 requests on the wire in the same instant. Sent all
at once, they queue inside the harness (the event loop, the connection setup)
and the answers come back faster than the loop can notice them: the harness's
own backlog would read as channel latency. The runner therefore admits sends
at a pace the machine can keep up with, and times each message from the
instant it actually left (:mod:`probes.sendmark`). What the pacing costs is
wall time — the step takes longer — and it is reported
(:attr:`drills.core.step.StepResult.pacing`), never hidden in a latency.

The knob is :class:`Pacing` (``Drill(pacing=…)``, or the environment variable
``TSUNAGARI_PACE`` for the commands)::

    rate       sends admitted per second (a token bucket; None: no limit)
    burst      sends admitted at once before the rate applies
    in_flight  sends on the wire at once (request written, answer not yet read)
    lag_limit  seconds: while the event loop runs later than this
               (:class:`drills.core.loop_lag.LagMonitor`, or one trip through the
               loop's ready queue right now), no new send is admitted — the answers
               already on their way are noticed first, for at most MAX_BRAKE_S
               (0.25 s) per send, so a busy machine still sends; and each late
               reading lowers the rate (:class:`RateGovernor`, down to rate/16), so
               the sends that do go leave at a pace the late loop can answer
               (None: no brake, no governor)

    TSUNAGARI_PACE="rate=800,burst=40,in_flight=128,lag_limit=0.005"   # the defaults
    TSUNAGARI_PACE="rate=2000"            # the rest as the defaults
    TSUNAGARI_PACE="off"                  # no pacing at all

The rate caps what one process asks of the machine; the lag brake adapts to
what the machine can give right now (other work on the same cores slows the
sends instead of the measurements). A bigger machine can raise ``rate``.

The arithmetic is pure (:class:`TokenBucket` takes the time as an argument);
:class:`Pacer` is the asyncio part the runner uses.

    >>> bucket = TokenBucket(rate=10.0, burst=2, now=0.0)
    >>> [round(bucket.reserve(0.0), 3) for _ in range(4)]
    [0.0, 0.0, 0.1, 0.2]
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

from drills.core.errors import ScenarioError

__all__ = ["DEFAULT", "ENV_VAR", "Pacer", "Pacing", "PacingStats", "RateGovernor", "TokenBucket"]

ENV_VAR = "TSUNAGARI_PACE"


@dataclass(frozen=True, slots=True)
class Pacing:
    """How fast sends may leave (see the module docstring). ``Pacing()`` paces nothing."""

    rate: float | None = None
    burst: int = 1
    in_flight: int | None = None
    lag_limit: float | None = None

    def __post_init__(self) -> None:
        if self.rate is not None and not self.rate > 0:
            raise ValueError(f"pacing rate must be > 0 sends/s, got {self.rate}")
        if self.burst < 1:
            raise ValueError(f"pacing burst must be ≥ 1, got {self.burst}")
        if self.in_flight is not None and self.in_flight < 1:
            raise ValueError(f"pacing in_flight must be ≥ 1, got {self.in_flight}")
        if self.lag_limit is not None and not self.lag_limit > 0:
            raise ValueError(f"pacing lag_limit must be > 0 s, got {self.lag_limit}")

    @property
    def paces(self) -> bool:
        return self.rate is not None or self.in_flight is not None or self.lag_limit is not None

    def describe(self) -> str:
        """``rate=800,burst=40,in_flight=128,lag_limit=0.005`` (or ``off``): what :meth:`parse` reads."""
        if not self.paces:
            return "off"

        def value(v: float | None) -> str:
            return "off" if v is None else f"{v:g}"

        return (
            f"rate={value(self.rate)},burst={self.burst},"
            f"in_flight={value(self.in_flight)},lag_limit={value(self.lag_limit)}"
        )

    @classmethod
    def parse(cls, text: str) -> Pacing:
        """``rate=…,burst=…,in_flight=…,lag_limit=…`` (any subset; the rest from :data:`DEFAULT`)
        or ``off``; a value ``off`` turns that part off.

        >>> Pacing.parse("rate=100,lag_limit=off").describe(), Pacing.parse("off").describe()
        ('rate=100,burst=40,in_flight=128,lag_limit=off', 'off')
        >>> Pacing.parse("speed=3")
        Traceback (most recent call last):
        ...
        drills.core.errors.ScenarioError: TSUNAGARI_PACE の指定が読めません: 'speed=3'（rate=…,burst=…,in_flight=…,lag_limit=… または off） / cannot read TSUNAGARI_PACE 'speed=3' (rate=…,burst=…,in_flight=…,lag_limit=… or off): unknown key 'speed'
        """
        text = text.strip()
        if text.lower() in ("off", "none", "0"):
            return cls()
        fields: dict[str, float | int | None] = {
            "rate": DEFAULT.rate,
            "burst": DEFAULT.burst,
            "in_flight": DEFAULT.in_flight,
            "lag_limit": DEFAULT.lag_limit,
        }
        try:
            for part in filter(None, (p.strip() for p in text.split(","))):
                key, sep, value = part.partition("=")
                key = key.strip()
                if not sep or key not in fields:
                    raise ValueError(f"unknown key {key!r}" if sep else f"no '=' in {part!r}")
                value = value.strip()
                if value.lower() in ("off", "none"):
                    if key == "burst":
                        raise ValueError("burst cannot be off")
                    fields[key] = None
                else:
                    fields[key] = float(value) if key in ("rate", "lag_limit") else int(value)
            rate, burst, in_flight = fields["rate"], fields["burst"], fields["in_flight"]
            lag_limit = fields["lag_limit"]
            return cls(
                rate=None if rate is None else float(rate),
                burst=1 if burst is None else int(burst),
                in_flight=None if in_flight is None else int(in_flight),
                lag_limit=None if lag_limit is None else float(lag_limit),
            )
        except ValueError as exc:
            raise ScenarioError(
                f"{ENV_VAR} の指定が読めません: {text!r}（rate=…,burst=…,in_flight=…,lag_limit=… "
                f"または off） / cannot read {ENV_VAR} {text!r} "
                f"(rate=…,burst=…,in_flight=…,lag_limit=… or off): {exc}"
            ) from None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Pacing:
        """The pacing ``TSUNAGARI_PACE`` asks for, else :data:`DEFAULT`."""
        value = (os.environ if env is None else env).get(ENV_VAR, "")
        return cls.parse(value) if value.strip() else DEFAULT


# Sends that must wait are woken on a 10 ms grid (the loop-lag monitor's period).
QUANTUM_S = 0.01
# The lag brake holds one send at most this long: on a machine that stays busy the
# loop may never run on time again, and a drill must still send (its lag is then in
# each record's error bound and its wait in queue_s, never in a latency).
MAX_BRAKE_S = 0.25

# The lag governor (:class:`RateGovernor`): each time the loop is found running later
# than ``lag_limit`` the token rate drops to DOWN of itself; each quantum it runs on
# time the rate climbs back by UP of the configured rate; never below FLOOR of it.
DOWN = 0.7
UP = 0.02  # a fiftieth of the rate per on-time quantum: from the floor to full in ~0.5 s
FLOOR = 1 / 16

DEFAULT = Pacing(rate=800.0, burst=40, in_flight=128, lag_limit=0.005)


class TokenBucket:
    """A token bucket as reservations (GCRA): each :meth:`reserve` says when its send may go.

    Pure: the caller passes the monotonic time. *burst* sends may go at once; after
    that one every ``1 / rate`` seconds. Reservations are granted in call order.
    With a *quantum*, a send that must wait waits until the next multiple of it: the
    sends of one quantum wake the event loop once, together (never earlier than the
    rate allows — only later, by less than a quantum).

    >>> bucket = TokenBucket(rate=1000.0, burst=1, now=0.0, quantum=0.01)
    >>> [round(bucket.reserve(0.0), 3) for _ in range(3)]
    [0.0, 0.01, 0.01]
    """

    def __init__(self, rate: float, burst: int = 1, now: float = 0.0, quantum: float = 0.0) -> None:
        self.interval = 1.0 / rate
        self.burst = burst
        self.tolerance = (burst - 1) * self.interval
        self.quantum = quantum
        self._tat = now  # the theoretical arrival time of the next send

    def set_rate(self, rate: float) -> None:
        """Space the sends reserved from now on ``1 / rate`` apart (the burst stays a count)."""
        self.interval = 1.0 / rate
        self.tolerance = (self.burst - 1) * self.interval

    def reserve(self, now: float) -> float:
        """Take one token; the instant (≥ *now*) the send may leave."""
        start = max(now, self._tat - self.tolerance)
        self._tat = max(self._tat, start) + self.interval
        if start > now and self.quantum > 0:
            start = math.ceil(start / self.quantum) * self.quantum
        return start


class RateGovernor:
    """The token rate the event loop's lag allows: down fast, up slowly (AIMD).

    The lag brake alone holds a send while the loop runs late, but at most
    :data:`MAX_BRAKE_S`: on a loop that stays late every held send then goes, and
    ``in_flight`` of them at once — more than the late loop can answer in time (its
    answers are then noticed late, and the records' error bounds widen). The
    governor lowers the pace itself instead: each lag reading over the limit cuts
    the rate to :data:`DOWN` of itself (not below :data:`FLOOR` of the configured
    rate, so a busy machine still sends), each :data:`QUANTUM_S` on time adds
    :data:`UP` of it back. It starts low (*start*, a fraction of the rate): a step's
    first moments are its busiest (every delivery set up at once, the collector
    catching up with them), and the sends of a stall's moment are the ones it bends.
    Pure: the caller passes the lag and the time.

    >>> g = RateGovernor(top=800.0, now=0.0, start=1.0)
    >>> [round(g.update(lag, 0.005, t)) for lag, t in ((0.1, 0.01), (0.1, 0.02), (0.0, 0.04))]
    [560, 392, 424]
    >>> round(g.update(0.0, 0.005, 10.0)), round(RateGovernor(800.0, 0.0).update(0.0, 0.005, 0.05))
    (800, 130)
    """

    def __init__(self, top: float, now: float, start: float = FLOOR) -> None:
        self.top = top
        self.rate = top * start
        self.lowest = self.rate
        self._last = now

    def update(self, lag: float, limit: float, now: float) -> float:
        """The rate after reading *lag* at *now* (at most one change per quantum)."""
        quanta = int((now - self._last) / QUANTUM_S)
        if quanta <= 0:
            return self.rate
        self._last += quanta * QUANTUM_S
        if lag > limit:  # one reading: one cut, however long since the last
            self.rate = max(self.top * FLOOR, self.rate * DOWN)
            self.lowest = min(self.lowest, self.rate)
        else:
            self.rate = min(self.top, self.rate + self.top * UP * quanta)
        return self.rate


@dataclass(slots=True)
class PacingStats:
    """What pacing cost one step: how many sends waited, and for how long."""

    pacing: str = "off"
    sends: int = 0
    waited: int = 0  # sends that waited for a slot or a token
    waited_total_s: float = 0.0
    waited_max_s: float = 0.0
    rate_lowest: float | None = None  # the lowest rate the lag governor set (None: never cut)

    def add(self, waited_s: float) -> None:
        self.sends += 1
        if waited_s > 0:
            self.waited += 1
            self.waited_total_s += waited_s
            self.waited_max_s = max(self.waited_max_s, waited_s)

    def to_data(self) -> dict[str, float | int | str | None]:
        return {
            "pacing": self.pacing,
            "sends": self.sends,
            "waited": self.waited,
            "waited_total_s": round(self.waited_total_s, 6),
            "waited_max_s": round(self.waited_max_s, 6),
            "rate_lowest": None if self.rate_lowest is None else round(self.rate_lowest, 1),
        }


class Pacer:
    """The runner's admission: ``async with pacer.slot(stats): await probe.send(…)``.

    *lag* reads the event loop's current lateness in seconds (the runner passes
    :meth:`drills.core.loop_lag.LagMonitor.current`); without it the brake is off.
    *halted* says the drill is stopping (:func:`drills.core.interrupt.stopping`): a
    send that gets its slot then waits for no token — the caller sends nothing and
    the queue drains at once, not at the pace.
    """

    def __init__(
        self,
        pacing: Pacing,
        lag: Callable[[], float] | None = None,
        halted: Callable[[], bool] | None = None,
    ) -> None:
        self.pacing = pacing
        self._lag = lag
        self._halted = halted
        self._bucket: TokenBucket | None = None
        self._governor: RateGovernor | None = None
        self._slots = asyncio.Semaphore(pacing.in_flight) if pacing.in_flight else None
        self._calm: asyncio.Future[None] | None = None  # one shared wait while braking
        self._turn: asyncio.Future[float] | None = None  # one shared trip through the queue
        self._late = 0.0  # how late the loop ran at the last look (see _how_late)

    async def _how_late(self) -> float:
        """How late the loop runs *now*: the lag monitor's last reading, or the time one
        trip through the loop's ready queue takes now, whichever is larger.

        The monitor's reading is up to one period old: thousands of deliveries made
        ready in one turn (a step's start) stall the loop before any tick can say so,
        and sends admitted then would leave into the stall and have their answers
        noticed late. A trip through the queue (one ``call_soon``, shared by every
        send asking meanwhile) sees that backlog before the send is admitted.
        """
        assert self._lag is not None
        turn = self._turn
        if turn is None or turn.done():
            loop = asyncio.get_running_loop()
            turn = self._turn = loop.create_future()
            loop.call_soon(_turned, turn, time.monotonic())
        self._late = max(self._lag(), await asyncio.shield(turn))
        return self._late

    async def _brake(self) -> None:
        """While the loop runs later than ``lag_limit``, wait (one shared timer for all)."""
        limit = self.pacing.lag_limit
        if limit is None or self._lag is None:
            return
        until = time.monotonic() + MAX_BRAKE_S
        while await self._how_late() > limit and time.monotonic() < until:
            calm = self._calm
            if calm is None or calm.done():
                loop = asyncio.get_running_loop()
                calm = self._calm = loop.create_future()
                loop.call_later(limit, _settle, calm)
            await asyncio.shield(calm)

    @contextlib.asynccontextmanager
    async def slot(self, stats: PacingStats | None = None) -> AsyncIterator[None]:
        """Wait for an in-flight slot, then for a token; hold the slot while inside."""
        if not self.pacing.paces:
            if stats is not None:
                stats.add(0.0)
            yield
            return
        asked = time.monotonic()
        if self._slots is not None:
            await self._slots.acquire()
        try:
            if self._halted is not None and self._halted():
                yield  # stopping: the caller sends nothing; no wait for a token
                return
            await self._brake()
            if self.pacing.rate is not None:
                if self._bucket is None:
                    self._bucket = TokenBucket(
                        self.pacing.rate, self.pacing.burst, asked, quantum=QUANTUM_S
                    )
                    if self.pacing.lag_limit is not None and self._lag is not None:
                        self._governor = RateGovernor(self.pacing.rate, asked)
                now = time.monotonic()
                if self._governor is not None:
                    assert self.pacing.lag_limit is not None
                    rate = self._governor.update(self._late, self.pacing.lag_limit, now)
                    self._bucket.set_rate(rate)
                    if stats is not None and rate < self._governor.top:
                        low = stats.rate_lowest
                        stats.rate_lowest = rate if low is None else min(low, rate)
                start = self._bucket.reserve(now)
                if start > now:
                    await asyncio.sleep(start - now)
            if stats is not None:
                stats.add(time.monotonic() - asked)
            yield
        finally:
            if self._slots is not None:
                self._slots.release()


def _turned(fut: asyncio.Future[float], asked: float) -> None:
    if not fut.done():
        fut.set_result(time.monotonic() - asked)


def _settle(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
