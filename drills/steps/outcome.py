"""What a step returns to the operator: the step's data, plus ``expect(...)``.

Each step's result class (:mod:`drills.operator.results`, :class:`drills.steps.surge.Surge`)
subclasses :class:`StepOutcome`; the drill it holds is the scenario's, typed here only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from drills.operator.scenario import ScenarioDrill

__all__ = ["StepOutcome"]


class StepOutcome:
    """A step's result as the operator sees it: the data, plus ``expect``."""

    def __init__(self, drill: ScenarioDrill, result: Any) -> None:
        self._drill, self.result = drill, result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.result, name)
