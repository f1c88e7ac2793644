"""drills.core.gcpolicy rule 2: during a step on an event loop young collections come on a clock.

Python's own schedule counts allocations minus deallocations: work that frees old
objects while it makes new ones keeps the count down while the young generation grows
without bound (then one "young" collection walks all of it: a long pause). The control
case shows that happen here; inside a step the clock keeps the young generation to what
was made since its last tick.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import Any

import pytest

from drills.core import gcpolicy

MADE = 20_000  # survivors made (and as many old objects freed) by the work below


@pytest.fixture
def fresh_policy(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No step of an earlier test counts as running; the collector on, as Python starts it."""
    monkeypatch.setattr(gcpolicy, "_state", {"depth": 0, "frozen": 0})
    assert gc.isenabled()
    gc.collect()
    yield
    assert gc.isenabled()


def old_objects() -> list[list[Any]]:
    """*MADE* containers, collected once so they are no longer young."""
    old: list[list[Any]] = [[] for _ in range(MADE)]
    gc.collect()
    return old


def churn(old: list[list[Any]], kept: list[list[Any]], n: int) -> None:
    """Make *n* survivors and free *n* old objects (what finishing deliveries do)."""
    for _ in range(n):
        kept.append([])
        old.pop()


@pytest.mark.usefixtures("fresh_policy")
def test_control_python_schedule_lets_the_young_generation_grow() -> None:
    old, kept = old_objects(), []
    churn(old, kept, MADE)
    assert len(gc.get_objects(generation=0)) >= MADE // 2  # no collection came: all young


@pytest.mark.usefixtures("fresh_policy")
async def test_a_step_on_a_loop_collects_the_young_on_the_clock_and_nothing_older() -> None:
    seen: list[tuple[int, int]] = []  # (generation, steps running) of each collection

    def note(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            seen.append((info["generation"], gcpolicy.steps_running()))

    old, kept = old_objects(), []
    gc.callbacks.append(note)
    try:
        with gcpolicy.step():
            young_threshold = gc.get_threshold()[0]
            assert gc.get_threshold() == (young_threshold, gcpolicy.NEVER, gcpolicy.NEVER)
            for _ in range(20):  # the same work, spread over the loop's turns
                churn(old, kept, MADE // 20)
                await asyncio.sleep(gcpolicy.SWEEP_S / 2)
            await asyncio.sleep(3 * gcpolicy.SWEEP_S)  # a tick after the last of it
            young = len(gc.get_objects(generation=0))
        assert gc.get_threshold()[1:] != (gcpolicy.NEVER, gcpolicy.NEVER)  # handed back
    finally:
        gc.callbacks.remove(note)
    assert young < MADE // 20  # the clock collected what was made; it did not pile up
    mid_step = {generation for generation, running in seen if running}
    assert mid_step == {0}  # young collections only, on the clock
    assert [g for g, running in seen if not running] == [2]  # one full one after the step
