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
2. **During a step** (:func:`step`) generations 0 and 1 are collected as usual —
   each such collection walks only what was allocated since the last one, a
   few milliseconds at most — but the automatic *full* collection is put off:
   Python's third threshold is raised to :data:`BACKSTOP` young collections (a
   step that runs that long gets its full collection all the same, so memory
   stays bounded however long a step is).
3. **Between steps** (when the last running step ends) one full collection
   frees what the steps left behind. With start-up frozen it walks only what the
   steps kept alive, not the whole program, and nothing is in flight then.

Steps may overlap (``asyncio.gather`` over two broadcasts): the threshold is
restored, and the full collection run, when the last of them ends. The policy
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

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["BACKSTOP", "after_startup", "release", "step", "steps_running"]

# Young (generation 1) collections a step may run before Python's own full
# collection is let through: ~7 million container allocations at the default
# thresholds (700 × 10 × 1,000) — far more than a 10,000-message step makes.
BACKSTOP = 1_000

_state = {"depth": 0, "frozen": 0}
_saved: list[tuple[int, int, int]] = []


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
    """Young collections only while the body runs; a full collection after the last step ends."""
    if _state["depth"] == 0:
        young, middle, _old = gc.get_threshold()
        _saved.append(gc.get_threshold())
        gc.set_threshold(young, middle, BACKSTOP)
    _state["depth"] += 1
    try:
        yield
    finally:
        _state["depth"] -= 1
        if _state["depth"] == 0:
            gc.set_threshold(*_saved.pop())
            gc.collect()
