"""drills.core.gcpolicy around SMS steps: no full collection mid-step, memory bounded over many."""

from __future__ import annotations

import gc
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import probes.sms.probe as sms_probe
from drills.core import gcpolicy
from drills.core.journal import Journal
from drills.core.registry import load_registry
from drills.core.runner import Drill


class Collections:
    """Which generations the collector collected, and whether a step was running then."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []  # (generation, steps running)

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self.seen.append((info["generation"], gcpolicy.steps_running()))

    def generations(self) -> set[int]:
        return {generation for generation, _ in self.seen}


@pytest.fixture
def collections() -> Iterator[Collections]:
    watch = Collections()
    gc.callbacks.append(watch)
    yield watch
    gc.callbacks.remove(watch)


@pytest.fixture
def fresh_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    """No drill of an earlier test counts as running: nothing frozen, no step."""
    monkeypatch.setattr(gcpolicy, "_state", {"depth": 0, "frozen": 0})
    gc.unfreeze()


@pytest.fixture
def frozen_startup() -> Iterator[None]:
    """As after a drill's start-up: everything alive now is frozen (gcpolicy rule 1)."""
    gc.collect()
    gc.freeze()
    gc.collect()  # the old generation is now empty: any survivor soon earns a full collection
    yield
    gc.unfreeze()


def _survivors(n: int) -> list[list[Any]]:
    """*n* container objects kept alive (each allocation counts towards a collection)."""
    kept: list[list[Any]] = []
    for _ in range(n):
        kept.append([])
    return kept


@pytest.mark.usefixtures("frozen_startup")
def test_young_collections_only_during_a_step_and_one_full_collection_after(
    collections: Collections,
) -> None:
    before = gc.get_threshold()
    kept = _survivors(150_000)  # outside a step: Python's own full collection comes
    assert 2 in collections.generations()
    del kept
    gc.collect()
    collections.seen.clear()
    with gcpolicy.step():
        assert gc.get_threshold() == (before[0], before[1], gcpolicy.BACKSTOP)
        kept = _survivors(150_000)  # the same work inside a step
        assert {0, 1} <= collections.generations()
        assert 2 not in collections.generations()
    assert [g for g, _ in collections.seen].count(2) == 1  # between steps
    assert gc.get_threshold() == before
    del kept


def test_overlapping_steps_restore_the_threshold_when_the_last_ends(
    collections: Collections,
) -> None:
    before = gc.get_threshold()
    with gcpolicy.step():
        with gcpolicy.step():
            assert gcpolicy.steps_running() == 2
        assert gc.get_threshold()[2] == gcpolicy.BACKSTOP  # the outer step still runs
        assert 2 not in collections.generations()
    assert gc.get_threshold() == before and gcpolicy.steps_running() == 0
    assert [g for g, _ in collections.seen].count(2) == 1


def _frozen(obj: object) -> bool:
    """Whether *obj* is in the permanent generation (``gc.get_objects`` leaves it out).

    Asked of one object, not of ``gc.get_freeze_count()``: a frozen object that
    another thread lets go of leaves the permanent generation by reference counting,
    so the count may drop by itself while nothing was unfrozen.
    """
    return gc.is_tracked(obj) and not any(o is obj for o in gc.get_objects())


@pytest.mark.usefixtures("fresh_policy")
def test_startup_is_frozen_once_and_released_by_the_last_drill() -> None:
    assert gc.get_freeze_count() == 0
    at_startup: list[Any] = []
    gcpolicy.after_startup()
    assert gc.get_freeze_count() > 0 and _frozen(at_startup)
    later: list[Any] = []
    gcpolicy.after_startup()  # a second drill in this process: nothing more is frozen
    assert _frozen(at_startup) and not _frozen(later)
    gcpolicy.release()
    assert _frozen(at_startup)  # the first drill still runs
    gcpolicy.release()
    assert gc.get_freeze_count() == 0 and not _frozen(at_startup)
    gcpolicy.release()  # unpaired: nothing to undo
    assert gc.get_freeze_count() == 0


REGISTRY = """\
municipalities:
  - code: "131211"
    name: 足立区
    channels:
      - id: sms
        kind: twilio
        to: ["+819011110001", "+819011110002", "+819011110003"]
        status_callback: {}
        sim: {latency: 20ms}
"""


@pytest.mark.usefixtures("fresh_policy")
async def test_many_steps_keep_memory_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, collections: Collections
) -> None:
    keep = 7
    monkeypatch.setattr(sms_probe, "_KEEP_FINISHED", keep)
    path = tmp_path / "registry.yaml"
    path.write_text(REGISTRY, encoding="utf-8")
    journal = Journal(tmp_path / "journal.db")
    frozen: list[int] = []
    steps = 12
    async with Drill(load_registry(path), journal, scenario="long", seed=1) as drill:
        for _ in range(steps):
            step = await drill.broadcast("参集訓練", timeout=5, repeat=2)
            assert [d.outcome.value for d in step.deliveries] == ["delivered"] * 6
            frozen.append(gc.get_freeze_count())
            probe = drill._probes[drill.targets()[0].key]
            assert isinstance(probe, sms_probe.TwilioProbe)
            # Finished messages are forgotten past the keep: memory follows what is in
            # flight, not how long the drill has run (6 per step, 72 in all).
            assert len(probe._tracks) <= keep and len(probe._by_sid) <= keep
            alive = sum(1 for o in gc.get_objects() if isinstance(o, sms_probe._Track))
            assert alive <= keep  # nothing else holds a forgotten one
    journal.close()
    # Start-up was frozen once and nothing a step made was frozen (the count only
    # falls, as frozen objects are freed); the drill's end handed it all back.
    assert frozen[0] > 0 and all(b <= a for a, b in itertools.pairwise(frozen))
    assert gc.get_freeze_count() == 0
    # No full collection while a step ran; one at the end of every step.
    full = [running for generation, running in collections.seen if generation == 2]
    assert len(full) >= steps and set(full) == {0}
