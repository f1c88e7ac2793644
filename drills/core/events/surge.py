"""One surge of one channel: its ramp steps, SLO and breaking point
(:class:`SurgeEvent`, :class:`SurgeRampStep`, :class:`SurgeBreakingPoint`, :class:`SurgeSlo`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from drills.core.events.fields import EventError, _Event, _Fields, _version


@dataclass(frozen=True)
class SurgeSlo:
    latency_s: float
    reachability: float


@dataclass(frozen=True)
class SurgeRampStep:
    """One ramp step of a surge: offered load, measured load and the probes' view."""

    index: int
    rate: float
    at_rest: bool
    slo_met: bool | None  # None: no probe could be counted
    ran_s: float | None
    load: dict[str, Any]  # requests, failures, rps, response_p95_ms, …
    probes: dict[str, Any]  # sent, within_slo, latency_p50_s, latency_p95_s, …
    duration_s: float | None = None

    def to_data(self) -> dict[str, Any]:
        planned = {} if self.duration_s is None else {"duration_s": self.duration_s}
        return {
            "index": self.index,
            "rate": self.rate,
            **planned,
            "ran_s": self.ran_s,
            "at_rest": self.at_rest,
            "load": dict(self.load),
            "probes": dict(self.probes),
            "slo_met": self.slo_met,
        }

    @classmethod
    def _read(cls, f: _Fields) -> Self:
        load, probes = f.mapping("load", required=True), f.mapping("probes", required=True)
        f.obj("load").integer("failures")
        pf = f.obj("probes")
        pf.integer("sent")
        pf.integer("within_slo")
        return cls(
            f.integer("index"),
            f.number("rate"),
            f.flag("at_rest"),
            f.opt_flag("slo_met"),
            f.opt_number("ran_s"),
            load,
            probes,
            f.opt_number("duration_s"),
        )


@dataclass(frozen=True)
class SurgeBreakingPoint:
    """The first ramp step whose probes missed the SLO."""

    index: int
    rate: float
    at_rest: bool
    achieved_rps: float | None = None  # load measured at that step
    latency_p95_s: float | None = None  # the probes' delivered p95 at that step

    def to_data(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "rate": self.rate,
            "at_rest": self.at_rest,
            "achieved_rps": self.achieved_rps,
            "latency_p95_s": self.latency_p95_s,
        }


@dataclass(frozen=True, kw_only=True)
class SurgeEvent(_Event):
    """One surge of one channel (``drills.surge.runner.record_surge``; README, section surge).

    The parts every report relies on are typed; ``plan``, ``totals``, ``topology`` and
    ``workers`` are kept as written.
    """

    kind: ClassVar[str] = "surge"

    municipality_code: str
    channel_id: str
    slo: SurgeSlo
    stop_reason: str
    steps_run: int
    steps: tuple[SurgeRampStep, ...]
    seq: int = 0
    target: str = ""
    municipality_name: str = ""
    channel_kind: str = ""  # the journal's key is "kind"
    live: bool = False
    started_at: float | None = None
    breaking_point: SurgeBreakingPoint | None = None
    held_up_to_rate: float | None = None
    plan: dict[str, Any] = field(default_factory=dict)
    totals: dict[str, Any] = field(default_factory=dict)
    topology: dict[str, Any] = field(default_factory=dict)
    workers: tuple[Any, ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        return (self.municipality_code, self.channel_id)

    def to_data(self) -> dict[str, Any]:
        return {
            **self._head(),
            "seq": self.seq,
            "target": self.target,
            "municipality_code": self.municipality_code,
            "municipality_name": self.municipality_name,
            "channel_id": self.channel_id,
            "kind": self.channel_kind,
            "live": self.live,
            "topology": dict(self.topology),
            "plan": dict(self.plan),
            "started_at": self.started_at,
            "stop_reason": self.stop_reason,
            "steps_run": self.steps_run,
            "totals": dict(self.totals),
            "workers": list(self.workers),
            "slo": {"latency_s": self.slo.latency_s, "reachability": self.slo.reachability},
            "steps": [s.to_data() for s in self.steps],
            "breaking_point": None
            if self.breaking_point is None
            else self.breaking_point.to_data(),
            "held_up_to_rate": self.held_up_to_rate,
            **self._tail(),
        }

    @classmethod
    def from_data(cls, data: Any) -> Self:
        _version(cls.kind, data)
        f = _Fields(cls.kind, data)
        code, cid = f.text("municipality_code"), f.text("channel_id")
        for key, value in (("municipality_code", code), ("channel_id", cid)):
            if not value:
                raise EventError(cls.kind, key, "must not be empty")
        slo = f.obj("slo")
        steps = tuple(SurgeRampStep._read(s) for s in f.objects("steps"))
        if not steps:
            raise EventError(cls.kind, "steps", "must not be empty")
        bp = None
        if f.data.get("breaking_point") is not None:
            b = f.obj("breaking_point")
            bp = SurgeBreakingPoint(
                b.integer("index"),
                b.number("rate"),
                b.flag("at_rest"),
                b.opt_number("achieved_rps"),
                b.opt_number("latency_p95_s"),
            )
        workers = f.data.get("workers")
        return cls(
            **cls._common(f, step_required=False),
            municipality_code=code,
            channel_id=cid,
            slo=SurgeSlo(slo.number("latency_s"), slo.number("reachability")),
            stop_reason=f.text("stop_reason"),
            steps_run=f.integer("steps_run"),
            steps=steps,
            seq=f.integer("seq", 0),
            target=f.text("target", ""),
            municipality_name=f.text("municipality_name", ""),
            channel_kind=f.text("kind", ""),
            live=f.flag("live", False),
            started_at=f.opt_number("started_at"),
            breaking_point=bp,
            held_up_to_rate=f.opt_number("held_up_to_rate"),
            plan=f.mapping("plan"),
            totals=f.mapping("totals"),
            topology=f.mapping("topology"),
            workers=tuple(workers) if isinstance(workers, list | tuple) else (),
        )
