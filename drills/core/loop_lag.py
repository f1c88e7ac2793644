"""How late the drill's event loop runs its callbacks, measured while a drill runs.

A loaded harness notices arrivals late: a sighting's timestamp is taken when
the observer's code runs, which is after the loop got round to it. The
:class:`LagMonitor` makes that visible so the runner can add it to each
delivery's ``error_bound_s`` instead of silently adding it to the latency.

How it measures: a timer callback asks to run every ``period`` seconds (10 ms);
each time it runs it writes down ``(ran_at, ran_at - due_at)`` on the monotonic
clock. The *lag at* an instant ``t`` is the lateness of the first tick that
ran at or after ``t``: anything that became ready at ``t`` waited behind the
same queue that tick waited behind. When no tick ran after ``t`` yet,
:meth:`LagMonitor.settle` waits for one (at most one period plus the lag).
An idle loop reads ~0.1–1 ms (the poller's millisecond timeout); a loop busy
with 1,000 sends reads what those sends cost it.

    monitor = LagMonitor()
    monitor.start()                     # inside the running loop
    ...
    await monitor.settle(t)             # a tick ran after t
    monitor.lag_at(t)                   # seconds
    monitor.stop()
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time

__all__ = ["LagMonitor"]


class LagMonitor:
    """Samples the running loop's timer lateness every *period* seconds."""

    def __init__(self, period: float = 0.01, keep: int = 200_000) -> None:
        self.period = period
        self._keep = keep
        self._ran: list[float] = []  # monotonic, increasing
        self._lag: list[float] = []
        self._trimmed = False
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._due = 0.0
        self._waiters: list[tuple[float, asyncio.Future[None]]] = []  # for a tick after a time
        self._next: asyncio.Future[None] | None = None  # the next tick, shared by its waiters

    @property
    def running(self) -> bool:
        return self._handle is not None

    def start(self) -> None:
        """Start sampling on the running loop (idempotent; moves to a new loop)."""
        loop = asyncio.get_running_loop()
        if self._handle is not None and self._loop is loop and not loop.is_closed():
            return
        self.stop()
        self._loop = loop
        self._schedule(time.monotonic())

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        waiting = [fut for _, fut in self._waiters]
        if self._next is not None:
            waiting.append(self._next)
        for fut in waiting:
            if not fut.done():
                with contextlib.suppress(RuntimeError):  # its loop may be closed
                    fut.set_result(None)
        self._waiters.clear()
        self._next = None

    def _schedule(self, now: float) -> None:
        assert self._loop is not None
        self._due = now + self.period
        self._handle = self._loop.call_later(self.period, self._tick)

    def _tick(self) -> None:
        now = time.monotonic()
        self._ran.append(now)
        self._lag.append(max(0.0, now - self._due))
        if len(self._ran) > 2 * self._keep:
            del self._ran[: self._keep], self._lag[: self._keep]
            self._trimmed = True
        if self._next is not None:
            if not self._next.done():
                self._next.set_result(None)
            self._next = None
        if self._waiters:
            ready = [w for w in self._waiters if w[0] <= now]
            self._waiters = [w for w in self._waiters if w[0] > now]
            for _, fut in ready:
                if not fut.done():
                    fut.set_result(None)
        self._schedule(now)

    def current(self) -> float:
        """The lateness of the latest tick (0.0 before the first): how busy the loop is now."""
        return self._lag[-1] if self._lag else 0.0

    def samples(self, since: float = 0.0) -> list[tuple[float, float]]:
        """The ticks kept that ran at or after monotonic *since*: ``(ran_at, lag)`` pairs
        (a timeline of the loop's lateness, e.g. for a benchmark to line up with what
        happened then)."""
        i = bisect.bisect_left(self._ran, since)
        return list(zip(self._ran[i:], self._lag[i:], strict=True))

    def lag_at(self, t: float) -> float:
        """The loop's lag at monotonic *t* (see the module docstring); 0.0 if never sampled.

        With no tick after *t* yet, the latest lag known; with *t* older than the
        samples kept, the largest lag kept (never an optimistic answer).
        """
        if not self._ran:
            return 0.0
        i = bisect.bisect_left(self._ran, t)
        if i >= len(self._ran):
            return self._lag[-1]
        if i == 0 and self._trimmed:
            return max(self._lag)
        return self._lag[i]

    def lag_around(self, t: float) -> float:
        """The larger of the lag of the last tick before *t* and :meth:`lag_at` *t*.

        A stall that ended just before *t* shows on the tick that ran first after it —
        which may be the tick just *before* *t*, when both were ready in the same loop
        iteration (the tick ran first, then the code that noted *t*).
        """
        if not self._ran:
            return 0.0
        i = bisect.bisect_left(self._ran, t)
        before = self._lag[i - 1] if i > 0 else 0.0
        return max(before, self.lag_at(t))

    async def settle(self, t: float) -> None:
        """Wait until a tick ran at or after monotonic *t* (returns at once if not running)."""
        loop = asyncio.get_running_loop()
        if self._handle is None or self._loop is not loop or (self._ran and self._ran[-1] >= t):
            return
        if t <= time.monotonic():  # the next tick runs after now, so after t: share it
            if self._next is None:
                self._next = loop.create_future()
            fut = self._next
        else:
            fut = loop.create_future()
            self._waiters.append((t, fut))
        # A tick comes within a period plus the lag; stop() wakes every waiter.
        await asyncio.shield(fut)
