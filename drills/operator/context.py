"""The journal run a scenario's steps share, and how their verdicts are reported.

Under pytest there is one :class:`DrillContext` per scenario file (one journal
run); every test's ``drill`` fixture is a :class:`drills.operator.scenario.ScenarioDrill`
over it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from drills.core.background import BackgroundLoop
from drills.core.delivery import Delivery
from drills.core.events import StepEvent
from drills.core.journal import Journal, RunStatus
from drills.core.registry import Registry
from drills.core.requirements import Verdict
from drills.core.runner import Drill

__all__ = ["DrillContext", "Reporter"]


class Reporter(Protocol):
    """Where verdicts go (the pytest plugin reports each municipality as a subtest)."""

    def report(self, verdicts: list[Verdict], where: str | None, step: str) -> None: ...


class DrillContext:
    """One journal run shared by a scenario's steps (under pytest: one per scenario file)."""

    def __init__(
        self,
        loop: BackgroundLoop,
        registry: Registry,
        journal: Journal,
        *,
        scenario: str,
        vantage: str = "default",
        live: bool = False,
        lang: str = "ja",
        seed: int | None = None,
        selection: Sequence[str] = (),
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.loop, self.registry, self.journal = loop, registry, journal
        self.scenario, self.vantage, self.live, self.lang = scenario, vantage, live, lang
        self.selection = tuple(selection)
        self.meta = dict(meta or {})
        self.taps: list[Callable[[Delivery], None]] = []
        self.drill = Drill(
            registry,
            journal,
            scenario=scenario,
            vantage=vantage,
            live=live,
            lang=lang,
            seed=seed,
            on_delivery=self._tap,
            meta=meta,
        )
        # Independent streams from the seed (never random.Random(seed) itself).
        self.rng = self.drill.stream("context")
        self.run_id: str = loop.call(self.drill.start)  # in the journal from the first record
        self.failed = False

    @property
    def begun(self) -> bool:
        """Is the run in the journal (a refused or empty run never is)?"""
        return self.drill.begun

    @property
    def status(self) -> str | None:
        """How the run was recorded when it closed (``finished``, ``failed``, ``interrupted``)."""
        return self.drill.status

    def stream(self, name: str) -> random.Random:
        """An independent random stream for *name* (e.g. one step's simulated answers)."""
        return self.drill.stream(name)

    def _tap(self, delivery: Delivery) -> None:
        for fn in list(self.taps):
            fn(delivery)

    def record(self, event: StepEvent) -> None:
        """Journal a step event (:mod:`drills.core.events`), placed in this run's scenario and vantage."""
        placed = event.placed(self.scenario, self.vantage)
        self.loop.call(self._record_event, placed.kind, placed.to_data())

    def _record_event(self, kind: str, data: dict[str, Any]) -> None:
        self.drill.begin()
        self.journal.record_event(self.run_id, kind, data)

    def close(self) -> None:
        status = RunStatus.FAILED if self.failed else RunStatus.FINISHED
        self.loop.run(self.drill.finish(status))
