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

    rate       sends admitted per second (tokens; None: no limit)
    burst      sends admitted at once before the rate applies (the most tokens kept)
    in_flight  sends on the wire at once (request written, answer not yet read)
    lag_limit  seconds: while the event loop runs later than this
               (:class:`drills.core.loop_lag.LagMonitor`, or the dispatcher's own
               look, a timer as late as the loop's backlog), no new send is
               admitted — the answers already on their way are noticed first, for
               at most MAX_BRAKE_S (0.25 s) on end, so a busy machine still sends;
               and each late reading lowers the rate (:class:`RateGovernor`, down
               to rate/16), so the sends that do go leave at a pace the late loop
               can answer (None: no brake, no governor)

    TSUNAGARI_PACE="rate=2000,burst=40,in_flight=128,lag_limit=0.01"   # the defaults
    TSUNAGARI_PACE="rate=800"             # the rest as the defaults
    TSUNAGARI_PACE="off"                  # no pacing at all

How the sends leave: one dispatcher looks every :data:`QUANTUM_S` (10 ms) while
sends wait, and releases as many as the tokens, the in-flight places and the
loop's lag allow — together, in one turn of the loop (:class:`Pacer`). Sent in
such batches, their answers come back in batches too, and a loop handles a batch
for less CPU than the same answers one turn each. Nothing is promised ahead: a
rate the governor lowers or raises applies from its next look. The governor
starts at the configured rate, not low: the first look reads the loop's lag
before anything is released, so a step's busy start is measured, not assumed; and
from step to step of a drill it keeps the rate it found.

The rate caps what one process asks of the machine; the lag brake adapts to
what the machine can give right now (other work on the same cores slows the
sends instead of the measurements). A bigger machine can raise ``rate``.

The arithmetic is pure (:class:`Admission` and :class:`RateGovernor` take the time
and the lag as arguments); :class:`Pacer` is the asyncio part the runner uses.

    >>> a = Admission(Pacing(rate=100.0, burst=2), now=0.0)
    >>> [a.release(t, lag=0.0, waiting=10, on_wire=0) for t in (0.0, 0.01, 0.02, 0.03)]
    [2, 1, 1, 1]
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

from drills.core.errors import ScenarioError

__all__ = ["DEFAULT", "ENV_VAR", "Admission", "Pacer", "Pacing", "PacingStats", "RateGovernor"]

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
        """``rate=2000,burst=40,in_flight=128,lag_limit=0.01`` (or ``off``): what :meth:`parse` reads."""
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


# Waiting sends are released by one dispatcher on a 10 ms grid (the loop-lag monitor's
# period): the sends of one quantum leave together, in one turn of the event loop.
QUANTUM_S = 0.01
# The lag brake holds the queue at most this long: on a machine that stays busy the
# loop may never run on time again, and a drill must still send (its lag is then in
# each record's error bound and its wait in queue_s, never in a latency).
MAX_BRAKE_S = 0.25

# The lag governor (:class:`RateGovernor`): each time the loop is found running later
# than ``lag_limit`` the token rate drops to DOWN of itself; each quantum it runs on
# time the rate climbs back by UP of the configured rate; never below FLOOR of it.
DOWN = 0.7
UP = 0.02  # a fiftieth of the rate per on-time quantum: from the floor to full in ~0.5 s
FLOOR = 1 / 16

# Measured on 2 cores (benchmarks/bench_core_fanout.py, 1,000 and 10,000 channels at
# 300 ms, the far ends in their own processes): the governor holds the pace near what
# the machine sustains, so the rate is a ceiling, not the pace.
DEFAULT = Pacing(rate=2000.0, burst=40, in_flight=128, lag_limit=0.01)


class Admission:
    """The dispatcher's rule, pure: how many of the waiting sends one look releases.

    Each :meth:`release` is one look (the caller passes the time, the loop's lag then,
    how many sends wait and how many are on the wire). Tokens accrue at the current
    rate (``rate``; the governor's, when the lag is watched) up to ``burst`` (or one
    quantum's worth, ``rate`` × :data:`QUANTUM_S`, where that is more); the sends
    released are at most the whole tokens, the free in-flight places and the sends
    waiting. Nothing is reserved ahead: a rate the governor changes applies from the
    very next look, and a send held is held in the queue, not behind a start time
    promised at a slower rate. While the loop runs later than ``lag_limit`` nothing is
    released and no token accrues (the brake) — for at most :data:`MAX_BRAKE_S` on
    end; after that the sends go at the governor's lowered rate.

    >>> a = Admission(Pacing(rate=100.0, burst=2), now=0.0)
    >>> [a.release(t, 0.0, waiting=10, on_wire=0) for t in (0.0, 0.01, 0.02, 0.05)]
    [2, 1, 1, 2]
    """

    def __init__(self, pacing: Pacing, now: float) -> None:
        self.pacing = pacing
        self.governor: RateGovernor | None = None
        if pacing.rate is not None and pacing.lag_limit is not None:
            self.governor = RateGovernor(pacing.rate, now)
        self.rate = pacing.rate if self.governor is None else self.governor.rate
        self.tokens = float(pacing.burst)
        self._last = now
        self._braked_since: float | None = None

    def release(self, now: float, lag: float, waiting: int, on_wire: int) -> int:
        """How many of the *waiting* sends go now (the oldest first)."""
        elapsed, self._last = max(0.0, now - self._last), now
        limit = self.pacing.lag_limit
        held = False
        if limit is not None and lag > limit:
            if self._braked_since is None:
                self._braked_since = now
            held = now - self._braked_since < MAX_BRAKE_S
        else:
            self._braked_since = None
        if self.rate is not None and not held:
            # at most the burst is saved up — or one quantum's worth, where that is more:
            # a quantum's sends leave together, at the rate
            most = max(float(self.pacing.burst), self.rate * QUANTUM_S)
            self.tokens = min(most, self.tokens + self.rate * elapsed)
        if self.governor is not None:
            assert limit is not None
            self.rate = self.governor.update(lag, limit, now)
        if held:
            return 0
        go = waiting
        if self.rate is not None:
            go = min(go, int(self.tokens + 1e-9))
        if self.pacing.in_flight is not None:
            go = min(go, self.pacing.in_flight - on_wire)
        go = max(0, go)
        if self.rate is not None:
            self.tokens -= go
        return go


class RateGovernor:
    """The token rate the event loop's lag allows: down fast, up slowly (AIMD).

    The lag brake alone holds a send while the loop runs late, but at most
    :data:`MAX_BRAKE_S`: on a loop that stays late every held send then goes, and
    ``in_flight`` of them at once — more than the late loop can answer in time (its
    answers are then noticed late, and the records' error bounds widen). The
    governor lowers the pace itself instead: each lag reading over the limit cuts
    the rate to :data:`DOWN` of itself (not below :data:`FLOOR` of the configured
    rate, so a busy machine still sends), each :data:`QUANTUM_S` on time adds
    :data:`UP` of it back. It starts at *start* of the rate (1: the rate itself —
    the dispatcher reads the lag before its first release, so a step's busy start is
    seen, not guessed). Pure: the caller passes the lag and the time.

    >>> g = RateGovernor(top=800.0, now=0.0)
    >>> [round(g.update(lag, 0.005, t)) for lag, t in ((0.1, 0.01), (0.1, 0.02), (0.0, 0.04))]
    [560, 392, 424]
    >>> round(g.update(0.0, 0.005, 10.0)), round(RateGovernor(800.0, 0.0, FLOOR).rate)
    (800, 50)
    """

    def __init__(self, top: float, now: float, start: float = 1.0) -> None:
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

    A send that asks joins one queue; one dispatcher (a timer every
    :data:`QUANTUM_S`, running only while sends wait) reads the loop's lag — its own
    lateness, which is how long the loop took to get round to it, and *lag*, the
    monitor's latest reading (:meth:`drills.core.loop_lag.LagMonitor.current`),
    whichever is larger — asks :class:`Admission` how many may go, and wakes that
    many, oldest first, in one turn: they leave together and their answers come back
    together (a loop handles a batch for less than the same sends one turn each).
    Without *lag* the dispatcher's own lateness is the lag.
    *halted* says the drill is stopping (:func:`drills.core.interrupt.stopping`): the
    dispatcher then wakes every waiting send at once — the caller sends nothing and
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
        self._admission: Admission | None = None
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        self._on_wire = 0  # sends released and not yet out of their slot
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def admission(self) -> Admission | None:
        """The dispatcher's rule and state (None until a send first waited)."""
        return self._admission

    @property
    def on_wire(self) -> int:
        """Sends released and not yet out of their slot."""
        return self._on_wire

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        self._due = time.monotonic() + QUANTUM_S
        self._timer = loop.call_later(QUANTUM_S, self._dispatch, loop)

    def _dispatch(self, loop: asyncio.AbstractEventLoop) -> None:
        """One look: release what :class:`Admission` allows; look again while sends wait."""
        self._timer = None
        now = time.monotonic()
        waiting = self._waiting
        while waiting and waiting[0].done():  # cancelled while it waited
            waiting.popleft()
        if not waiting:
            return
        if self._halted is not None and self._halted():
            go = len(waiting)
        else:
            lag = max(0.0, now - self._due)
            if self._lag is not None:
                lag = max(lag, self._lag())
            if self._admission is None:
                self._admission = Admission(self.pacing, now)
            go = self._admission.release(now, lag, len(waiting), self._on_wire)
        while go > 0 and waiting:
            fut = waiting.popleft()
            if not fut.done():
                fut.set_result(None)
                self._on_wire += 1
                go -= 1
        if waiting:
            self._schedule(loop)

    @contextlib.asynccontextmanager
    async def slot(self, stats: PacingStats | None = None) -> AsyncIterator[None]:
        """Wait until the dispatcher releases this send; hold its in-flight place while inside."""
        if not self.pacing.paces:
            if stats is not None:
                stats.add(0.0)
            yield
            return
        asked = time.monotonic()
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new loop (a drill's next asyncio.run): a new queue
            self._loop, self._waiting, self._timer, self._on_wire = (
                loop,
                collections.deque(),
                None,
                0,
            )
        fut: asyncio.Future[None] = loop.create_future()
        self._waiting.append(fut)
        if self._timer is None:
            self._schedule(loop)
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled():  # released, then cancelled: give it back
                self._on_wire -= 1
            fut.cancel()
            raise
        try:
            if self._halted is not None and self._halted():
                yield  # stopping: the caller sends nothing
                return
            if stats is not None:
                stats.add(time.monotonic() - asked)
                admission = self._admission
                if admission is not None and admission.governor is not None:
                    rate = admission.rate
                    if rate is not None and rate < admission.governor.top:
                        low = stats.rate_lowest
                        stats.rate_lowest = rate if low is None else min(low, rate)
            yield
        finally:
            self._on_wire -= 1
