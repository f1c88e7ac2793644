"""When the cyclic garbage collector may run while a drill runs: never a long pause mid-step.

A full collection walks every container object alive (the imported modules, the
registry, pydantic's and twilio's tables: ~40–60 ms here) and holds the event
loop that long — a webhook or a reply arriving then is stamped that much late.
The rule, in one place:

1. **After start-up** (the first step of a drill: modules imported, registry
   read, probes opened) :func:`after_startup` calls ``gc.freeze()``: what is alive
   then moves to the permanent generation, which no collection walks. It costs
   no collection of its own (it only relinks lists). :func:`release` (the
   drill's ``finish``) unfreezes it, so a process running drill after drill
   keeps nothing for good.
2. **During a step on an event loop** (:func:`step` entered in a running loop)
   only the *young* generation is collected: by Python's own schedule, and at
   the latest every :data:`SWEEP_S` (10 ms) by a clock on the loop — each walk
   covers what was made since the last, a few tenths of a millisecond (p99
   ~1–4 ms measured at 10,000 channels). What survives that is left alone (moved
   to the middle generation, which nothing walks mid-step: its threshold and
   the full one's are :data:`NEVER`) until the step ends.

   Why not Python's own schedule: it counts a collection due at allocations
   *minus deallocations*. Mid-step every delivery that ends frees objects made
   long before (by then in an older generation), which keeps the count under its
   threshold for seconds while the young generation keeps every object made
   since; then one "young" collection walks hundreds of thousands of them, and
   every tenth a "middle" one walks the survivors of all those: 30–140 ms each
   (CPU),
   measured at 10,000 channels (benchmarks/bench_core_fanout.py ``--trace``), every
   answer arriving then stamped that much late. And the survivors are in-flight
   work and records, not garbage: at 10,000 webhook channels the step's
   collections freed nothing at all (0 objects in ~4,000 collections), so
   walking them again and again was ~1 s of CPU for nothing.

   The backstop, so memory stays bounded however long a step is: every
   :data:`BACKSTOP_S` (60 s) of a step the middle generation is collected too,
   and every :data:`FULL_EVERY`-th time the full heap — a pause as long as that
   walk, once a minute, in steps longer than a minute only.
3. **During a step without a loop** (a synchronous caller) no clock can run:
   Python's schedule stays on, with its full collection put off — its third
   threshold raised to :data:`BACKSTOP` middle collections.
4. **Between steps** (when the last running step ends) one full collection
   frees what the steps left behind. With start-up frozen it walks only what the
   steps kept alive, not the whole program, and nothing is in flight then.

Steps may overlap (``asyncio.gather`` over two broadcasts): the collector's
settings are restored, and the full collection run, when the last of them ends. The policy
is process-wide because the collector is.

    >>> import gc
    >>> before = gc.get_threshold()
    >>> with step():
    ...     gc.get_threshold()[2] == BACKSTOP
    True
    >>> gc.get_threshold() == before
    True
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = [
    "BACKSTOP",
    "BACKSTOP_S",
    "FULL_EVERY",
    "NEVER",
    "SWEEP_S",
    "after_startup",
    "release",
    "step",
    "steps_running",
]

# Young (generation 1) collections a step may run before Python's own full
# collection is let through: ~7 million container allocations at the default
# thresholds (700 × 10 × 1,000) — far more than a 10,000-message step makes.
BACKSTOP = 1_000

# Rule 2: the young generation is collected this often during a step on a loop; the
# middle one every BACKSTOP_S of a step, the full heap every FULL_EVERY-th of those.
SWEEP_S = 0.01
BACKSTOP_S = 60.0
NEVER = 1 << 30  # a threshold no count reaches: no automatic middle or full collection
FULL_EVERY = 10

_state = {"depth": 0, "frozen": 0}
_saved: list[tuple[int, int, int]] = []


class _Sweep:
    """Rule 2: the collector's clock on *loop* — a young collection every :data:`SWEEP_S`,
    the backstop every :data:`BACKSTOP_S` — until :meth:`stop`."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.backstops = 0
        self.next_backstop = loop.time() + BACKSTOP_S
        self.handle: asyncio.TimerHandle | None = loop.call_later(SWEEP_S, self.sweep)

    def sweep(self) -> None:
        now = self.loop.time()
        if now < self.next_backstop:
            gc.collect(0)
        else:
            self.backstops += 1
            gc.collect(2 if self.backstops % FULL_EVERY == 0 else 1)
            self.next_backstop = now + BACKSTOP_S
        self.handle = self.loop.call_later(SWEEP_S, self.sweep)

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


_sweeps: list[_Sweep] = []


def after_startup() -> None:
    """Freeze what is alive now (rule 1), unless a drill in this process already did.

    Every call is paired with one :func:`release`.
    """
    if _state["frozen"] == 0:
        gc.freeze()
    _state["frozen"] += 1


def release() -> None:
    """Undo :func:`after_startup` (a drill ends); the last drill out unfreezes."""
    if _state["frozen"] == 0:
        return
    _state["frozen"] -= 1
    if _state["frozen"] == 0:
        gc.unfreeze()


def steps_running() -> int:
    """How many steps are inside :func:`step` right now."""
    return _state["depth"]


@contextmanager
def step() -> Iterator[None]:
    """Young collections only while the body runs (on the loop's clock too, in a running
    loop); a full collection after the last step ends."""
    if _state["depth"] == 0:
        young, middle, _old = gc.get_threshold()
        _saved.append(gc.get_threshold())
        try:
            _sweeps.append(_Sweep(asyncio.get_running_loop()))
        except RuntimeError:  # no running loop: no clock, Python's schedule (rule 3)
            gc.set_threshold(young, middle, BACKSTOP)
        else:  # the clock's: young collections only, as often as Python's or the clock's
            gc.set_threshold(young, NEVER, NEVER)
    _state["depth"] += 1
    try:
        yield
    finally:
        _state["depth"] -= 1
        if _state["depth"] == 0:
            while _sweeps:
                _sweeps.pop().stop()
            gc.set_threshold(*_saved.pop())
            gc.collect()
