"""Readiness scoring: from deliveries to a 0–100 score and a grade.

Every tunable number is in :data:`WEIGHTS`; nothing else changes with them.
The model, in one paragraph (README, "Scoring model", has a worked example and
"Outcomes and evidence" the table of what each outcome and evidence level does):

*Channel.* Over its counted messages ``n = sent − error − drill_outage`` (a
harness fault and an outage the drill itself made are never the channel's:
:attr:`Outcome.counted`), ``reachability = (delivered + late) / n``. Each
delivered, late or accepted message earns a credit by its evidence: ``seen``
(our observer saw it) 1, ``receipt`` (only the carrier or provider reports
delivery) ``receipt`` (0.8), ``accepted`` (the provider took it, nothing more)
``unconfirmed`` (0.5). ``reach = Σ credit / n`` and
``ontime = Σ credit of delivered / n``, except that an accepted-only message
earns nothing towards latency; the channel scores
``100 × (reach_w × min(1, reach / SLO_reachability) + latency_w × ontime)``,
rounded half up to 0.1. A channel with no counted message is *untested* and
has no score.

*Municipality.* The weighted mean of the parts it has: the mean of its channel
scores (channels), redundancy = distinct channel kinds with at least one
confirmed delivery (seen or receipt), up to ``redundancy_target`` (2),
freshness = 1 while the last drill is younger than the drill interval, falling
linearly to 0 at twice the interval, and — only where the scenario ran them —
fallback and roll-call success ratios. Parts that are absent are left out and
the weights rescaled. A municipality with no tested channel has no score.

*Grade.* A ≥ 90 良好, B ≥ 75 概ね良好, C ≥ 50 要改善, D below 危険.

*Standing.* How a score and latencies compare with the other municipalities
of the same drill (rank, percentile, 偏差値; nothing below 10 participants) is
:mod:`drills.core.standing`.

    >>> from drills.core.delivery import Delivery, Evidence, Outcome
    >>> d = [Delivery("r", "s", "131211", "足立区", "chat", "webhook", "TSG-0", Outcome.DELIVERED,
    ...      latency_s=0.3)] * 9 + [Delivery("r", "s", "131211", "足立区", "chat", "webhook",
    ...      "TSG-1", Outcome.LOST)]
    >>> score_channel(d, slo_reachability=0.9, slo_latency=3.0).score
    96.0

Ten SMS confirmed by the carrier's receipt alone, and two sent into the
drill's own outage (not counted): reach = on time = 0.8 × 10 / 10, so
``100 × (0.6 × min(1, 0.8 / 0.9) + 0.4 × 0.8)`` = 85.3:

    >>> sms = [Delivery("r", "s", "131211", "足立区", "sms", "twilio", "TSG-2", Outcome.DELIVERED,
    ...        latency_s=2.0, evidence=Evidence.RECEIPT)] * 10 + [Delivery("r", "s", "131211",
    ...        "足立区", "sms", "twilio", "TSG-3", Outcome.DRILL_OUTAGE)] * 2
    >>> cs = score_channel(sms, slo_reachability=0.9, slo_latency=3.0)
    >>> cs.score, cs.counted, cs.reachability, cs.counts["drill_outage"], cs.evidence["receipt"]
    (85.3, 10, 1.0, 2, 10)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from drills.core.delivery import Delivery, Evidence, Outcome

__all__ = [
    "GRADES",
    "STATUS_LABELS",
    "WEIGHTS",
    "ChannelScore",
    "MunicipalityScore",
    "Ratio",
    "Weights",
    "change_status",
    "freshness",
    "grade",
    "grade_label",
    "percentile",
    "reachability",
    "round_score",
    "score_channel",
    "score_municipality",
]

DAY_S = 86_400.0


@dataclass(frozen=True)
class Weights:
    """Every tunable number of the scoring model, in one place."""

    # channel: reach against its SLO, on-time share; credit of a message by its evidence
    # (seen: 1) — only a carrier/provider receipt, accepted only (unconfirmed)
    reach: float = 0.6
    latency: float = 0.4
    receipt: float = 0.8
    unconfirmed: float = 0.5
    # municipality: weights of its parts (absent parts are left out, weights rescaled)
    channels: float = 0.5
    redundancy: float = 0.2
    freshness: float = 0.1
    fallback: float = 0.1
    roll_call: float = 0.1
    redundancy_target: int = 2  # independent channel kinds that must have delivered
    default_drill_interval_s: float = 30 * DAY_S  # when the registry gives none
    # comparison with the previous drill: a score change smaller than this is "unchanged"
    change_threshold: float = 1.0

    def as_dict(self) -> dict[str, float]:
        return dict(_weights_dict(self))

    def credit(self, evidence: Evidence | None) -> float:
        """How much of a seen arrival a message with this *evidence* counts for.

        >>> WEIGHTS.credit(Evidence.SEEN), WEIGHTS.credit(Evidence.RECEIPT), WEIGHTS.credit(None)
        (1.0, 0.8, 0.0)
        """
        if evidence is Evidence.SEEN:
            return 1.0
        if evidence is Evidence.RECEIPT:
            return self.receipt
        if evidence is Evidence.ACCEPTED:
            return self.unconfirmed
        return 0.0


@functools.lru_cache(maxsize=8)
def _weights_dict(weights: Weights) -> dict[str, float]:
    """``asdict`` once per set of weights (scoring a card asks for it per municipality)."""
    return asdict(weights)


WEIGHTS = Weights()

# (lower bound, grade, Japanese label, English label)
GRADES: tuple[tuple[float, str, str, str], ...] = (
    (90.0, "A", "良好", "ready"),
    (75.0, "B", "概ね良好", "mostly ready"),
    (50.0, "C", "要改善", "needs work"),
    (0.0, "D", "危険", "at risk"),
)

# channel status -> (Japanese, English); also the order from best to worst
STATUS_LABELS: dict[str, tuple[str, str]] = {
    "ok": ("SLO達成", "SLO met"),
    "partial": ("一部未達", "partly met"),
    "unconfirmed": ("未確認（受付のみ）", "unconfirmed (accepted only)"),
    "down": ("不達", "not reached"),
    "untested": ("未測定", "not measured"),
}


def grade(score: float | None) -> str | None:
    """The grade letter of *score* (None for no score).

    >>> grade(90.0), grade(89.99), grade(50), grade(0), grade(None)
    ('A', 'B', 'C', 'D', None)
    """
    if score is None:
        return None
    for bound, letter, _ja, _en in GRADES:
        if score >= bound:
            return letter
    return "D"


def grade_label(letter: str | None, lang: str) -> str:
    """Japanese or English label of a grade letter ("—" for none)."""
    for _bound, g, ja, en in GRADES:
        if g == letter:
            return ja if lang == "ja" else en
    return "—"


def round_score(x: float) -> float:
    """Round to 0.1, half up, as by hand (float noise below 1e-9 ignored).

    >>> round_score(32.25), round_score(32.249999999999996), round_score(68.2105)
    (32.3, 32.3, 68.2)
    """
    exact = Decimal(f"{x:.9f}").quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    return float(exact)


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
class Ratio:
    """``good`` out of ``total`` (fallback checks passed, roll-call answers)."""

    good: float
    total: float

    @property
    def value(self) -> float | None:
        return None if self.total <= 0 else min(1.0, max(0.0, self.good / self.total))


@dataclass(frozen=True)
class ChannelScore:
    """One channel in one run: counts by outcome and by evidence, reach, latency and its score."""

    sent: int
    counts: dict[str, int]  # by outcome, every Outcome (drill_outage and error included)
    reachability: float  # (delivered + late) / counted
    latency_p50_s: float | None
    latency_p95_s: float | None
    slo_met: bool
    score: float | None  # None when untested (no counted message)
    latency_max_s: float | None = None
    status: str = "untested"
    parts: dict[str, float] = field(default_factory=dict)
    evidence: dict[str, int] = field(default_factory=lambda: {e.value: 0 for e in Evidence})

    @property
    def counted(self) -> int:
        """Messages that say something about the channel (not error, not drill_outage)."""
        return sum(n for o, n in self.counts.items() if Outcome(o).counted)

    @property
    def confirmed(self) -> int:
        """Delivered or late, whether seen or only by receipt."""
        return self.counts["delivered"] + self.counts["late"]


def reachability(counts: Mapping[str, int]) -> float:
    """The one reachability formula: ``(delivered + late) / counted`` (0.0 when none counted).

    *counts* maps outcome values to numbers (missing ones are 0); ``error`` and
    ``drill_outage`` are not counted. Scorecard, metrics and vantage view all use it.

    >>> reachability({"delivered": 6, "late": 1, "lost": 1, "error": 3, "drill_outage": 2})
    0.875
    """
    counted = sum(n for o, n in counts.items() if Outcome(o).counted)
    reached = counts.get(Outcome.DELIVERED.value, 0) + counts.get(Outcome.LATE.value, 0)
    return reached / counted if counted else 0.0


def score_channel(
    deliveries: Iterable[Delivery],
    slo_reachability: float,
    slo_latency: float,
    weights: Weights = WEIGHTS,
) -> ChannelScore:
    """Score one channel's deliveries against its SLO (see the module docstring)."""
    items = list(deliveries)
    counts = {o.value: 0 for o in Outcome}
    evidence = {e.value: 0 for e in Evidence}
    credit = ontime_credit = 0.0
    for d in items:
        counts[d.outcome.value] += 1
        if not d.outcome.counted or d.outcome.counts_against_channel:
            continue
        if d.evidence is not None:
            evidence[d.evidence.value] += 1
        # an accepted message without recorded evidence is still accepted
        value = weights.credit(d.evidence or Evidence.ACCEPTED)
        credit += value
        if d.outcome is Outcome.DELIVERED:
            ontime_credit += value
    counted = sum(n for o, n in counts.items() if Outcome(o).counted)
    reached = counts["delivered"] + counts["late"]
    latencies = [d.latency_s for d in items if d.outcome.reached and d.latency_s is not None]
    p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
    top = max(latencies) if latencies else None
    if counted == 0:
        return ChannelScore(
            len(items), counts, 0.0, p50, p95, False, None, top, "untested", {}, evidence
        )
    reach = reachability(counts)
    parts = {
        "reach": min(1.0, credit / counted / slo_reachability),
        "latency": ontime_credit / counted,
    }
    score = 100.0 * (weights.reach * parts["reach"] + weights.latency * parts["latency"])
    slo_met = reached > 0 and reach >= slo_reachability and (p95 is None or p95 <= slo_latency)
    if reached == 0:
        status = "unconfirmed" if counts["accepted"] else "down"
    else:
        status = "ok" if slo_met else "partial"
    return ChannelScore(
        len(items),
        counts,
        reach,
        p50,
        p95,
        slo_met,
        round_score(score),
        top,
        status,
        parts,
        evidence,
    )


def freshness(age_s: float | None, interval_s: float) -> float:
    """1 while the last drill is within the interval, down to 0 at twice it.

    >>> freshness(10 * DAY_S, 30 * DAY_S), freshness(45 * DAY_S, 30 * DAY_S), freshness(None, 1)
    (1.0, 0.5, 0.0)
    """
    if age_s is None or interval_s <= 0:
        return 0.0
    if age_s <= interval_s:
        return 1.0
    return max(0.0, 1.0 - (age_s - interval_s) / interval_s)


@dataclass(frozen=True)
class MunicipalityScore:
    """A municipality's score, with each part it was made of (0–1)."""

    score: float | None
    parts: dict[str, float]
    confirmed_kinds: tuple[str, ...]


def score_municipality(
    channels: Sequence[tuple[str, ChannelScore]],
    *,
    freshness_value: float,
    fallback: Ratio | None = None,
    roll_call: Ratio | None = None,
    weights: Weights = WEIGHTS,
) -> MunicipalityScore:
    """Combine ``(kind, ChannelScore)`` pairs and the municipality's other evidence.

    The channel part uses the channel scores as shown (rounded to 0.1), so the
    result can be recomputed by hand from the report.
    """
    confirmed = tuple(sorted({kind for kind, c in channels if c.confirmed > 0}))
    scored = [c.score for _kind, c in channels if c.score is not None]
    if not scored:
        return MunicipalityScore(None, {}, confirmed)
    parts: dict[str, float] = {
        "channels": sum(scored) / len(scored) / 100.0,
        "redundancy": min(1.0, len(confirmed) / max(1, weights.redundancy_target)),
        "freshness": freshness_value,
    }
    for name, ratio in (("fallback", fallback), ("roll_call", roll_call)):
        if ratio is not None and ratio.value is not None:
            parts[name] = ratio.value
    w: Mapping[str, Any] = weights.as_dict()
    total_w = sum(w[k] for k in parts)
    score = 100.0 * sum(w[k] * v for k, v in parts.items()) / total_w if total_w else 0.0
    return MunicipalityScore(round_score(score), parts, confirmed)


def change_status(before: float | None, after: float | None, weights: Weights = WEIGHTS) -> str:
    """improved / worsened / unchanged between two scores; new / missing if one is absent.

    >>> change_status(80.0, 78.5), change_status(80.0, 79.5), change_status(None, 50.0)
    ('worsened', 'unchanged', 'new')
    """
    if before is None and after is None:
        return "unchanged"
    if before is None:
        return "new"
    if after is None:
        return "missing"
    delta = round_score(after - before)  # as shown; no float noise at the threshold
    if delta <= -weights.change_threshold:
        return "worsened"
    if delta >= weights.change_threshold:
        return "improved"
    return "unchanged"
