"""The digest of one run: everything a reader shows about it, computed once.

A :class:`RunDigest` says, per municipality × channel (:class:`ChannelDigest`):
counts by outcome and by evidence, reachability (:func:`drills.core.scoring.reachability`),
p50/p95 (:func:`drills.core.scoring.percentile`), the latency histogram, the
largest observer error bound, the TLS expiry, the channel's score
(:func:`drills.core.scoring.score_channel`) and its records not delivered by stage
and cause (:func:`drills.core.taxonomy.classify_failure`; records not judged — a harness
fault, an interruption — apart); per municipality (:class:`MuniDigest`):
its fallback, roll-call and acknowledgement ratios, read from the run's step
events through :mod:`drills.core.events`; per step and for the whole run, the
harness's own wait before sending (:mod:`drills.metrics.send_wait`, never latency).
The scorecard, the metrics and the vantage view are views of it; none of them
reads deliveries or step events.

A municipality's score is *not* stored: it contains freshness, which depends
on the moment it is judged at ("now", or the run's end). Readers apply it at
read time with :meth:`RunDigest.municipality_score`, from the stored channel
scores and ratios (:func:`drills.core.scoring.score_municipality`).

The digest of an ended run is stored in the journal (:meth:`Journal.put_digest`)
with :data:`MODEL_VERSION`, and :func:`run_digest` returns it until the run
changes (its status, end, deliveries or step events), the SLOs it was scored
against change, or the scoring model does; a running run is digested on the
fly and never stored.

    >>> from drills.core.delivery import Delivery, Outcome
    >>> d = Delivery("r", "s", "131211", "足立区", "chat", "webhook", "TSG-0", Outcome.DELIVERED,
    ...              latency_s=0.4)
    >>> ch = digest_channel([d, d], (0.99, 60.0))
    >>> ch.reachability, ch.quantiles["p50"], ch.score.score if ch.score else None
    (1.0, 0.4, 100.0)
"""

from __future__ import annotations

import bisect
import hashlib
import json
import socket
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from drills.core.delivery import Delivery, Evidence, Outcome
from drills.core.events import (
    AcknowledgementEvent,
    FallbackEvent,
    RollCallEvent,
    RunEvents,
    SurgeEvent,
    run_events,
)
from drills.core.journal import Journal, RunStatus, _pid_alive
from drills.core.scoring import (
    WEIGHTS,
    ChannelScore,
    MunicipalityScore,
    Ratio,
    Weights,
    percentile,
    reachability,
    score_channel,
    score_municipality,
)
from drills.core.taxonomy import NotJudged, classify_delivery
from drills.metrics.send_wait import SendWaits, send_waits
from drills.surge.summary import SurgeSummary, read_surge, read_surges

__all__ = [
    "DEFAULT_SLO_REACHABILITY",
    "DIGEST_FORMAT",
    "LATENCY_BUCKETS",
    "MODEL_VERSION",
    "NO_EVIDENCE",
    "QUANTILES",
    "ChannelDigest",
    "MuniDigest",
    "RunDigest",
    "SloMap",
    "StepSummary",
    "digest_channel",
    "digest_run",
    "is_running",
    "run_digest",
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
# A channel's reachability SLO when the registry does not give one.
DEFAULT_SLO_REACHABILITY = 0.99
_DEFAULT_SLO_LATENCY = 60.0
_DAY = 86_400.0

# Bump when the stored shape or any derivation changes; the weights are in MODEL_VERSION.
DIGEST_FORMAT = 6  # 2: compact channels; 3: compact municipalities, outcomes from evidence
# 4: failures by stage and cause (drills.core.taxonomy); 5: records not judged apart, codes
# with their HTTP status; 6: the harness's wait before sending (drills.metrics.send_wait)


def _model_version(weights: Weights = WEIGHTS) -> str:
    model = {
        "format": DIGEST_FORMAT,
        "weights": weights.as_dict(),
        "buckets": LATENCY_BUCKETS,
        "quantiles": QUANTILES,
    }
    text = json.dumps(model, sort_keys=True)
    return f"{DIGEST_FORMAT}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


#: The digest format and the scoring model it was computed with: a stored
#: digest of another version is recomputed.
MODEL_VERSION = _model_version()

#: (municipality code, channel id) → (SLO reachability, SLO latency in seconds).
SloMap = Mapping[tuple[str, str], tuple[float, float]]


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


def _score_data(cs: ChannelScore) -> dict[str, Any]:
    return asdict(cs)


def _score_from(data: Mapping[str, Any]) -> ChannelScore:
    return ChannelScore(**data)


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
    delivery_slo_latency: float = _DEFAULT_SLO_LATENCY  # the deliveries' own (largest) SLO
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


def _ratio_data(ratio: Ratio | None) -> list[float] | None:
    return None if ratio is None else [ratio.good, ratio.total]


def _ratio_from(data: Any) -> Ratio | None:
    return None if data is None else Ratio(float(data[0]), float(data[1]))


@dataclass(frozen=True)
class MuniDigest:
    """What one run says about one municipality besides its channels (from step events)."""

    code: str
    name: str
    fallback: Ratio | None = None  # checks passed of checks made
    roll_call: Ratio | None = None  # answered of expected
    acknowledgement: Ratio | None = None
    fallback_latency_s: float | None = None  # time to the first arrival of the latest fallback

    def to_data(self) -> list[Any]:
        """The stored form: a list (no key names repeated for every municipality)."""
        return [
            self.code,
            self.name,
            _ratio_data(self.fallback),
            _ratio_data(self.roll_call),
            _ratio_data(self.acknowledgement),
            self.fallback_latency_s,
        ]

    @classmethod
    def from_data(cls, data: Sequence[Any]) -> MuniDigest:
        code, name, fallback, roll_call, acknowledgement, fallback_latency_s = data
        return cls(
            code,
            name,
            _ratio_from(fallback),
            _ratio_from(roll_call),
            _ratio_from(acknowledgement),
            fallback_latency_s,
        )


@dataclass(frozen=True)
class StepSummary:
    """One step event, summed up for the vantage view (kind, step name, figures)."""

    kind: str  # roll_call | acknowledgement | fallback
    figures: Mapping[str, Any]

    def to_data(self) -> dict[str, Any]:
        return {"kind": self.kind, "figures": dict(self.figures)}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> StepSummary:
        return cls(data["kind"], dict(data["figures"]))


@dataclass(frozen=True)
class RunDigest:
    """One run: its row, its channels and municipalities, its surges and step summaries."""

    run_id: str
    scenario: str
    vantage: str
    status: str
    started_at: float
    ended_at: float  # finished_at, else the last thing journalled, else started_at
    running: bool
    channels: Mapping[tuple[str, str], ChannelDigest]  # in journal order
    municipalities: Mapping[str, MuniDigest]
    surges: Sequence[SurgeSummary] = ()  # in journal order
    unreadable_events: int = 0
    steps: Sequence[StepSummary] = ()
    finished_at: float | None = None
    send_wait: SendWaits = field(default_factory=SendWaits)  # the harness's, never latency

    @property
    def latest_surges(self) -> dict[tuple[str, str], SurgeSummary]:
        """The last surge of each channel."""
        return {s.key: s for s in self.surges}

    def channels_of(self, code: str) -> list[ChannelDigest]:
        return [ch for ch in self.channels.values() if ch.code == code]

    def municipality_score(
        self, code: str, freshness_value: float, weights: Weights = WEIGHTS
    ) -> MunicipalityScore:
        """The municipality's score with *freshness_value* applied (judged by the reader).

        Channel scores and ratios come from the digest; freshness is not stored
        because it depends on the moment it is judged at.
        """
        muni = self.municipalities.get(code)
        pairs = [(ch.kind, ch.score) for ch in self.channels_of(code) if ch.score is not None]
        return score_municipality(
            pairs,
            freshness_value=freshness_value,
            fallback=muni.fallback if muni else None,
            roll_call=muni.roll_call if muni else None,
            weights=weights,
        )

    def to_data(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "scenario": self.scenario,
            "vantage": self.vantage,
            "status": self.status,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "finished_at": self.finished_at,
            "running": self.running,
            "channels": [ch.to_data() for ch in self.channels.values()],
            "municipalities": [m.to_data() for m in self.municipalities.values()],
            "surges": [s.data for s in self.surges],
            "unreadable_events": self.unreadable_events,
            "steps": [s.to_data() for s in self.steps],
            "send_wait": self.send_wait.to_data(),
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> RunDigest:
        munis = [MuniDigest.from_data(m) for m in data["municipalities"]]
        names = {m.code: m.name for m in munis}
        channels = [ChannelDigest.from_data(c, names.get(c[0], c[0])) for c in data["channels"]]
        surges = [s for s in map(read_surge, data.get("surges", [])) if s is not None]
        return cls(
            data["run_id"],
            data["scenario"],
            data["vantage"],
            data["status"],
            float(data["started_at"]),
            float(data["ended_at"]),
            bool(data["running"]),
            {ch.key: ch for ch in channels},
            {m.code: m for m in munis},
            surges,
            int(data.get("unreadable_events", 0)),
            [StepSummary.from_data(s) for s in data.get("steps", [])],
            data.get("finished_at"),
            SendWaits.from_data(data.get("send_wait")),
        )


# --------------------------------------------------------------------------- pure digests


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
    own_slo = max((d.slo_latency_s or _DEFAULT_SLO_LATENCY) for d in deliveries)
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


def _slo_for(key: tuple[str, str], slos: SloMap, own_latency: float) -> tuple[float, float]:
    return slos.get(key, (DEFAULT_SLO_REACHABILITY, own_latency))


def _step_summaries(events: RunEvents) -> list[StepSummary]:
    """The vantage view's line for each roll-call, acknowledgement and fallback step."""
    out = []
    for event in events:
        if isinstance(event, RollCallEvent):
            figures: dict[str, Any] = {
                "step": event.step,
                "all_answered_s": event.all_answered_s,
                "never": list(event.never),
            }
        elif isinstance(event, AcknowledgementEvent):
            figures = {
                "step": event.step,
                "t50_s": event.overall.t50_s,
                "answered": event.overall.answered,
                "expected": event.overall.expected,
            }
        elif isinstance(event, FallbackEvent):
            figures = {
                "step": event.step,
                "municipalities": len(event.municipalities),
                "reached": sum(1 for m in event.municipalities if m.reached_via),
            }
        else:
            continue
        out.append(StepSummary(event.kind, figures))
    return out


def digest_run(
    run: Mapping[str, Any],
    deliveries: Sequence[Delivery],
    events: RunEvents,
    slos: SloMap,
    running: bool,
    weights: Weights = WEIGHTS,
    last_event_at: float | None = None,
    surges: Sequence[SurgeSummary] = (),
    surges_unreadable: int = 0,
) -> RunDigest:
    """Digest one run: its journal row, deliveries and step events, scored against *slos*.

    *last_event_at*: when the run's last step event was journalled (for the end
    of a run that never finished); *surges*: its surges (:mod:`drills.surge.summary`
    reads them, with the ramp figures the typed events leave out).

    A channel without an SLO in *slos* is scored against reachability
    :data:`DEFAULT_SLO_REACHABILITY` and its deliveries' own latency SLO.
    """
    by_channel: dict[tuple[str, str], list[Delivery]] = {}
    names: dict[str, str] = {}
    for d in deliveries:
        by_channel.setdefault((d.municipality_code, d.channel_id), []).append(d)
        names[d.municipality_code] = d.municipality_name
    channels: dict[tuple[str, str], ChannelDigest] = {}
    for key, items in by_channel.items():
        own = max((d.slo_latency_s or _DEFAULT_SLO_LATENCY) for d in items)
        channels[key] = digest_channel(items, _slo_for(key, slos, own), weights)
    fallback = events.fallback_ratios()
    roll_call = events.roll_call_ratios()
    acknowledgement = events.acknowledgement_ratios()
    latencies = events.fallback_time_to_first()
    event_names = events.names()
    codes = list(dict.fromkeys([*names, *fallback, *roll_call, *acknowledgement]))
    codes += [s.code for s in surges if s.code not in codes]
    munis = {}
    for code in codes:
        surge_name = next((s.name for s in surges if s.code == code), None)
        name = names.get(code) or event_names.get(code) or surge_name or code
        munis[code] = MuniDigest(
            code,
            name,
            fallback.get(code),
            roll_call.get(code),
            acknowledgement.get(code),
            latencies.get(code),
        )
    activity = [t for d in deliveries for t in (d.delivered_at, d.accepted_at, d.sent_at) if t]
    if last_event_at is not None:
        activity.append(last_event_at)
    ended_at = run.get("finished_at") or (max(activity) if activity else run["started_at"])
    status = run["status"]
    if status == RunStatus.RUNNING and not running:
        status = RunStatus.INCOMPLETE
    return RunDigest(
        run["run_id"],
        run.get("scenario") or "",
        run.get("vantage") or "default",
        status,
        float(run["started_at"]),
        float(ended_at),
        running,
        channels,
        munis,
        surges,
        len(events.unreadable) - events.unreadable_of(SurgeEvent) + surges_unreadable,
        _step_summaries(events),
        run.get("finished_at"),
        send_waits(deliveries),
    )


# --------------------------------------------------------------------------- journal


def is_running(run: Mapping[str, Any], journal: Journal | None = None) -> bool:
    """Is *run* still running? A ``running`` run whose process died is not: the journal
    knows (:meth:`Journal.run_alive`: on PostgreSQL whichever machine ran it); without
    one, a run of this host whose pid is gone is not."""
    if run["status"] != RunStatus.RUNNING:
        return False
    if journal is not None:
        return journal.run_alive(run)
    return run.get("host") != socket.gethostname() or _pid_alive(run.get("pid"))


def _revision(journal: Journal, run: Mapping[str, Any]) -> dict[str, Any]:
    """What a stored digest was made from: when any of it changes, it is recomputed."""
    return {
        "status": run["status"],
        "finished_at": run["finished_at"],
        **journal.revision(run["run_id"]),
    }


def _slos_match(digest: RunDigest, slos: SloMap) -> bool:
    return all(
        ch.slo == _slo_for(key, slos, ch.delivery_slo_latency)
        for key, ch in digest.channels.items()
    )


def run_digest(
    journal: Journal,
    run: Mapping[str, Any] | str,
    slos: SloMap | None = None,
    weights: Weights = WEIGHTS,
) -> RunDigest:
    """The digest of *run* (a journal row or a run id): stored if it is still good, else made.

    *slos* are the SLOs to score against; ``None`` accepts whatever SLOs the
    stored digest was scored against (readers that show no score), and scores a
    new one against the defaults. A digest of an ended run is stored; a
    running run's is made on every call. Scored with other *weights* than
    :data:`~drills.core.scoring.WEIGHTS` (another model), it is made and not stored.
    """
    row = journal.run(run) if isinstance(run, str) else run
    running = is_running(row, journal)
    revision = None
    if not running and weights == WEIGHTS:
        revision = _revision(journal, row)
        stored = journal.digest(row["run_id"])
        if stored is not None and stored[0] == MODEL_VERSION:
            data = stored[1]
            if data.get("revision") == revision:
                digest = RunDigest.from_data(data["digest"])
                if slos is None or _slos_match(digest, slos):
                    return digest
    surges, bad_surges = read_surges(journal.events(row["run_id"], "surge"))
    last_event_at = journal.last_event_at(row["run_id"])
    digest = digest_run(
        row,
        journal.deliveries(row["run_id"]),
        run_events(journal, row["run_id"]),
        slos or {},
        running,
        weights,
        last_event_at=last_event_at,
        surges=surges,
        surges_unreadable=bad_surges,
    )
    if revision is not None:
        journal.put_digest(
            row["run_id"], MODEL_VERSION, {"revision": revision, "digest": digest.to_data()}
        )
    return digest


def run_municipalities(journal: Journal, run_id: str) -> set[str]:
    """Codes of the municipalities with a delivery in *run_id* (one indexed query)."""
    return journal.run_municipalities(run_id)


def last_drilled(
    journal: Journal, codes: Iterable[str], until: float, known: Mapping[str, float] | None = None
) -> dict[str, float]:
    """Start time of each municipality's most recent drill at or before *until*.

    Walks runs newest first and stops as soon as every code in *codes* is
    found, so the cost follows how far back the oldest of them was drilled,
    not the size of the journal. *known*: times already known (not looked up).
    """
    wanted = set(codes) - set(known or {})
    out: dict[str, float] = dict(known or {})
    if not wanted:
        return out
    for run_id, started_at in journal.run_starts(until):
        found = run_municipalities(journal, run_id) & wanted
        for code in found:
            out[code] = float(started_at)
        wanted -= found
        if not wanted:
            break
    return out
