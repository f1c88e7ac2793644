"""What a step returns to the operator: its data, plus ``expect(...)``.

step = drill.broadcast("参集してください", channels=["chat", "mail"])
step.reachability()                       # the runner's StepResult, passed through
step.expect(reached="99%", within="60s")  # judged per municipality
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drills.core.delivery import Delivery
from drills.core.requirements import judge_broadcast, located, parse_seconds, parse_share
from drills.core.runner import StepResult
from drills.steps.acknowledgement import AckResult
from drills.steps.fallback import FallbackResult
from drills.steps.outcome import StepOutcome
from drills.steps.rollcall import RollCallResult

if TYPE_CHECKING:
    pass

__all__ = ["Acknowledgement", "Broadcast", "Fallback", "RollCall"]


class Broadcast(StepOutcome):
    result: StepResult

    @property
    def deliveries(self) -> list[Delivery]:
        return self.result.deliveries

    @located
    def expect(self, reached: Any = None, within: Any = None) -> None:
        """Each municipality: at least *reached* of its messages seen within *within*.

        Defaults: the channels' SLO reachability; the scenario's deadline, else each channel's SLO.
        """
        share = (
            parse_share(reached, "reached")
            if reached is not None
            else self._drill._slo_share(self.result)
        )
        limit = parse_seconds(within) if within is not None else self._drill.deadline
        names = {m.code: m.name_en for m in self._drill.ctx.registry.municipalities}
        self._drill._judge(
            judge_broadcast(self.result.deliveries, share, limit, names), self.result.name
        )


class _Timed(StepOutcome):
    @located
    def expect(self, within: Any = None) -> None:
        """Every municipality made it within *within* (default: the step's own limit)."""
        limit = parse_seconds(within) if within is not None else None
        self._drill._judge(self.result.verdicts(limit), self.result.step)


class Fallback(_Timed):
    """``expect(within=)``: each municipality reached by some channel of the chain in time."""

    result: FallbackResult


class RollCall(_Timed):
    """``expect(within=)``: every participating municipality answered in time."""

    result: RollCallResult


class Acknowledgement(StepOutcome):
    result: AckResult

    @located
    def expect(self, answered: Any = "100%", within: Any = None) -> None:
        """Each municipality: at least *answered* of its staff answered within *within*."""
        share = parse_share(answered, "answered")
        limit = parse_seconds(within) if within is not None else None
        self._drill._judge(self.result.verdicts(share, limit), self.result.step)
