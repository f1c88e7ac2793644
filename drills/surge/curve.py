"""The latency curve of a surge: probe latency at rest and at each load step; the breaking point.

While Locust carries the load, the ordinary probes keep sending marked drill
messages over the same channel and confirming them at the far end. Each step
of the ramp becomes a :class:`CurvePoint`: the load Locust measured, and what
the probes saw. A step *holds* when the share of its probes confirmed within
the latency SLO is at least the channel's reachability SLO; the **breaking
point** is the first step that does not hold.

Channels that cannot confirm arrival (accepted-only) are judged on the
provider's acceptance time instead, and say so (``accepted_only``). Pure::

    >>> p = ProbeSummary.of([])
    >>> p.sent, p.holds(0.99)
    (0, None)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from drills.core.delivery import Delivery, Outcome
from drills.core.scoring import percentile
from drills.surge.plan import RampStep
from drills.surge.stats import LoadStats

__all__ = ["CurvePoint", "ProbeSummary", "SurgeCurve"]


def _r(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


@dataclass(frozen=True)
class ProbeSummary:
    """What the probes of one step saw: outcomes and latency (seconds)."""

    sent: int
    counts: dict[str, int]
    latencies: tuple[float, ...]
    within_slo: int
    accepted_only: bool

    @classmethod
    def of(cls, deliveries: Sequence[Delivery], slo_latency_s: float | None = None) -> ProbeSummary:
        counts = {o.value: 0 for o in Outcome}
        for d in deliveries:
            counts[d.outcome.value] += 1
        reached = [d.latency_s for d in deliveries if d.outcome.reached and d.latency_s is not None]
        accepted_only = bool(deliveries) and not reached and counts[Outcome.ACCEPTED.value] > 0
        if accepted_only:
            reached = [
                d.accept_latency_s
                for d in deliveries
                if d.outcome is Outcome.ACCEPTED and d.accept_latency_s is not None
            ]
        within = 0
        for d in deliveries:
            latency = d.accept_latency_s if accepted_only else d.latency_s
            reached_it = d.outcome is Outcome.ACCEPTED if accepted_only else d.outcome.reached
            slo = slo_latency_s if slo_latency_s is not None else d.slo_latency_s
            if reached_it and latency is not None and (slo is None or latency <= slo):
                within += 1
        return cls(len(deliveries), counts, tuple(reached), within, accepted_only)

    @property
    def counted(self) -> int:
        """Probes that say something about the channel (harness errors excluded)."""
        return self.sent - self.counts.get(Outcome.ERROR.value, 0)

    def latency(self, q: float) -> float | None:
        return percentile(self.latencies, q)

    def holds(self, slo_reachability: float) -> bool | None:
        """Share within the latency SLO ≥ *slo_reachability*? None when no probe counted."""
        if self.counted == 0:
            return None
        return self.within_slo / self.counted >= slo_reachability

    def to_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            **self.counts,
            "within_slo": self.within_slo,
            "accepted_only": self.accepted_only,
            "latency_p50_s": _r(self.latency(50)),
            "latency_p95_s": _r(self.latency(95)),
            "latency_max_s": _r(max(self.latencies, default=None)),
        }


@dataclass(frozen=True)
class CurvePoint:
    """One ramp step: offered load, measured load, probe view, verdict."""

    step: RampStep
    load: LoadStats
    probes: ProbeSummary
    holds: bool | None
    ran_s: float  # how long the step really ran (less than planned if the surge was stopped)

    @property
    def achieved_rate(self) -> float:
        return self.load.rate(self.ran_s)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.step.index,
            "rate": self.step.rate,
            "duration_s": self.step.duration_s,
            "ran_s": round(self.ran_s, 3),
            "at_rest": self.step.at_rest,
            "load": self.load.summary(self.ran_s),
            "probes": self.probes.to_dict(),
            "slo_met": self.holds,
        }


@dataclass(frozen=True)
class SurgeCurve:
    """Every step's point, and the SLO they were judged against."""

    points: tuple[CurvePoint, ...]
    slo_latency_s: float
    slo_reachability: float

    @classmethod
    def build(
        cls,
        steps: Sequence[RampStep],
        load: Mapping[int, LoadStats],
        probes: Mapping[int, Sequence[Delivery]],
        slo_latency_s: float,
        slo_reachability: float,
        ran: Mapping[int, float | None] | None = None,
    ) -> SurgeCurve:
        """Points of *steps*; *ran* gives each step's real duration (default: as planned)."""
        points = []
        for step in steps:
            summary = ProbeSummary.of(probes.get(step.index, ()), slo_latency_s)
            ran_s = (ran or {}).get(step.index, step.duration_s)
            points.append(
                CurvePoint(
                    step,
                    load.get(step.index, LoadStats()),
                    summary,
                    summary.holds(slo_reachability),
                    step.duration_s if ran_s is None else ran_s,
                )
            )
        return cls(tuple(points), slo_latency_s, slo_reachability)

    @property
    def breaking_point(self) -> CurvePoint | None:
        """The first step whose probes missed the SLO (None: it held throughout)."""
        return next((p for p in self.points if p.holds is False), None)

    @property
    def held_up_to(self) -> float | None:
        """The highest offered rate before the breaking point that held (None: none held)."""
        held = None
        for p in self.points:
            if p.holds is False:
                break
            if p.holds:
                held = p.step.rate
        return held

    def to_dict(self) -> dict[str, Any]:
        bp = self.breaking_point
        return {
            "slo": {"latency_s": self.slo_latency_s, "reachability": self.slo_reachability},
            "steps": [p.to_dict() for p in self.points],
            "breaking_point": None
            if bp is None
            else {
                "index": bp.step.index,
                "rate": bp.step.rate,
                "at_rest": bp.step.at_rest,
                "achieved_rps": round(bp.achieved_rate, 2),
                "latency_p95_s": _r(bp.probes.latency(95)),
            },
            "held_up_to_rate": self.held_up_to,
        }
