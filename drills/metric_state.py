"""What the metrics are made of: a digest of each journalled run.

A :class:`RunDigest` holds what one run says about each channel (counts by
outcome and evidence, latency buckets and quantiles, observer error bound, TLS expiry) and
each municipality (readiness score, roll call, fallback). Digests of runs that
have ended never change, so :class:`JournalView` keeps them and re-reads only
runs that are new, still running, or changed status.

The digest functions are pure and unit-tested; :class:`JournalView` is the
only part that reads the journal.

Roll-call and fallback results come from ``journal.events(run_id, kind)``;
their shape is read defensively (see :func:`roll_calls`, :func:`fallbacks`).
Surges are the run's ``surge`` events, read by :mod:`drills.surge.summary`
(the last surge of each channel in a run).
"""

from __future__ import annotations

import bisect
import socket
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from drills.delivery import Delivery, Evidence, Outcome
from drills.errors import RegistryError
from drills.journal import Journal, RunStatus, _pid_alive
from drills.registry import Registry, load_registry
from drills.scorecard import build_scorecard
from drills.scoring import percentile, reachability
from drills.surge.summary import SurgeSummary, read_surges

__all__ = [
    "LATENCY_BUCKETS",
    "NO_EVIDENCE",
    "QUANTILES",
    "ChannelDigest",
    "JournalView",
    "MuniDigest",
    "RunDigest",
    "digest_channel",
    "digest_run",
    "fallbacks",
    "latest_by",
    "roll_calls",
    "streak",
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
# (metric name part, percentile) — the scorecard's p50 and p95.
QUANTILES: tuple[tuple[str, float], ...] = (("p50", 50.0), ("p95", 95.0))

_DAY = 86_400.0
T = TypeVar("T")

# The ``evidence`` label of a delivery that has none (lost, rejected, error, drill_outage).
NO_EVIDENCE = "none"


def _evidence_of(outcome: str) -> str:
    """The evidence a record of *outcome* had before evidence was journalled."""
    if Outcome(outcome).reached:
        return Evidence.SEEN.value
    return Evidence.ACCEPTED.value if outcome == Outcome.ACCEPTED.value else NO_EVIDENCE


@dataclass(frozen=True)
class ChannelDigest:
    """What one run (or, merged, several runs) says about one channel."""

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

    @property
    def labels(self) -> tuple[str, str, str, str]:
        return (self.code, self.name, self.channel_id, self.kind)

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
        """The scorecard's reachability (:func:`drills.scoring.reachability`)."""
        return reachability(self.outcomes)

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
        """Counters of both; names and latest-drill facts from *later*."""
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
        )


@dataclass(frozen=True)
class MuniDigest:
    """What one run says about one municipality."""

    code: str
    name: str
    score: float | None = None  # None: no deliveries in this run (events only)
    roll_call: tuple[int, int] | None = None  # (expected, answered)
    fallback: tuple[bool, float | None] | None = None  # (reached, latency_s)


@dataclass(frozen=True)
class RunDigest:
    run_id: str
    scenario: str
    vantage: str
    status: str
    started_at: float
    ended_at: float  # finished_at, else the last thing journalled, else started_at
    running: bool
    channels: Mapping[tuple[str, str], ChannelDigest]
    municipalities: Mapping[str, MuniDigest]
    surges: Mapping[tuple[str, str], SurgeSummary] = field(default_factory=dict)  # the run's last


# --------------------------------------------------------------------------- pure digests


def latest_by(items: Sequence[T], wanted: Callable[[T], bool]) -> T | None:
    """The last item of *items* for which *wanted* is true."""
    for item in reversed(items):
        if wanted(item):
            return item
    return None


def streak(history: Sequence[ChannelDigest]) -> int:
    """Consecutive latest drills (oldest first in *history*) in which the channel was unreachable.

    Drills that could not tell (harness errors or the drill's own outage only)
    neither count nor break the streak.

    >>> def ch(**o): return ChannelDigest("1", "n", "c", "k", o, ())
    >>> streak([ch(lost=1), ch(delivered=1), ch(lost=2), ch(error=1), ch(drill_outage=3),
    ...         ch(rejected=1, drill_outage=2)])
    2
    """
    count = 0
    for ch in reversed(history):
        if ch.reachable is None:
            continue
        if ch.reachable:
            break
        count += 1
    return count


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


def digest_channel(deliveries: Sequence[Delivery]) -> ChannelDigest:
    """Digest the deliveries of one channel in one run (at least one)."""
    last = deliveries[-1]
    outcomes = Counter(d.outcome.value for d in deliveries)
    evidence = Counter(
        (d.outcome.value, d.evidence.value if d.evidence is not None else NO_EVIDENCE)
        for d in deliveries
    )
    buckets = [0] * len(LATENCY_BUCKETS)
    latencies = [d.latency_s for d in deliveries if d.outcome.reached and d.latency_s is not None]
    for value in latencies:
        index = bisect.bisect_left(LATENCY_BUCKETS, value)
        if index < len(buckets):
            buckets[index] += 1
    quantiles = {label: percentile(latencies, q) for label, q in QUANTILES}
    bounds = [d.error_bound_s for d in deliveries if d.error_bound_s is not None]
    expiries = [t for t in map(tls_not_after, deliveries) if t is not None]
    return ChannelDigest(
        last.municipality_code,
        last.municipality_name,
        last.channel_id,
        last.kind,
        dict(outcomes),
        tuple(buckets),
        float(sum(latencies)),
        len(latencies),
        {k: v for k, v in quantiles.items() if v is not None},
        max(bounds) if bounds else None,
        min(expiries) if expiries else None,
        dict(evidence),
    )


def _items(data: Any) -> list[Mapping[str, Any]]:
    """An event's per-municipality entries: the data itself, or its ``municipalities`` list."""
    if not isinstance(data, Mapping):
        return []
    nested = data.get("municipalities") or data.get("results")
    if isinstance(nested, list):
        return [x for x in nested if isinstance(x, Mapping)]
    return [data]


def _who(item: Mapping[str, Any]) -> tuple[str | None, str | None]:
    code = item.get("municipality_code") or item.get("code")
    name = item.get("municipality_name") or item.get("name")
    muni = item.get("municipality")
    if isinstance(muni, Mapping):
        code = code or muni.get("code")
        name = name or muni.get("name")
    elif isinstance(muni, str):
        if muni.isdigit():
            code = code or muni
        else:
            name = name or muni
    return (str(code) if code else None, str(name) if name else None)


def _count(item: Mapping[str, Any], keys: Iterable[str]) -> int | None:
    for key in keys:
        value = item.get(key)
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int | float):
            return int(value)
        if isinstance(value, list | tuple | set | dict):
            return len(value)
    return None


def roll_calls(events: Iterable[Mapping[str, Any]]) -> dict[str, tuple[str | None, int, int]]:
    """Roll-call results by municipality code: (name, expected, answered); the last event wins.

    Accepted shapes (``data`` of a ``roll_call`` event), counts or lists::

        {"municipality_code": "131211", "expected": 12, "answered": 11}
        {"municipality": {"code": …, "name": …}, "members": [...], "answered": [...]}
        {"municipalities": [{…}, {…}]}          # several at once
        {"code": …, "expected": 12, "missing": ["…"]}

    >>> data = {"municipality_code": "131211", "expected": 3, "answered": ["a", "b"]}
    >>> roll_calls([{"data": data}])
    {'131211': (None, 3, 2)}
    """
    out: dict[str, tuple[str | None, int, int]] = {}
    for event in events:
        for item in _items(event.get("data")):
            code, name = _who(item)
            expected = _count(item, ("expected", "asked", "members", "total", "recipients"))
            answered = _count(item, ("answered", "responded", "answers", "confirmed"))
            if answered is None and expected is not None:
                missing = _count(item, ("missing", "unanswered"))
                answered = None if missing is None else expected - missing
            if code and expected is not None and answered is not None:
                out[code] = (name, expected, answered)
    return out


def fallbacks(
    events: Iterable[Mapping[str, Any]],
) -> dict[str, tuple[str | None, bool, float | None]]:
    """Fallback results by municipality code: (name, reached, latency_s); the last event wins.

    ``reached`` comes from ``reached``/``delivered`` (bool) or ``outcome``
    (``delivered``/``late`` mean reached); ``latency_s`` is optional.

    >>> fallbacks([{"data": {"municipality_code": "134210", "outcome": "lost"}}])
    {'134210': (None, False, None)}
    """
    out: dict[str, tuple[str | None, bool, float | None]] = {}
    for event in events:
        for item in _items(event.get("data")):
            code, name = _who(item)
            reached: bool | None = None
            for key in ("reached", "delivered", "ok", "success"):
                if isinstance(item.get(key), bool):
                    reached = bool(item[key])
                    break
            if reached is None and isinstance(item.get("outcome"), str):
                reached = item["outcome"] in (Outcome.DELIVERED.value, Outcome.LATE.value)
            latency = item.get("latency_s")
            if not isinstance(latency, int | float) or isinstance(latency, bool):
                latency = None
            if code and reached is not None:
                out[code] = (name, reached, None if latency is None else float(latency))
    return out


def digest_run(
    run: Mapping[str, Any],
    deliveries: Sequence[Delivery],
    events: Sequence[Mapping[str, Any]],
    scores: Mapping[str, float],
    running: bool,
    names: Mapping[str, str] | None = None,
) -> RunDigest:
    """Digest one run: its row, deliveries, events and per-municipality scores."""
    by_channel: dict[tuple[str, str], list[Delivery]] = {}
    muni_names: dict[str, str] = dict(names or {})
    for d in deliveries:
        by_channel.setdefault((d.municipality_code, d.channel_id), []).append(d)
        muni_names[d.municipality_code] = d.municipality_name
    channels = {key: digest_channel(items) for key, items in by_channel.items()}
    rc = roll_calls(e for e in events if e.get("kind") == "roll_call")
    fb = fallbacks(e for e in events if e.get("kind") == "fallback")
    surges = {s.key: s for s in read_surges(e for e in events if e.get("kind") == "surge")[0]}
    surged = {code: s.name for (code, _), s in surges.items()}
    codes = {code for code, _ in by_channel} | set(rc) | set(fb) | set(surged)
    munis = {}
    for code in codes:
        name = (
            muni_names.get(code)
            or (rc.get(code) or fb.get(code) or (None,))[0]
            or surged.get(code)
            or code
        )
        roll = rc.get(code)
        fall = fb.get(code)
        munis[code] = MuniDigest(
            code,
            name,
            scores.get(code),
            (roll[1], roll[2]) if roll else None,
            (fall[1], fall[2]) if fall else None,
        )
    activity = [t for d in deliveries for t in (d.delivered_at, d.accepted_at, d.sent_at) if t] + [
        float(e["at"]) for e in events if isinstance(e.get("at"), int | float)
    ]
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
    )


# --------------------------------------------------------------------------- journal


def _running(run: Mapping[str, Any]) -> bool:
    """Is *run* still running? A ``running`` run whose process died on this host is not."""
    if run["status"] != RunStatus.RUNNING:
        return False
    return run.get("host") != socket.gethostname() or _pid_alive(run.get("pid"))


class JournalView:
    """Digests of every run in a journal, cached while a run cannot change."""

    def __init__(self, journal: Journal, registry: Registry | None = None) -> None:
        self.journal = journal
        self.registry = registry
        self._digests: dict[str, tuple[tuple[Any, ...], RunDigest]] = {}
        self._registries: dict[str, Registry | None] = {}
        self._last_registry: Registry | None = registry

    def registry_for(self, run: Mapping[str, Any]) -> Registry | None:
        """The registry given, else the one the run recorded (if it still loads)."""
        if self.registry is not None:
            return self.registry
        path = (run.get("meta") or {}).get("registry")
        if not isinstance(path, str) or not path:
            return None
        if path not in self._registries:
            try:
                self._registries[path] = load_registry(path, check_secrets=False)
            except (RegistryError, OSError):
                self._registries[path] = None
        return self._registries[path]

    def digests(self) -> list[RunDigest]:
        """One digest per run, oldest first."""
        out = []
        for run in self.journal.runs():
            running = _running(run)
            key = (run["status"], run["finished_at"], running)
            cached = self._digests.get(run["run_id"])
            if cached is not None and cached[0] == key and not running:
                out.append(cached[1])
                continue
            digest = self._digest(run, running)
            self._digests[run["run_id"]] = (key, digest)
            out.append(digest)
        return out

    def _digest(self, run: Mapping[str, Any], running: bool) -> RunDigest:
        run_id = run["run_id"]
        deliveries = self.journal.deliveries(run_id)
        events = [
            e
            for e in self.journal.events(run_id)
            if e["kind"] in ("roll_call", "fallback", "surge")
        ]
        registry = self.registry_for(run)
        if registry is not None:
            self._last_registry = registry
        scores: dict[str, float] = {}
        if deliveries and not running:
            card = build_scorecard(self.journal, run_id, registry)
            # a municipality with nothing measurable (only harness errors) has no score
            scores = {
                m["code"]: float(m["score"])
                for m in card["municipalities"]
                if m["score"] is not None
            }
        names = {m.code: m.name for m in registry.municipalities} if registry else None
        return digest_run(run, deliveries, events, scores, running, names)

    def intervals(self) -> dict[str, tuple[str, float]]:
        """Each municipality's ``drill_interval`` (seconds) from the registry, by code."""
        registry = self.registry or self._last_registry
        if registry is None:
            return {}
        return {
            m.code: (m.name, m.drill_interval_s)
            for m in registry.municipalities
            if m.drill_interval_s is not None
        }
