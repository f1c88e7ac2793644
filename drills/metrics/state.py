"""The metrics' view of a journal: the history of each scenario × vantage, folded.

Every exported number is read from the runs' digests (:mod:`drills.metrics.digest`,
stored in the journal). The counters add up every run of a scenario × vantage
and the gauges show "the latest drill that told something" — both depend on
history, so they are kept as a fold (:class:`History`): the state after the
newest *ended* run, to which each newly ended run is added once
(:meth:`History.add`). The fold is stored in the journal
(:meth:`~drills.core.journal.Journal.put_totals`, one row per scenario × vantage),
so a cron ``push_run`` or a cold ``serve`` scrape reads one stored fold, the
digests of the runs ended since it was stored (usually none or one) and the
digests of runs still running — never the whole history.

A stored fold is used while it still describes the journal: the same
:data:`~drills.metrics.digest.MODEL_VERSION`, and the same runs up to its newest
(counted, with their statuses and ends, by one aggregate over the ``runs``
table). If an older run changed (a running run ended, a dead run was marked
incomplete) or was added out of order, the fold is rebuilt from every run's
stored digest, once. After ``journal prune`` it is rebuilt from the runs left:
the counters drop (a counter reset, which ``rate()`` and ``increase()`` handle).

Pure parts (:func:`fold`, :func:`streak`, :func:`latest_by`) are the same
whether the digests come from the journal or from a test.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from drills.core.errors import RegistryError
from drills.core.journal import Journal, RunStatus
from drills.core.registry import Registry, load_registry
from drills.core.scoring import WEIGHTS, Ratio
from drills.metrics import digest
from drills.metrics.digest import LATENCY_BUCKETS, MODEL_VERSION, ChannelDigest, RunDigest

__all__ = [
    "ChannelHistory",
    "Group",
    "History",
    "JournalView",
    "MuniHistory",
    "fold",
    "latest_by",
    "streak",
]

T = TypeVar("T")


# --------------------------------------------------------------------------- pure


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
    for ch in history:
        count = _next_streak(count, ch.reachable)
    return count


def _next_streak(count: int, reachable: bool | None) -> int:
    if reachable is None:
        return count
    return 0 if reachable else count + 1


def _ratio(data: Any) -> Ratio | None:
    return None if data is None else Ratio(float(data[0]), float(data[1]))


def _ratio_data(ratio: Ratio | None) -> list[float] | None:
    return None if ratio is None else [ratio.good, ratio.total]


@dataclass
class ChannelHistory:
    """One channel of one scenario × vantage over every ended run, folded.

    Counters (``totals``, ``buckets``, ``latency_sum``, ``latency_count``) add
    up; the rest is the latest run that told it.
    """

    labels: tuple[str, str, str, str]  # code, name, channel id, kind (of the latest run)
    totals: Counter[tuple[str, str]] = field(default_factory=Counter)  # (outcome, evidence)
    buckets: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS))
    latency_sum: float = 0.0
    latency_count: int = 0
    last: dict[tuple[str, str], int] = field(default_factory=dict)  # the latest run's counts
    told: tuple[bool, float] | None = None  # (reachable, reachability) of the latest that told
    streak: int = 0
    quantiles: dict[str, float] = field(default_factory=dict)  # of the latest timed run
    error_bound: float | None = None
    tls_not_after: float | None = None

    def add(self, ch: ChannelDigest, *, ended: bool = True) -> None:
        """Add one run's channel: its counters always, its facts only if it *ended*."""
        self.labels = ch.labels
        evidence = ch.outcome_evidence
        self.totals.update(evidence)
        for i, n in enumerate(ch.buckets):
            self.buckets[i] += n
        self.latency_sum += ch.latency_sum
        self.latency_count += ch.latency_count
        if not ended:
            return
        self.last = evidence
        if ch.reachable is not None:
            self.told = (ch.reachable, ch.reachability)
        self.streak = _next_streak(self.streak, ch.reachable)
        if ch.quantiles:
            self.quantiles = dict(ch.quantiles)
        if ch.error_bound is not None:
            self.error_bound = ch.error_bound
        if ch.tls_not_after is not None:
            self.tls_not_after = ch.tls_not_after

    def copy(self) -> ChannelHistory:
        return ChannelHistory.from_data(self.to_data())

    def to_data(self) -> list[Any]:
        return [
            list(self.labels),
            [[o, e, n] for (o, e), n in sorted(self.totals.items())],
            self.buckets,
            self.latency_sum,
            self.latency_count,
            [[o, e, n] for (o, e), n in sorted(self.last.items())],
            None if self.told is None else list(self.told),
            self.streak,
            self.quantiles,
            self.error_bound,
            self.tls_not_after,
        ]

    @classmethod
    def from_data(cls, data: Sequence[Any]) -> ChannelHistory:
        labels, totals, buckets, lsum, lcount, last, told, strk, q, bound, tls = data
        return cls(
            (labels[0], labels[1], labels[2], labels[3]),
            Counter({(o, e): int(n) for o, e, n in totals}),
            [int(n) for n in buckets],
            float(lsum),
            int(lcount),
            {(o, e): int(n) for o, e, n in last},
            None if told is None else (bool(told[0]), float(told[1])),
            int(strk),
            {str(k): float(v) for k, v in q.items()},
            bound,
            tls,
        )


@dataclass
class MuniHistory:
    """One municipality of one scenario × vantage over every ended run, folded."""

    name: str
    last_ended_at: float
    scored: list[str] = field(default_factory=list)  # the last two runs with a channel score
    roll_call: Ratio | None = None  # of the latest roll call that expected someone
    fallback: Ratio | None = None  # of the latest fallback that checked something
    fallback_latency_s: float | None = None

    def to_data(self) -> list[Any]:
        return [
            self.name,
            self.last_ended_at,
            self.scored,
            _ratio_data(self.roll_call),
            _ratio_data(self.fallback),
            self.fallback_latency_s,
        ]

    @classmethod
    def from_data(cls, data: Sequence[Any]) -> MuniHistory:
        name, ended, scored, rc, fb, fb_lat = data
        return cls(str(name), float(ended), list(scored), _ratio(rc), _ratio(fb), fb_lat)


@dataclass
class History:
    """Every ended run of one scenario × vantage, folded (oldest first, by :meth:`add`)."""

    scenario: str
    vantage: str
    head: str | None = None  # run id of the newest run folded in
    runs: int = 0
    channels: dict[tuple[str, str], ChannelHistory] = field(default_factory=dict)
    municipalities: dict[str, MuniHistory] = field(default_factory=dict)
    surges: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # latest, as data
    last_ended: tuple[float, float] | None = None  # (started_at, ended_at) of the latest
    last_success_at: float | None = None  # ended_at of the latest finished run

    def add(self, run: RunDigest) -> None:
        """Fold in one ended run (runs must come oldest first)."""
        assert not run.running, "running runs are not folded"
        self.head = run.run_id
        self.runs += 1
        for key, ch in run.channels.items():
            history = self.channels.get(key)
            if history is None:
                history = self.channels[key] = ChannelHistory(ch.labels)
            history.add(ch)
        for code, muni in run.municipalities.items():
            mh = self.municipalities.get(code)
            if mh is None:
                mh = self.municipalities[code] = MuniHistory(muni.name, run.ended_at)
            mh.name, mh.last_ended_at = muni.name, run.ended_at
            if any(
                ch.score is not None and ch.score.score is not None for ch in run.channels_of(code)
            ):
                mh.scored = [*mh.scored, run.run_id][-2:]
            if muni.roll_call is not None and muni.roll_call.total > 0:
                mh.roll_call = muni.roll_call
            if muni.fallback is not None and muni.fallback.total > 0:
                mh.fallback = muni.fallback
                mh.fallback_latency_s = muni.fallback_latency_s
        for key, surge in run.latest_surges.items():
            self.surges[key] = dict(surge.data)
        self.last_ended = (run.started_at, run.ended_at)
        if run.status == RunStatus.FINISHED:
            self.last_success_at = run.ended_at

    def to_data(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "vantage": self.vantage,
            "head": self.head,
            "runs": self.runs,
            "channels": [[list(k), h.to_data()] for k, h in self.channels.items()],
            "municipalities": [[c, m.to_data()] for c, m in self.municipalities.items()],
            "surges": [[list(k), s] for k, s in self.surges.items()],
            "last_ended": None if self.last_ended is None else list(self.last_ended),
            "last_success_at": self.last_success_at,
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> History:
        last = data.get("last_ended")
        return cls(
            data["scenario"],
            data["vantage"],
            data.get("head"),
            int(data.get("runs", 0)),
            {(k[0], k[1]): ChannelHistory.from_data(h) for k, h in data["channels"]},
            {str(c): MuniHistory.from_data(m) for c, m in data["municipalities"]},
            {(k[0], k[1]): dict(s) for k, s in data.get("surges", [])},
            None if last is None else (float(last[0]), float(last[1])),
            data.get("last_success_at"),
        )


@dataclass
class Group:
    """What the metrics of one scenario × vantage are rendered from."""

    history: History  # every ended run, folded
    running: list[RunDigest] = field(default_factory=list)  # runs still running, oldest first
    latest_started_at: float | None = None  # of the newest run, running or not
    latest_running: bool = False

    @property
    def scenario(self) -> str:
        return self.history.scenario

    @property
    def vantage(self) -> str:
        return self.history.vantage


def fold(digests: Iterable[RunDigest]) -> list[Group]:
    """Group *digests* (oldest first) by scenario × vantage and fold each group."""
    groups: dict[tuple[str, str], Group] = {}
    for run in digests:
        key = (run.scenario, run.vantage)
        group = groups.get(key)
        if group is None:
            group = groups[key] = Group(History(*key))
        if run.running:
            group.running.append(run)
        else:
            group.history.add(run)
        group.latest_started_at = run.started_at
        group.latest_running = run.running
    return [groups[k] for k in sorted(groups)]


# --------------------------------------------------------------------------- journal


_running = digest.is_running


# What a stored fold was made from: the runs up to its head, counted with their
# statuses and ends. Any change among them (a run ended, was marked incomplete,
# was added out of order) changes it, and the fold is rebuilt.
def _fingerprint(journal: Journal, scenario: str, vantage: str, head: Mapping[str, Any]) -> str:
    n, finished_sum, *counts = journal.group_fingerprint(scenario, vantage, head)
    return json.dumps([n, repr(float(finished_sum)), *counts])


class JournalView:
    """The journal as the metrics read it: one :class:`Group` per scenario × vantage.

    Keeps the folds and digests in memory while they cannot change, so a
    long-lived exporter reads only what is new.
    """

    def __init__(self, journal: Journal, registry: Registry | None = None) -> None:
        self.journal = journal
        self.registry = registry
        self._digests: dict[str, tuple[tuple[Any, ...], digest.RunDigest]] = {}
        self._registries: dict[str, Registry | None] = {}
        self._last_registry: Registry | None = registry

    def registry_for(self, run: Mapping[str, Any]) -> Registry | None:
        """The registry given, else the one the run recorded (if it still loads)."""
        if self.registry is not None:
            return self.registry
        meta = run.get("meta") or {}
        if isinstance(meta, str):
            meta = json.loads(meta)
        path = meta.get("registry")
        if not isinstance(path, str) or not path:
            return None
        if path not in self._registries:
            try:
                self._registries[path] = load_registry(path, check_secrets=False)
            except (RegistryError, OSError):
                self._registries[path] = None
        return self._registries[path]

    # ------------------------------------------------------------------ digests

    def digest_of(self, run: Mapping[str, Any] | str) -> digest.RunDigest:
        """The digest of one run (a journal row or run id), cached while it cannot change."""
        row = self.journal.run(run) if isinstance(run, str) else run
        running = self._running(row)
        key = (row["status"], row["finished_at"], running)
        cached = self._digests.get(row["run_id"])
        if cached is not None and cached[0] == key and not running:
            return cached[1]
        made = self._digest(row)
        self._digests[row["run_id"]] = (key, made)
        return made

    def digests(self) -> list[digest.RunDigest]:
        """One digest per run, oldest first (reads every run: for tests and tools, not metrics)."""
        return [self.digest_of(run) for run in self.journal.runs()]

    def _digest(self, run: Mapping[str, Any]) -> digest.RunDigest:
        # The stored digest of the run (drills.metrics.digest), scored against the registry's SLOs.
        registry = self.registry_for(run)
        if registry is not None:
            self._last_registry = registry
        slos = {
            (m.code, c.id): (c.slo.reachability, c.slo.latency)
            for m in (registry.municipalities if registry is not None else ())
            for c in m.channels
        }
        return digest.run_digest(self.journal, run, slos)

    # ------------------------------------------------------------------ groups

    def groups(self, scenario: str | None = None, vantage: str | None = None) -> list[Group]:
        """One :class:`Group` per scenario × vantage (only those given, if given)."""
        pairs = self.journal.scenario_vantages()
        return [
            self.group(s, v)
            for s, v in pairs
            if (scenario is None or s == scenario) and (vantage is None or v == vantage)
        ]

    def _running(self, row: Mapping[str, Any]) -> bool:
        return _running(row, self.journal)

    def group(self, scenario: str, vantage: str) -> Group:
        """The fold of one scenario × vantage: stored, brought up to date, stored again."""
        history = self._stored_history(scenario, vantage)
        stored = history is not None
        after: tuple[float, int] | None = None
        if history is not None and history.head is not None:
            head = self.journal.group_runs(scenario, vantage, run_id=history.head)[0]
            after = (head["started_at"], head["rowid"])
        else:
            history = History(scenario, vantage)
        skipped = [r["run_id"] for r in self._still_running(scenario, vantage)]
        added = False
        group = Group(history)
        for row in self.journal.group_runs(scenario, vantage, after=after):
            if self._running(row):
                continue
            history.add(self.digest_of(row))
            added = True
        if added or not stored:
            self._store(history, skipped)
        for row in self.journal.group_runs(scenario, vantage, status=RunStatus.RUNNING):
            if self._running(row):
                group.running.append(self.digest_of(row))
        latest = self.journal.group_runs(scenario, vantage, newest_first=True, limit=1)
        if latest:
            # Without a registry given, the newest run's registry gives the intervals.
            registry = self.registry_for(latest[0])
            if registry is not None:
                self._last_registry = registry
            group.latest_started_at = float(latest[0]["started_at"])
            group.latest_running = self._running(latest[0])
        return group

    def _stored_history(self, scenario: str, vantage: str) -> History | None:
        """The stored fold, if it still describes the journal; else None (rebuild)."""
        stored = self.journal.totals(scenario, vantage)
        if stored is None or stored[0] != MODEL_VERSION:
            return None
        data = stored[1]
        history = History.from_data(data["history"])
        if history.head is None:
            return None
        head = self.journal.group_runs(scenario, vantage, run_id=history.head)
        if not head or _fingerprint(self.journal, scenario, vantage, head[0]) != data.get(
            "fingerprint"
        ):
            return None
        # Runs that were running when the fold was made and have ended since.
        for run_id in data.get("skipped", []):
            rows = self.journal.group_runs(scenario, vantage, run_id=run_id)
            if rows and not self._running(rows[0]):
                return None
        return history

    def _still_running(self, scenario: str, vantage: str) -> list[dict[str, Any]]:
        """Runs still running: never folded; when one ends before the head, the fold is rebuilt."""
        return [
            r
            for r in self.journal.group_runs(scenario, vantage, status=RunStatus.RUNNING)
            if self._running(r)
        ]

    def _store(self, history: History, skipped: Sequence[str]) -> None:
        if history.head is None:
            return
        head = self.journal.group_runs(history.scenario, history.vantage, run_id=history.head)[0]
        data = {
            "history": history.to_data(),
            "fingerprint": _fingerprint(self.journal, history.scenario, history.vantage, head),
            "skipped": list(skipped),
        }
        self.journal.put_totals(history.scenario, history.vantage, MODEL_VERSION, data)

    # ------------------------------------------------------------------ registry

    def interval_of(self, code: str) -> float:
        """The municipality's drill interval (registry), else the scoring model's default."""
        registry = self.registry or self._last_registry
        for m in registry.municipalities if registry is not None else ():
            if m.code == code and m.drill_interval_s:
                return m.drill_interval_s
        return WEIGHTS.default_drill_interval_s

    def municipalities(self) -> list[tuple[str, str]]:
        """Every municipality of the registry (code, name), in its order."""
        registry = self.registry or self._last_registry
        return [(m.code, m.name) for m in registry.municipalities] if registry is not None else []

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
