"""Prometheus metrics, exported from the journal (never from process memory).

One :class:`JournalCollector` reads the journal on every collection and yields
the metric families listed in :data:`drills.metrics.catalogue.CATALOGUE`; the same collector feeds all
three ways out (``tsunagari serve``, the Pushgateway, a node_exporter
textfile), so the three always agree, and restarting the harness or
Prometheus loses nothing: the journal is the state.

    >>> from prometheus_client import CollectorRegistry, generate_latest
    >>> from drills.core.journal import Journal
    >>> prom = CollectorRegistry()
    >>> collector = JournalCollector(Journal(":memory:"), prom_registry=prom)
    >>> generate_latest(prom)
    b''

Two kinds of numbers (README, "Metrics"):

- *counters* (``tsunagari_deliveries_total``, the latency histogram) add up
  every delivery ever journalled for a scenario and vantage point; they only
  grow (but for a reset after ``journal prune``), so ``increase()`` over any
  window is the deliveries in that window. They are read from a stored fold
  of each scenario × vantage (:mod:`drills.metrics.state`), so a collection
  costs the same whatever the length of the history;
- every delivery counter carries ``outcome`` and ``evidence`` (``seen``,
  ``receipt``, ``accepted``; ``none`` for lost, rejected, error and
  drill_outage) — both bounded label values;
- *gauges* describe the latest drill that said something about a
  municipality or channel (readiness, reachable, streaks, TLS expiry, …);
  the ``tsunagari_surge_*`` gauges, the latest surge of a channel;
  ``tsunagari_drill_send_queue_seconds``, the harness's own wait before sending
  in the latest drill (p50, p95, max) — apart from every latency, never scored.

No global registry is used anywhere: pass your own ``CollectorRegistry`` as
``prom_registry=`` (``registry=`` is the drill :class:`~drills.core.registry.Registry`
throughout this project).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from drills.core.journal import Journal
from drills.core.places import office_places
from drills.core.registry import Registry
from drills.core.scoring import WEIGHTS, freshness
from drills.core.standing import compare, kind_latencies, latency_comparisons
from drills.metrics.catalogue import CATALOGUE
from drills.metrics.digest import LATENCY_BUCKETS, RunDigest
from drills.metrics.state import ChannelHistory, Group, History, JournalView, fold
from drills.surge.summary import read_surge

__all__ = [
    "LATENCY_BUCKETS",
    "JournalCollector",
    "Scope",
    "exposition",
    "families",
    "render",
]


@dataclass(frozen=True)
class Scope:
    """Which part of the journal's state to export.

    ``None`` means everything. The Pushgateway gets one run-level group
    (``drill_level`` + ``schedule``) and one group per municipality.
    """

    scenario: str | None = None
    vantage: str | None = None
    municipalities: frozenset[str] | None = None
    drill_level: bool = True
    municipality_level: bool = True
    schedule: bool = True

    def wants(self, scenario: str, vantage: str) -> bool:
        return (self.scenario is None or scenario == self.scenario) and (
            self.vantage is None or vantage == self.vantage
        )

    def wants_run(self, run: RunDigest) -> bool:
        return self.wants(run.scenario, run.vantage)

    def wants_municipality(self, code: str) -> bool:
        return self.municipalities is None or code in self.municipalities


class _Families:
    """Metric families under construction, created from :data:`CATALOGUE`."""

    def __init__(self) -> None:
        self.by_name: dict[str, Metric] = {}

    def _family(self, name: str) -> Metric:
        fam = self.by_name.get(name)
        if fam is None:
            spec = CATALOGUE[name]
            labels = list(spec.labels)
            if spec.type == "counter":
                fam = CounterMetricFamily(name.removesuffix("_total"), spec.help, labels=labels)
            elif spec.type == "histogram":
                fam = HistogramMetricFamily(name, spec.help, labels=labels)
            else:
                fam = GaugeMetricFamily(name, spec.help, labels=labels)
            self.by_name[name] = fam
        return fam

    def add(self, name: str, labels: Iterable[str], value: float) -> None:
        fam = self._family(name)
        assert isinstance(fam, GaugeMetricFamily | CounterMetricFamily)
        fam.add_metric(list(labels), value)

    def histogram(self, name: str, labels: Iterable[str], ch: ChannelHistory) -> None:
        fam = self._family(name)
        assert isinstance(fam, HistogramMetricFamily)
        cumulative, buckets = 0, []
        for le, count in zip(LATENCY_BUCKETS, ch.buckets, strict=False):
            cumulative += count
            buckets.append((_le(le), float(cumulative)))
        buckets.append(("+Inf", float(ch.latency_count)))
        fam.add_metric(list(labels), buckets, ch.latency_sum)

    def ordered(self) -> list[Metric]:
        return [self.by_name[s.name] for s in CATALOGUE.values() if s.name in self.by_name]


def _le(bound: float) -> str:
    return repr(float(bound))


def families(
    digests: list[RunDigest],
    scope: Scope = Scope(),
    intervals: dict[str, tuple[str, float]] | None = None,
    interval_of: Callable[[str], float] | None = None,
    *,
    registered: Sequence[tuple[str, str]] = (),
) -> list[Metric]:
    """Every metric family for *digests* (oldest run first) within *scope*.

    *intervals* maps municipality code to (name, drill interval in seconds);
    *registered* lists the registry's municipalities (code, name).
    Pure: the same digests always give the same families. The journal's
    collector renders the stored folds instead (:func:`render`); folding the
    digests here first makes both one path.
    """
    by_id = {d.run_id: d for d in digests}
    groups = [g for g in fold(digests) if scope.wants(g.scenario, g.vantage)]
    return render(groups, by_id.__getitem__, scope, intervals, interval_of, registered=registered)


def render(
    groups: Sequence[Group],
    digest_of: Callable[[str], RunDigest],
    scope: Scope = Scope(),
    intervals: dict[str, tuple[str, float]] | None = None,
    interval_of: Callable[[str], float] | None = None,
    *,
    registered: Sequence[tuple[str, str]] = (),
) -> list[Metric]:
    """Every metric family for the folded *groups* within *scope*.

    *digest_of* gives a run's digest by id: the readiness score of a
    municipality's last two scored runs is read from them. *registered*
    (code, name) are the registry's municipalities, for
    ``tsunagari_municipality_info``.
    """
    out = _Families()
    for group in sorted(groups, key=lambda g: (g.scenario, g.vantage)):
        if not scope.wants(group.scenario, group.vantage):
            continue
        run_labels = (group.scenario, group.vantage)
        if scope.drill_level:
            _drill_level(out, group, run_labels)
        if scope.municipality_level:
            _counters(out, group, run_labels, scope)
            _channel_gauges(out, group.history, run_labels, scope)
            _surge_gauges(out, group.history, run_labels, scope)
            _muni_gauges(out, group.history, run_labels, scope, digest_of, interval_of)
        if scope.drill_level or scope.municipality_level:
            _standing_gauges(out, group.history, run_labels, scope, digest_of, interval_of)
        if scope.drill_level:
            _failure_gauges(out, group.history, run_labels, scope, digest_of)
            _send_wait_gauges(out, group.history, run_labels, digest_of)
    if scope.schedule and intervals:
        for code, (name, seconds) in sorted(intervals.items()):
            if scope.wants_municipality(code):
                out.add("tsunagari_municipality_drill_interval_seconds", (code, name), seconds)
    if scope.schedule:
        _places(out, registered, scope)
    return out.ordered()


def _places(out: _Families, registered: Sequence[tuple[str, str]], scope: Scope) -> None:
    """``tsunagari_municipality_info``: where each registered municipality's office is."""
    places = office_places()
    for code, name in sorted(registered):
        place = places.get(code)
        if place is not None and scope.wants_municipality(code):
            lat, lon = f"{place.latitude:.3f}", f"{place.longitude:.3f}"
            out.add("tsunagari_municipality_info", (code, name, lat, lon, place.region), 1.0)


def _drill_level(out: _Families, group: Group, run_labels: tuple[str, str]) -> None:
    if group.latest_started_at is not None:
        out.add("tsunagari_drill_last_start_timestamp_seconds", run_labels, group.latest_started_at)
        out.add("tsunagari_drill_running", run_labels, 1.0 if group.latest_running else 0.0)
    last = group.history.last_ended
    if last is not None:
        started, ended = last
        out.add("tsunagari_drill_last_finish_timestamp_seconds", run_labels, ended)
        out.add("tsunagari_drill_duration_seconds", run_labels, max(0.0, ended - started))
    if group.history.last_success_at is not None:
        out.add(
            "tsunagari_drill_last_success_timestamp_seconds",
            run_labels,
            group.history.last_success_at,
        )


def _counters(out: _Families, group: Group, run_labels: tuple[str, str], scope: Scope) -> None:
    """Counters: every run, the running ones added on top of the fold."""
    totals = {k: h for k, h in group.history.channels.items() if scope.wants_municipality(k[0])}
    for run in group.running:
        for key, ch in run.channels.items():
            if scope.wants_municipality(ch.code):
                known = totals.get(key)
                history = known.copy() if known is not None else ChannelHistory(ch.labels)
                history.add(ch, ended=False)
                totals[key] = history
    for key in sorted(totals):
        h = totals[key]
        labels = (*h.labels, *run_labels)
        for (outcome, evidence), count in sorted(h.totals.items()):
            out.add("tsunagari_deliveries_total", (*labels, outcome, evidence), float(count))
        out.histogram("tsunagari_delivery_latency_seconds", labels, h)


def _channel_gauges(
    out: _Families, history: History, run_labels: tuple[str, str], scope: Scope
) -> None:
    for key in sorted(history.channels):
        if not scope.wants_municipality(key[0]):
            continue
        h = history.channels[key]
        if not h.last:  # seen only in running runs
            continue
        labels = (*h.labels, *run_labels)
        for (outcome, evidence), count in sorted(h.last.items()):
            out.add("tsunagari_last_drill_deliveries", (*labels, outcome, evidence), float(count))
        if h.told is not None:
            reachable, ratio = h.told
            out.add("tsunagari_channel_reachable", labels, 1.0 if reachable else 0.0)
            out.add("tsunagari_channel_reachability_ratio", labels, ratio)
            out.add("tsunagari_channel_unreachable_streak", labels, float(h.streak))
        for name, value in sorted(h.quantiles.items()):
            out.add(f"tsunagari_channel_latency_{name}_seconds", labels, value)
        if h.error_bound is not None:
            out.add("tsunagari_observer_error_bound_seconds", labels, h.error_bound)
        if h.tls_not_after is not None:
            out.add("tsunagari_tls_cert_expiry_timestamp_seconds", labels, h.tls_not_after)


def _surge_gauges(
    out: _Families, history: History, run_labels: tuple[str, str], scope: Scope
) -> None:
    """The latest surge of each channel (a surge is journalled whole, when it ends)."""
    for key in sorted(history.surges):
        if not scope.wants_municipality(key[0]):
            continue
        surge = read_surge(history.surges[key])
        if surge is None:
            continue
        labels = (surge.code, surge.name, surge.channel_id, surge.kind, *run_labels)
        for name, value in surge.gauges().items():
            out.add(f"tsunagari_surge_{name}", labels, value)


def _score(run: RunDigest, code: str, interval_of: Callable[[str], float] | None) -> float | None:
    """The municipality's readiness in *run*, as its scorecard shows it (freshness at the end).

    The municipality was drilled in this run, so at the run's end its last drill
    is this one's start.
    """
    interval = interval_of(code) if interval_of is not None else WEIGHTS.default_drill_interval_s
    fresh = freshness(max(0.0, run.ended_at - run.started_at), interval)
    return run.municipality_score(code, fresh).score


def _muni_gauges(
    out: _Families,
    history: History,
    run_labels: tuple[str, str],
    scope: Scope,
    digest_of: Callable[[str], RunDigest],
    interval_of: Callable[[str], float] | None,
) -> None:
    for code in sorted(history.municipalities):
        if not scope.wants_municipality(code):
            continue
        m = history.municipalities[code]
        labels = (code, m.name, *run_labels)
        out.add("tsunagari_municipality_last_drill_timestamp_seconds", labels, m.last_ended_at)
        scores = [_score(digest_of(run_id), code, interval_of) for run_id in m.scored]
        scored = [s for s in scores if s is not None]
        if scored:
            out.add("tsunagari_readiness_score", labels, scored[-1])
            if len(scored) >= 2:
                out.add(
                    "tsunagari_readiness_score_change", labels, round(scored[-1] - scored[-2], 1)
                )
        rc = m.roll_call
        if rc is not None:
            out.add("tsunagari_roll_call_expected", labels, rc.total)
            out.add("tsunagari_roll_call_answered", labels, rc.good)
            if rc.value is not None:
                out.add("tsunagari_roll_call_answered_ratio", labels, rc.value)
        fb = m.fallback
        if fb is not None:
            reached = fb.value == 1.0
            out.add("tsunagari_fallback_reached", labels, 1.0 if reached else 0.0)
            if reached and m.fallback_latency_s is not None:
                out.add("tsunagari_fallback_latency_seconds", labels, m.fallback_latency_s)


def _standing_gauges(
    out: _Families,
    history: History,
    run_labels: tuple[str, str],
    scope: Scope,
    digest_of: Callable[[str], RunDigest],
    interval_of: Callable[[str], float] | None,
) -> None:
    """Each municipality's place in the latest ended drill (:mod:`drills.core.standing`).

    Among the municipalities of that drill, as its scorecard shows them: of the
    score, and per channel kind of the p50 and p95 latency (its channels of the kind
    pooled). Rank, percentile and 偏差値 have no series (never 50) for a figure fewer
    than 10 municipalities have.
    """
    if history.head is None:
        return
    run = digest_of(history.head)
    codes = list(dict.fromkeys(ch.code for ch in run.channels.values()))
    compared = compare({code: _score(run, code, interval_of) for code in codes})
    by_kind = latency_comparisons(
        kind_latencies((ch.code, ch.kind, ch.latencies) for ch in run.channels.values())
    )
    if scope.drill_level:
        out.add("tsunagari_drill_scored_municipalities", run_labels, float(compared.population.n))
        for kind, qs in by_kind.items():
            n = float(max(c.population.n for c in qs.values()))
            out.add("tsunagari_drill_latency_measured_municipalities", (*run_labels, kind), n)
    if not scope.municipality_level:
        return
    for prefix in ("readiness", "latency_standing"):  # described even with no series
        for gauge in ("rank", "percentile", "deviation_score"):
            out._family(f"tsunagari_{prefix}_{gauge}")
    names = {ch.code: ch.labels[1] for ch in run.channels.values()}
    figures = [("readiness", (), compared)] + [
        ("latency_standing", (kind, q), c) for kind, qs in by_kind.items() for q, c in qs.items()
    ]
    for prefix, extra, comparison in figures:
        for code in sorted(comparison.of):
            s = comparison.of[code]
            if not scope.wants_municipality(code) or s.rank is None:
                continue
            labels = (code, names[code], *run_labels, *extra)
            out.add(f"tsunagari_{prefix}_rank", labels, float(s.rank))
            out.add(f"tsunagari_{prefix}_percentile", labels, float(s.percentile or 0.0))
            out.add(f"tsunagari_{prefix}_deviation_score", labels, float(s.deviation or 0.0))


def _failure_gauges(
    out: _Families,
    history: History,
    run_labels: tuple[str, str],
    scope: Scope,
    digest_of: Callable[[str], RunDigest],
) -> None:
    """``tsunagari_drill_failures``: the latest ended drill's records not delivered.

    By channel kind, stage and cause (:mod:`drills.core.taxonomy`: bounded values), as
    its scorecard counts them; the family is described even when nothing failed.
    """
    out._family("tsunagari_drill_failures")
    if history.head is None:
        return
    counts: Counter[tuple[str, str, str]] = Counter()
    for ch in digest_of(history.head).channels.values():
        if scope.wants_municipality(ch.code):
            for (stage, cause), n in ch.failures.items():
                counts[(ch.kind, stage, cause)] += n
    for (kind, stage, cause), n in sorted(counts.items()):
        out.add("tsunagari_drill_failures", (*run_labels, kind, stage, cause), float(n))


def _send_wait_gauges(
    out: _Families,
    history: History,
    run_labels: tuple[str, str],
    digest_of: Callable[[str], RunDigest],
) -> None:
    """``tsunagari_drill_send_queue_seconds``: the latest ended drill's wait before sending.

    The harness's own (:mod:`drills.metrics.send_wait`), over the whole drill: p50,
    p95 and max; no series when the drill recorded no wait (the family is described).
    Never latency.
    """
    out._family("tsunagari_drill_send_queue_seconds")
    if history.head is None:
        return
    wait = digest_of(history.head).send_wait.drill
    for stat, value in (("p50", wait.p50_s), ("p95", wait.p95_s), ("max", wait.max_s)):
        if value is not None:
            out.add("tsunagari_drill_send_queue_seconds", (*run_labels, stat), value)


class JournalCollector:
    """A prometheus_client collector that reads the journal on every collection.

    ``registry`` (a drill :class:`Registry`) supplies SLOs for the readiness
    score and each municipality's ``drill_interval``; without it, the registry
    file recorded with each run is used when it can still be read.
    """

    def __init__(
        self,
        journal: Journal,
        *,
        registry: Registry | None = None,
        scope: Scope = Scope(),
        prom_registry: CollectorRegistry | None = None,
        view: JournalView | None = None,
        groups: Sequence[Group] | None = None,
    ) -> None:
        self.view = view or JournalView(journal, registry)
        self.scope = scope
        self.groups = groups  # read once by the caller (a push): not re-read per collection
        if prom_registry is not None:
            prom_registry.register(self)

    def describe(self) -> list[Metric]:
        # Registering must not read the journal; names are fixed by CATALOGUE.
        return []

    def collect(self) -> Iterator[Metric]:
        # The stored folds (drills.metrics.state): the cost does not grow with history.
        # A reader sees one moment of the journal per scrape, while runners write.
        with self.view.journal.snapshot():
            groups = self.groups
            if groups is None:
                groups = self.view.groups(self.scope.scenario, self.scope.vantage)
            yield from render(
                groups,
                self.view.digest_of,
                self.scope,
                self.view.intervals(),
                self.view.interval_of,
                registered=self.view.municipalities(),
            )


def exposition(journal: Journal, registry: Registry | None = None, scope: Scope = Scope()) -> bytes:
    """The journal's metrics in the Prometheus text format (0.0.4)."""
    prom = CollectorRegistry()
    JournalCollector(journal, registry=registry, scope=scope, prom_registry=prom)
    return generate_latest(prom)
