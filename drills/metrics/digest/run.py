"""The digest of one run: its channels, municipalities, surges, steps and send-side wait.

:class:`RunDigest` gathers a run's :class:`~drills.metrics.digest.channel.ChannelDigest`
per municipality × channel and, per municipality (:class:`MuniDigest`), its fallback,
roll-call and acknowledgement ratios, read from the run's step events through
:mod:`drills.core.events`; per step and for the whole run, the harness's own wait before
sending (:mod:`drills.metrics.send_wait`, never latency). :func:`digest_run` makes it
from a run's journal row, deliveries and step events — pure, no journal.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from drills.core.delivery import Delivery
from drills.core.events import (
    AcknowledgementEvent,
    FallbackEvent,
    RollCallEvent,
    RunEvents,
    SurgeEvent,
)
from drills.core.journal import RunStatus
from drills.core.scoring import WEIGHTS, MunicipalityScore, Ratio, Weights, score_municipality
from drills.metrics.digest.channel import (
    DEFAULT_SLO_LATENCY,
    LATENCY_BUCKETS,
    QUANTILES,
    ChannelDigest,
    digest_channel,
)
from drills.metrics.send_wait import SendWaits, send_waits
from drills.surge.summary import SurgeSummary, read_surge

__all__ = [
    "DEFAULT_SLO_REACHABILITY",
    "DIGEST_FORMAT",
    "MODEL_VERSION",
    "MuniDigest",
    "RunDigest",
    "SloMap",
    "StepSummary",
    "digest_run",
    "slo_for",
]

# A channel's reachability SLO when the registry does not give one.
DEFAULT_SLO_REACHABILITY = 0.99

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


def slo_for(key: tuple[str, str], slos: SloMap, own_latency: float) -> tuple[float, float]:
    """The (reachability, latency) SLO channel *key* is scored against: *slos*' own, else
    :data:`DEFAULT_SLO_REACHABILITY` and its deliveries' own latency SLO *own_latency*."""
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
        own = max((d.slo_latency_s or DEFAULT_SLO_LATENCY) for d in items)
        channels[key] = digest_channel(items, slo_for(key, slos, own), weights)
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
