"""What one drill step did: :class:`StepResult`, all its deliveries and the questions asked of them."""

from __future__ import annotations

from dataclasses import dataclass, field

from drills.core.delivery import Delivery, Outcome
from drills.core.pacing import PacingStats

__all__ = ["StepResult"]


@dataclass
class StepResult:
    """All deliveries of one step, with the questions operators ask of them."""

    name: str
    deliveries: list[Delivery] = field(default_factory=list)
    started_mono: float = 0.0
    finished_mono: float = 0.0
    # What pacing cost this step (drills.core.pacing): its wall time, never a latency.
    pacing: PacingStats = field(default_factory=PacingStats)

    @property
    def wall_s(self) -> float:
        return self.finished_mono - self.started_mono

    def counted(self) -> list[Delivery]:
        """Deliveries that say something about the channels (harness errors and the
        drill's own outages excluded: :attr:`Outcome.counted`)."""
        return [d for d in self.deliveries if d.outcome.counted]

    def reachability(self, within_s: float | None = None) -> float:
        """Share of counted deliveries confirmed at the far end (within *within_s*)."""
        counted = self.counted()
        if not counted:
            return 0.0
        ok = [
            d
            for d in counted
            if d.outcome.reached and (within_s is None or (d.latency_s or 0.0) <= within_s)
        ]
        return len(ok) / len(counted)

    def missed(self, within_s: float | None = None) -> list[Delivery]:
        """Counted deliveries not confirmed (within *within_s*)."""
        return [
            d
            for d in self.counted()
            if not d.outcome.reached or (within_s is not None and (d.latency_s or 0.0) > within_s)
        ]

    def by_outcome(self) -> dict[Outcome, int]:
        out = dict.fromkeys(Outcome, 0)
        for d in self.deliveries:
            out[d.outcome] += 1
        return out
