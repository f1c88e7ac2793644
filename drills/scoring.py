"""Readiness scoring: from deliveries to a 0–100 score and a grade.

The model (weights in :data:`WEIGHTS`, nothing else changes with them):

- per channel, over its counted deliveries (harness ``error`` excluded):
  ``reach = (delivered + late) / counted``, ``ontime = delivered / counted``;
  ``score = 100 × (w_reach × min(1, reach / slo_reachability) + w_latency × ontime)``.
  Accepted-only deliveries count ``w_unconfirmed`` of a reached one.
- per municipality: the mean of its channel scores.
- grade bands: A ≥ 90, B ≥ 75, C ≥ 50, else D.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from drills.delivery import Delivery, Outcome

__all__ = ["GRADES", "WEIGHTS", "ChannelScore", "grade", "percentile", "score_channel"]

WEIGHTS = {"reach": 0.6, "latency": 0.4, "unconfirmed": 0.5}

# (lower bound, grade, Japanese label, English label)
GRADES: tuple[tuple[float, str, str, str], ...] = (
    (90.0, "A", "良好", "ready"),
    (75.0, "B", "概ね良好", "mostly ready"),
    (50.0, "C", "要改善", "needs work"),
    (0.0, "D", "危険", "at risk"),
)


def grade(score: float) -> str:
    for bound, letter, _ja, _en in GRADES:
        if score >= bound:
            return letter
    return "D"


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0–100); None for no values.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 50)
    2.5
    """
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass(frozen=True)
class ChannelScore:
    sent: int
    counts: dict[str, int]
    reachability: float
    latency_p50_s: float | None
    latency_p95_s: float | None
    slo_met: bool
    score: float


def score_channel(deliveries: Iterable[Delivery], slo_reachability: float, slo_latency: float) -> ChannelScore:
    items = list(deliveries)
    counts = {o.value: 0 for o in Outcome}
    for d in items:
        counts[d.outcome.value] += 1
    counted = len(items) - counts["error"]
    reached = counts["delivered"] + counts["late"]
    latencies = [d.latency_s for d in items if d.outcome.reached and d.latency_s is not None]
    p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
    if counted == 0:
        return ChannelScore(len(items), counts, 0.0, p50, p95, False, 0.0)
    reach = reached / counted
    soft_reach = (reached + WEIGHTS["unconfirmed"] * counts["accepted"]) / counted
    ontime = counts["delivered"] / counted
    score = 100.0 * (
        WEIGHTS["reach"] * min(1.0, soft_reach / slo_reachability) + WEIGHTS["latency"] * ontime
    )
    slo_met = reach >= slo_reachability and (p95 is None or p95 <= slo_latency) and reached > 0
    return ChannelScore(len(items), counts, reach, p50, p95, slo_met, round(score, 1))
