"""What a step returns to the operator: the step's data, plus ``expect(...)``.

Each step's result class (:mod:`drills.operator.results`, :class:`drills.steps.surge.Surge`)
subclasses :class:`StepOutcome`. The drill it holds is the scenario's
(:class:`drills.operator.scenario.ScenarioDrill`), seen here only through
:class:`StepDrill` — what a step needs of it — so the steps do not import the
operator layer above them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from drills.core.background import BackgroundLoop
    from drills.core.registry import Registry
    from drills.core.requirements import Verdict
    from drills.core.runner import Drill, StepResult

__all__ = ["StepContext", "StepDrill", "StepOutcome"]


class StepContext(Protocol):
    """The journal run a scenario's steps share (:class:`drills.operator.context.DrillContext`)."""

    @property
    def live(self) -> bool: ...
    @property
    def loop(self) -> BackgroundLoop: ...
    @property
    def drill(self) -> Drill: ...
    @property
    def registry(self) -> Registry: ...


class StepDrill(Protocol):
    """What a step's result and the surge step use of the scenario's drill."""

    @property
    def ctx(self) -> StepContext: ...
    @property
    def deadline(self) -> float | None: ...
    def _slo_share(self, step: StepResult) -> float: ...
    def _judge(self, verdicts: list[Verdict], step: str) -> None: ...


class StepOutcome:
    """A step's result as the operator sees it: the data, plus ``expect``."""

    def __init__(self, drill: StepDrill, result: Any) -> None:
        self._drill, self.result = drill, result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.result, name)
