"""The digest of one channel in one run: counts, latencies, evidence, score, failures.

:class:`ChannelDigest` holds what one run says about one channel of one municipality:
counts by outcome and by evidence, reachability (:func:`drills.core.scoring.reachability`),
p50/p95 (:func:`drills.core.scoring.percentile`), the latency histogram, the largest
observer error bound, the TLS expiry, the channel's score
(:func:`drills.core.scoring.score_channel`) and its records not delivered by stage and
cause (:func:`drills.core.taxonomy.classify_failure`; records not judged — a harness
fault, an interruption — apart). :func:`digest_channel` makes it from the deliveries;
its stored form (:meth:`ChannelDigest.to_data`) keeps what cannot be derived again.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from drills.core.delivery import Delivery, Evidence, Outcome
from drills.core.scoring import (
    WEIGHTS,
    ChannelScore,
    Weights,
    percentile,
    reachability,
    score_channel,
)
from drills.core.taxonomy import NotJudged, classify_delivery

__all__ = [
    "DEFAULT_SLO_LATENCY",
    "LATENCY_BUCKETS",
    "NO_EVIDENCE",
    "QUANTILES",
    "ChannelDigest",
    "digest_channel",
    "tls_not_after",
]

# Upper bounds (seconds) of the latency histogram: 0.1 s … 10 min.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
)
# (name, percentile) — the scorecard's p50 and p95.
QUANTILES: tuple[tuple[str, float], ...] = (("p50", 50.0), ("p95", 95.0))
# The ``evidence`` of a delivery that has none (lost, rejected, error, drill_outage).
NO_EVIDENCE = "none"
# A channel's latency SLO when its deliveries do not carry one.
DEFAULT_SLO_LATENCY = 60.0
_DAY = 86_400.0


def _evidence_of(outcome: str) -> str:
    """The evidence a record of *outcome* had before evidence was journalled."""
    if Outcome(outcome).reached:
        return Evidence.SEEN.value
    return Evidence.ACCEPTED.value if outcome == Outcome.ACCEPTED.value else NO_EVIDENCE


def tls_not_after(delivery: Delivery) -> float | None:
    """The certificate expiry a probe recorded, as Unix time.

    ``extra["tls_not_after"]`` (Unix time or ISO 8601) is exact;
    ``extra["tls_days_left"]`` (whole days, rounded down) gives a lower bound:
    ``sent_at + days × 86400``.

    >>> d = Delivery("r", "s", "131211", "足立区", "mail", "mail", "TSG-0", Outcome.DELIVERED,
    ...              sent_at=1000.0, extra={"tls_days_left": 2})
    >>> tls_not_after(d)
    173800.0
    """
    exact = delivery.extra.get("tls_not_after")
    if isinstance(exact, int | float) and not isinstance(exact, bool):
        return float(exact)
    if isinstance(exact, str):
        try:
            return datetime.fromisoformat(exact).timestamp()
        except ValueError:
            pass
    days = delivery.extra.get("tls_days_left")
    if isinstance(days, int | float) and not isinstance(days, bool) and delivery.sent_at:
        return delivery.sent_at + float(days) * _DAY
    return None


@dataclass(frozen=True)
class ChannelDigest:
    """What one run says about one channel of one municipality."""

    code: str
    name: str
    channel_id: str
    kind: str
    outcomes: Mapping[str, int]
    buckets: tuple[int, ...]  # per LATENCY_BUCKETS, not cumulative; above the last: only in count
    latency_sum: float = 0.0
    latency_count: int = 0
    quantiles: Mapping[str, float] = field(default_factory=dict)
    error_bound: float | None = None
    tls_not_after: float | None = None
    evidence: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (outcome, evidence)
    latencies: tuple[float, ...] = ()  # of reached messages, in journal order
    slo: tuple[float, float] | None = None  # (reachability, latency) it was scored against
    score: ChannelScore | None = None  # drills.core.scoring.score_channel
    delivery_slo_latency: float = DEFAULT_SLO_LATENCY  # the deliveries' own (largest) SLO
    # records not delivered, by (stage, cause) (drills.core.taxonomy.classify_failure)
    failures: Mapping[tuple[str, str], int] = field(default_factory=dict)
    # records not judged (harness fault, interrupted), by NotJudged value: no stage, no cause
    unjudged: Mapping[str, int] = field(default_factory=dict)

    @property
    def labels(self) -> tuple[str, str, str, str]:
        return (self.code, self.name, self.channel_id, self.kind)

    @property
    def key(self) -> tuple[str, str]:
        return (self.code, self.channel_id)

    @property
    def reached(self) -> int:
        return self.outcomes.get(Outcome.DELIVERED.value, 0) + self.outcomes.get(
            Outcome.LATE.value, 0
        )

    @property
    def counted(self) -> int:
        """Messages that say something about the channel: not ``error``, not ``drill_outage``."""
        return sum(n for o, n in self.outcomes.items() if Outcome(o).counted)

    @property
    def reachable(self) -> bool | None:
        """True if a message was seen at the far end; False if none was; None if unknown.

        Unknown: only harness errors (never a channel fault), only messages sent
        into the drill's own outage (the drill's doing), or only accepted-only
        deliveries (the kind cannot confirm arrival).
        """
        if self.reached:
            return True
        failed = self.counted - self.outcomes.get(Outcome.ACCEPTED.value, 0)
        return False if failed > 0 else None

    @property
    def reachability(self) -> float:
        """The scorecard's reachability (:func:`drills.core.scoring.reachability`)."""
        return reachability(self.outcomes)

    @property
    def sent(self) -> int:
        return sum(self.outcomes.values())

    @property
    def outcome_evidence(self) -> dict[tuple[str, str], int]:
        """Counts by (outcome, evidence); ``none`` for outcomes without evidence.

        >>> ChannelDigest("1", "n", "c", "k", {"delivered": 2, "lost": 1}, ()).outcome_evidence
        {('delivered', 'seen'): 2, ('lost', 'none'): 1}
        """
        if self.evidence:
            return dict(self.evidence)
        return {(o, _evidence_of(o)): n for o, n in self.outcomes.items()}

    def merged(self, later: ChannelDigest) -> ChannelDigest:
        """Counters of both (the metrics' journal totals); names and latest facts from *later*."""
        outcomes = Counter(self.outcomes)
        outcomes.update(later.outcomes)
        evidence = Counter(self.outcome_evidence)
        evidence.update(later.outcome_evidence)
        return ChannelDigest(
            later.code,
            later.name,
            later.channel_id,
            later.kind,
            dict(outcomes),
            tuple(a + b for a, b in zip(self.buckets, later.buckets, strict=True)),
            self.latency_sum + later.latency_sum,
            self.latency_count + later.latency_count,
            later.quantiles,
            later.error_bound,
            later.tls_not_after,
            dict(evidence),
            failures=dict(Counter(self.failures) + Counter(later.failures)),
            unjudged=dict(Counter(self.unjudged) + Counter(later.unjudged)),
        )

    def to_data(self) -> list[Any]:
        """The stored form: compact and without what can be derived.

        A list, not a dict (no key names repeated for every channel). Left out
        and derived again by :meth:`from_data`: the name (its municipality's),
        the counts by outcome (from those by outcome × evidence), the
        histogram, latency sum, count and quantiles (from ``latencies``) and
        the score's counts, evidence, reachability and percentiles; only the
        score's own judgement (score, status, SLO met, parts) is kept. Latencies are kept whole: the
        scorecard's latency by kind pools them across channels, which no
        quantile or histogram can give exactly.
        """
        score = self.score
        judged = None
        if score is not None:
            parts: Any = dict(score.parts)
            if tuple(parts) in ((), _PARTS):
                parts = list(parts.values())
            judged = [score.score, score.status, score.slo_met, parts]
        return [
            self.code,
            self.channel_id,
            self.kind,
            [[o, e, n] for (o, e), n in sorted(self.outcome_evidence.items())],
            list(self.latencies),
            self.error_bound,
            self.tls_not_after,
            None if self.slo is None else list(self.slo),
            judged,
            self.delivery_slo_latency,
            [[st, ca, n] for (st, ca), n in sorted(self.failures.items())],
            [[c, n] for c, n in sorted(self.unjudged.items())],
        ]

    @classmethod
    def from_data(cls, data: Sequence[Any], name: str) -> ChannelDigest:
        """The digest :meth:`to_data` stored; *name* is its municipality's."""
        code, channel_id, kind, evidence, latencies, bound, tls, slo, judged, own = data[:10]
        failed = data[10] if len(data) > 10 else []
        unjudged = data[11] if len(data) > 11 else []
        lat = tuple(float(v) for v in latencies)
        pairs = {(str(o), str(e)): int(n) for o, e, n in evidence}
        outcomes: Counter[str] = Counter()
        for (o, _e), n in pairs.items():
            outcomes[o] += n
        counts = {o.value: 0 for o in Outcome}
        counts.update(outcomes)
        score = None
        if judged is not None:
            score = _score_of(counts, pairs, lat, judged)
        return cls(
            code,
            name,
            channel_id,
            kind,
            dict(outcomes),
            _buckets(lat),
            float(sum(lat)),
            len(lat),
            _quantiles(lat),
            bound,
            tls,
            pairs,
            lat,
            None if slo is None else (float(slo[0]), float(slo[1])),
            score,
            float(own),
            {(str(st), str(ca)): int(n) for st, ca, n in failed},
            {str(c): int(n) for c, n in unjudged},
        )


# The parts of a channel score (drills.core.scoring.score_channel), stored as a list in this order.
_PARTS = ("reach", "latency")


def _buckets(latencies: Sequence[float]) -> tuple[int, ...]:
    buckets = [0] * len(LATENCY_BUCKETS)
    for value in latencies:
        index = bisect.bisect_left(LATENCY_BUCKETS, value)
        if index < len(buckets):
            buckets[index] += 1
    return tuple(buckets)


def _quantiles(latencies: Sequence[float]) -> dict[str, float]:
    values = {label: percentile(latencies, q) for label, q in QUANTILES}
    return {k: v for k, v in values.items() if v is not None}


def _score_of(
    counts: dict[str, int],
    evidence: Mapping[tuple[str, str], int],
    latencies: Sequence[float],
    judged: Sequence[Any],
) -> ChannelScore:
    """The :func:`~drills.core.scoring.score_channel` result a stored digest was scored with.

    Counts, evidence, reachability and percentiles are derived as
    ``score_channel`` derives them; the judgement (score, status, SLO met,
    parts) is the stored one.
    """
    score, status, slo_met, parts = judged
    if isinstance(parts, list):
        parts = dict(zip(_PARTS, parts, strict=False))
    by_evidence = {e.value: 0 for e in Evidence}
    for (outcome, level), n in evidence.items():
        o = Outcome(outcome)
        if o.counted and not o.counts_against_channel and level in by_evidence:
            by_evidence[level] += n
    counted = sum(n for o, n in counts.items() if Outcome(o).counted)
    return ChannelScore(
        sum(counts.values()),
        counts,
        reachability(counts) if counted else 0.0,
        percentile(latencies, 50),
        percentile(latencies, 95),
        bool(slo_met),
        None if score is None else float(score),
        max(latencies) if latencies else None,
        str(status),
        {str(k): float(v) for k, v in parts.items()},
        by_evidence,
    )


def digest_channel(
    deliveries: Sequence[Delivery],
    slo: tuple[float, float] | None = None,
    weights: Weights = WEIGHTS,
) -> ChannelDigest:
    """Digest the deliveries of one channel in one run (at least one).

    With *slo* (reachability, latency) the channel is also scored
    (:func:`drills.core.scoring.score_channel`).
    """
    last = deliveries[-1]
    outcomes = Counter(d.outcome.value for d in deliveries)
    evidence = Counter(
        (d.outcome.value, d.evidence.value if d.evidence is not None else NO_EVIDENCE)
        for d in deliveries
    )
    latencies = [d.latency_s for d in deliveries if d.outcome.reached and d.latency_s is not None]
    bounds = [d.error_bound_s for d in deliveries if d.error_bound_s is not None]
    expiries = [t for t in map(tls_not_after, deliveries) if t is not None]
    own_slo = max((d.slo_latency_s or DEFAULT_SLO_LATENCY) for d in deliveries)
    score = None if slo is None else score_channel(deliveries, slo[0], slo[1], weights)
    failures: Counter[tuple[str, str]] = Counter()
    unjudged: Counter[str] = Counter()
    for d in deliveries:
        failure = classify_delivery(d.outcome.value, d.kind, d.reason, d.extra)
        if isinstance(failure, NotJudged):
            unjudged[failure.value] += 1
        elif failure is not None:
            failures[(failure.stage.value, failure.cause.value)] += 1
    return ChannelDigest(
        last.municipality_code,
        last.municipality_name,
        last.channel_id,
        last.kind,
        dict(outcomes),
        _buckets(latencies),
        float(sum(latencies)),
        len(latencies),
        _quantiles(latencies),
        max(bounds) if bounds else None,
        min(expiries) if expiries else None,
        dict(evidence),
        tuple(latencies),
        slo,
        score,
        own_slo,
        dict(failures),
        dict(unjudged),
    )
