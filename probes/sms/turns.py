"""A few milliseconds of SMS work per event-loop turn; the rest waits for the next turn.

A burst — a hundred status callbacks read from the sockets in one poll, a
hundred create responses back together — wakes a hundred handlers at once, and
asyncio runs every handler made ready before it looks at its sockets and
timers again: each is cheap (~0.1–0.3 ms), a hundred of them hold the loop for
tens of milliseconds, and every webhook and reply behind them is stamped that
much late.

:class:`TurnGate` bounds that. Work about to start (verifying a webhook, building
a create request) first awaits :meth:`TurnGate.turn`:

- the first entry of a turn opens a *slice* and goes ahead;
- later entries go ahead while the slice is younger than ``budget`` (2 ms);
- after that they queue, and the slice closes when the loop next gets round to
  its timers (a ``call_later(0)``: after the sockets it polled and the timers
  due by then); then the oldest waiters are woken — about twice as many as the
  last slice let through, so a long queue is not woken whole every turn — and
  the next slice opens. A woken entry that finds the slice spent goes back to
  the head of the queue, in its place.

So one slice's gated work is at most ``budget`` plus one entry, and between two
slices the loop always polls its sockets and runs its due timers. Nothing is
dropped; entries go first come, first served; an entry only waits. Timestamps
are taken before the gate — a webhook when its handler starts, Twilio's answer
when it is read (:data:`probes.sms.twilio_http.ANSWERED`) — so a wait here is
never counted as the channel's time.

One gate per drill (:meth:`TurnGate.shared`), so the listener and every SMS
probe share one budget.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from probes.base import ProbeEnv

__all__ = ["BUDGET_S", "TurnGate"]

BUDGET_S = 0.002  # gated work per slice; the loop polls and runs timers between slices
_MIN_BATCH = 8


class TurnGate:
    """At most *budget* seconds of gated work per slice; see the module docstring.

    >>> async def demo() -> tuple[int, int]:
    ...     gate = TurnGate(budget=0.0)  # every entry after the first waits a turn
    ...     await asyncio.gather(*(gate.turn() for _ in range(3)))
    ...     return gate.entered, gate.deferred
    >>> asyncio.run(demo())
    (3, 2)
    """

    def __init__(self, budget: float = BUDGET_S) -> None:
        self.budget = budget
        self.entered = 0  # entries let through
        self.deferred = 0  # entries that waited for a later slice (counted once each)
        self._opened: float | None = None  # perf_counter when the current slice opened
        self._queue: deque[asyncio.Future[None]] = deque()
        self._again: list[asyncio.Future[None]] = []  # woken, found no room: head of the queue
        self._closer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._in_slice = 0  # entries let through in the current slice
        self._batch = _MIN_BATCH  # waiters woken per slice

    @classmethod
    def shared(cls, env: ProbeEnv) -> TurnGate:
        """The drill's gate (one per :class:`~probes.base.ProbeEnv`)."""
        gate = env.shared.get("sms-turn-gate")
        if not isinstance(gate, TurnGate):
            gate = env.shared["sms-turn-gate"] = cls()
        return gate

    async def turn(self) -> None:
        """Return when this slice has room (at once, unless the slice's budget is spent)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # first use, or a drill reused on a new loop: start afresh
            self._loop, self._opened, self._closer = loop, None, None
            self._queue.clear()
            self._again.clear()
        if not self._queue and not self._again and self._room():
            self._enter()
            return
        self.deferred += 1
        waiter = asyncio.get_running_loop().create_future()
        self._queue.append(waiter)
        while True:
            self._close_soon()
            try:
                await waiter
            except asyncio.CancelledError:
                self._discard(waiter)
                raise
            if self._room():
                self._enter()
                return
            waiter = asyncio.get_running_loop().create_future()
            self._again.append(waiter)

    def _enter(self) -> None:
        self.entered += 1
        self._in_slice += 1

    def _room(self) -> bool:
        now = time.perf_counter()
        if self._opened is None:
            self._opened = now
            self._close_soon()
            return True
        return now - self._opened < self.budget

    def _close_soon(self) -> None:
        if self._closer is None:
            self._closer = asyncio.get_running_loop().call_later(0, self._close)

    def _close(self) -> None:
        """The loop has polled and run its due timers: a new slice; wake the queue."""
        self._closer = None
        self._opened = None
        if self._in_slice:
            self._batch = max(_MIN_BATCH, 2 * self._in_slice)
        self._in_slice = 0
        if self._again:
            self._queue.extendleft(reversed(self._again))
            self._again = []
        woken = 0
        for _ in range(min(self._batch, len(self._queue))):
            waiter = self._queue.popleft()
            if not waiter.done():
                waiter.set_result(None)
                woken += 1
        if woken or self._queue:
            # Their slice ends at the next timer phase, right after they have run: one
            # slice per loop turn while a queue lasts (and no waiter is stranded should
            # every woken one be cancelled before it runs).
            self._close_soon()

    def _discard(self, waiter: asyncio.Future[None]) -> None:
        for waiting in (self._queue, self._again):
            if waiter in waiting:
                waiting.remove(waiter)
