"""Step events: what a scenario step journals besides its deliveries, as typed records.

Every step writes one event through these classes (``ctx.record(event)``) and
every reader — scorecard, metrics, vantage view — reads them back through
:func:`run_events`, never through the JSON. Pure: no I/O here but the one
``journal.events(run_id)`` call in :func:`run_events`.

The model, in one paragraph:

*Events.* ``FallbackEvent`` (one per fallback step: per municipality, each
channel the chain tried), ``RollCallEvent`` (per participant: expected,
answered, when), ``AcknowledgementEvent`` (per municipality × channel:
expected and answered people, answer times), ``OutageEvent`` (what the drill
took away, and when), ``SurgeEvent`` (one surge of one channel: its ramp
steps and breaking point) and ``RequirementEvent`` (the verdicts of one
``expect``). Each is frozen, has ``kind`` (the journal's event kind),
``to_data()`` (JSON-ready, with ``"v": SCHEMA_VERSION``) and ``from_data()``.
An event without ``"v"`` is version 0 — what the code wrote before this
module; its shape is the same, so it reads unchanged. An event newer than
this code, or one that lacks a field or has one of the wrong type, raises
:class:`EventError` naming the kind and the field: never guessed.

*Results per municipality.* :class:`RunEvents` gives one formula for each.
**Every step of the run counts, summed**: a municipality in two roll calls is
expected twice. A run is a drill; each step is a requirement the municipality
had to meet in it, so the last step must not hide an earlier failure, and a
sum does not depend on the order concurrent steps reached the journal. As in
:mod:`drills.core.scoring`, what is not the municipality's doing is left out:

- fallback: each (step, municipality) counts 1, good when reached within the
  step's ``within_s``. An attempt sent into the drill's own outage is what a
  fallback drill is for: the chain must get past it to a channel the drill left
  up, and whether it did counts. Not counted: a chain that reached nothing when
  one of its attempts was a harness ``error`` (the verdict is *harness*), or
  when the drill had taken away every channel it tried (nothing was left to
  judge the municipality by).
- roll call: each (step, participant) counts ``expected`` (1), good
  ``answered``; a participant that cannot take part (``able: false``) counts
  as not answered, as its verdict says; nothing counts when the roll call
  itself never reached the room (``delivered: false``: no one could answer).
- acknowledgement: each (step, municipality, channel) counts ``expected``
  people, good ``answered`` (at most expected); a channel whose message was a
  harness ``error`` or sent into the drill's own outage is left out.

>>> e = FallbackEvent.from_data({"step": "fb", "order": ["chat"], "within_s": 4.0,
...     "escalate_after_s": 4.0, "municipalities": [{"code": "131211", "name": "足立区",
...     "reached": True, "latency_s": 1.5, "reached_via": "chat", "time_to_first_s": 1.5,
...     "attempts": []}]})
>>> RunEvents("r", (e,)).fallback_ratios()
{'131211': Ratio(good=1.0, total=1.0)}
>>> decode("fallback", {"step": "fb"})
Traceback (most recent call last):
  ...
drills.core.events.EventError: fallback event: field 'order' is missing
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar

from drills.core.errors import TsunagariError
from drills.core.scoring import Ratio

if TYPE_CHECKING:
    from drills.core.journal import Journal

__all__ = [
    "EVENT_TYPES",
    "SCHEMA_VERSION",
    "AckChannel",
    "AckOverall",
    "AcknowledgementEvent",
    "EventError",
    "FallbackAttempt",
    "FallbackEvent",
    "FallbackMunicipality",
    "OutageEvent",
    "PreflightChannel",
    "PreflightEvent",
    "RequirementEvent",
    "RequirementVerdict",
    "RollCallEvent",
    "RollCallParticipant",
    "RunEvents",
    "StepEvent",
    "SurgeBreakingPoint",
    "SurgeEvent",
    "SurgeRampStep",
    "SurgeSlo",
    "decode",
    "read_events",
    "run_events",
]

SCHEMA_VERSION = 1
"""Version of the events' shape. 0: written before this module (no ``"v"``; same shape)."""


class EventError(TsunagariError, ValueError):
    """A journalled step event that cannot be read: names the kind and the field."""

    def __init__(self, kind: str, field_name: str, problem: str) -> None:
        super().__init__(f"{kind} event: field {field_name!r} {problem}")
        self.kind, self.field, self.problem = kind, field_name, problem


# ---------------------------------------------------------------------- reading JSON


class _Fields:
    """Typed getters over one JSON object; a wrong or missing field raises EventError.

    A getter with a default returns it when the field is absent or null.
    """

    def __init__(self, kind: str, data: Any, path: str = "") -> None:
        self.kind, self.path = kind, path
        if not isinstance(data, Mapping):
            raise EventError(kind, path or "data", f"must be an object, not {_type(data)}")
        self.data: Mapping[str, Any] = data

    def name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def missing(self, key: str) -> EventError:
        return EventError(self.kind, self.name(key), "is missing")

    def bad(self, key: str, what: str, value: Any) -> EventError:
        return EventError(self.kind, self.name(key), f"must be {what}, not {_type(value)}")

    def text(self, key: str, default: str | None = None) -> str:
        value = self.data.get(key)
        if value is None:
            if default is None:
                raise self.missing(key)
            return default
        if not isinstance(value, str):
            raise self.bad(key, "a string", value)
        return value

    def opt_text(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is not None and not isinstance(value, str):
            raise self.bad(key, "a string or null", value)
        return value

    def number(self, key: str, default: float | None = None) -> float:
        value = self.opt_number(key)
        if value is None:
            if default is None:
                raise self.missing(key)
            return default
        return value

    def opt_number(self, key: str) -> float | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.bad(key, "a number", value)
        return float(value)

    def integer(self, key: str, default: int | None = None) -> int:
        value = self.data.get(key)
        if value is None:
            if default is None:
                raise self.missing(key)
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.bad(key, "an integer", value)
        return value

    def flag(self, key: str, default: bool | None = None) -> bool:
        value = self.opt_flag(key)
        if value is None:
            if default is None:
                raise self.missing(key)
            return default
        return value

    def opt_flag(self, key: str) -> bool | None:
        value = self.data.get(key)
        if value is not None and not isinstance(value, bool):
            raise self.bad(key, "true or false", value)
        return value

    def items(self, key: str, *, required: bool = True) -> list[Any]:
        value = self.data.get(key)
        if value is None:
            if required:
                raise self.missing(key)
            return []
        if not isinstance(value, list | tuple):
            raise self.bad(key, "a list", value)
        return list(value)

    def texts(self, key: str, *, required: bool = True) -> tuple[str, ...]:
        values = self.items(key, required=required)
        for i, item in enumerate(values):
            if not isinstance(item, str):
                raise self.bad(f"{key}[{i}]", "a string", item)
        return tuple(values)

    def numbers(self, key: str, *, required: bool = True) -> tuple[float, ...]:
        values = self.items(key, required=required)
        for i, item in enumerate(values):
            if isinstance(item, bool) or not isinstance(item, int | float):
                raise self.bad(f"{key}[{i}]", "a number", item)
        return tuple(float(x) for x in values)

    def objects(self, key: str, *, required: bool = True) -> Iterator[_Fields]:
        for i, item in enumerate(self.items(key, required=required)):
            yield _Fields(self.kind, item, self.name(f"{key}[{i}]"))

    def obj(self, key: str) -> _Fields:
        if self.data.get(key) is None:
            raise self.missing(key)
        return _Fields(self.kind, self.data[key], self.name(key))

    def mapping(self, key: str, *, required: bool = False) -> dict[str, Any]:
        """A free-form JSON object, kept as it was written (``{}`` when absent and optional)."""
        value = self.data.get(key)
        if value is None:
            if required:
                raise self.missing(key)
            return {}
        if not isinstance(value, Mapping):
            raise self.bad(key, "an object", value)
        return dict(value)


def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _version(kind: str, data: Any) -> int:
    if not isinstance(data, Mapping):
        raise EventError(kind, "data", f"must be an object, not {_type(data)}")
    v = data.get("v", 0)
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise EventError(kind, "v", f"must be a schema version (0, 1, …), not {v!r}")
    if v > SCHEMA_VERSION:
        raise EventError(
            kind, "v", f"is {v}: written by a newer tsunagari (this one reads ≤ {SCHEMA_VERSION})"
        )
    return v


# ---------------------------------------------------------------------- the events


@dataclass(frozen=True, kw_only=True)
class _Event:
    """What every step event carries: the step's name and the run's scenario and vantage."""

    kind: ClassVar[str]

    step: str = ""
    scenario: str = ""
    vantage: str = ""

    def _head(self) -> dict[str, Any]:
        return {"v": SCHEMA_VERSION, "step": self.step}

    def _tail(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "vantage": self.vantage}

    @staticmethod
    def _common(f: _Fields, *, step_required: bool = True) -> dict[str, Any]:
        return {
            "step": f.text("step") if step_required else f.text("step", ""),
            "scenario": f.opt_text("scenario") or "",
            "vantage": f.opt_text("vantage") or "",
        }

    def placed(self, scenario: str, vantage: str) -> Self:
        """The same event, in *scenario* seen from *vantage* (``DrillContext.record`` does it)."""
        return replace(self, scenario=scenario, vantage=vantage)


@dataclass(frozen=True)
class FallbackAttempt:
    """One channel a fallback chain tried."""

    channel: str
    kind: str
    outcome: str  # an Outcome value, or "skipped" (taken away by an outage step, live)
    reason: str
    started_s: float
    latency_s: float | None  # None unless every recipient was reached
    escalated_s: float | None = None  # when the chain moved on (from its start), if it did

    def to_data(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "kind": self.kind,
            "outcome": self.outcome,
            "reason": self.reason,
            "started_s": self.started_s,
            "latency_s": self.latency_s,
            "escalated_s": self.escalated_s,
        }

    @classmethod
    def _read(cls, f: _Fields) -> Self:
        return cls(
            f.text("channel"),
            f.text("kind", ""),
            f.text("outcome"),
            f.text("reason", ""),
            f.number("started_s", 0.0),
            f.opt_number("latency_s"),
            f.opt_number("escalated_s"),
        )


_DRILLS_OWN = ("drill_outage", "skipped")  # an attempt the drill's own outage decided


@dataclass(frozen=True)
class FallbackMunicipality:
    """One municipality's chain: which channel reached it first, and when."""

    code: str
    name: str
    reached: bool  # reached within the step's within_s
    reached_via: str | None
    time_to_first_s: float | None
    attempts: tuple[FallbackAttempt, ...] = ()

    @property
    def counted(self) -> bool:
        """Does this chain say something about the municipality? Not when nothing reached it
        and the harness failed on the way (``error``), or every channel it tried was taken
        away by the drill itself (``drill_outage``, ``skipped``)."""
        if self.reached_via is not None:
            return True
        outcomes = [a.outcome for a in self.attempts]
        return "error" not in outcomes and not all(o in _DRILLS_OWN for o in outcomes)

    def to_data(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "reached": self.reached,
            "latency_s": self.time_to_first_s,  # version 0 readers read it
            "reached_via": self.reached_via,
            "time_to_first_s": self.time_to_first_s,
            "attempts": [a.to_data() for a in self.attempts],
        }

    @classmethod
    def _read(cls, f: _Fields) -> Self:
        ttf = f.opt_number("time_to_first_s")
        return cls(
            f.text("code"),
            f.text("name", ""),
            f.flag("reached"),
            f.opt_text("reached_via"),
            f.opt_number("latency_s") if ttf is None else ttf,
            tuple(FallbackAttempt._read(a) for a in f.objects("attempts", required=False)),
        )


@dataclass(frozen=True, kw_only=True)
class FallbackEvent(_Event):
    """A fallback step: per municipality, the channels tried and the first to reach it."""

    kind: ClassVar[str] = "fallback"

    order: tuple[str, ...]
    within_s: float
    escalate_after_s: float
    municipalities: tuple[FallbackMunicipality, ...] = ()

    @property
    def reached_count(self) -> int:
        """Municipalities some channel reached (within the step)."""
        return sum(1 for m in self.municipalities if m.reached)

    def to_data(self) -> dict[str, Any]:
        return {
            **self._head(),
            "order": list(self.order),
            "within_s": self.within_s,
            "escalate_after_s": self.escalate_after_s,
            "municipalities": [m.to_data() for m in self.municipalities],
            **self._tail(),
        }

    @classmethod
    def from_data(cls, data: Any) -> Self:
        _version(cls.kind, data)
        f = _Fields(cls.kind, data)
        return cls(
            **cls._common(f),
            order=f.texts("order"),
            within_s=f.number("within_s"),
            escalate_after_s=f.number("escalate_after_s"),
            municipalities=tuple(
                FallbackMunicipality._read(m) for m in f.objects("municipalities")
            ),
        )


@dataclass(frozen=True)
class RollCallParticipant:
    """One municipality asked in a roll call."""

    code: str
    name: str
    expected: int  # 1
    answered: int  # 1 or 0
    answered_s: float | None  # seconds from the send to its first answer
    able: bool = True  # False: it has no channel to answer in the room (``reason`` says)
    reason: str = ""

    def to_data(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "expected": self.expected,
            "answered": self.answered,
            "answered_s": self.answered_s,
            "able": self.able,
            "reason": self.reason,
        }

    @classmethod
    def _read(cls, f: _Fields) -> Self:
        return cls(
            f.text("code"),
            f.text("name", ""),
            f.integer("expected"),
            f.integer("answered"),
            f.opt_number("answered_s"),
            f.flag("able", True),
            f.text("reason", ""),
        )


@dataclass(frozen=True, kw_only=True)
class RollCallEvent(_Event):
    """A roll call (点呼): one post to a shared room, each participant's answer."""

    kind: ClassVar[str] = "roll_call"

    room: str
    within_s: float
    delivered: bool  # did the roll call itself reach the room?
    token: str | None = None
    sent_at: float | None = None
    municipalities: tuple[RollCallParticipant, ...] = ()
    all_answered_s: float | None = None

    @property
    def never(self) -> tuple[str, ...]:
        """Participants who could answer but did not."""
        return tuple(m.code for m in self.municipalities if m.able and not m.answered)

    @property
    def unable(self) -> tuple[str, ...]:
        """Participants with no channel to answer in the room."""
        return tuple(m.code for m in self.municipalities if not m.able)

    def to_data(self) -> dict[str, Any]:
        return {
            **self._head(),
            "room": self.room,
            "token": self.token,
            "sent_at": self.sent_at,
            "within_s": self.within_s,
            "delivered": self.delivered,
            "municipalities": [m.to_data() for m in self.municipalities],
            "all_answered_s": self.all_answered_s,
            "never": list(self.never),
            "unable": list(self.unable),
            **self._tail(),
        }

    @classmethod
    def from_data(cls, data: Any) -> Self:
        _version(cls.kind, data)
        f = _Fields(cls.kind, data)
        return cls(
            **cls._common(f),
            room=f.text("room"),
            within_s=f.number("within_s"),
            delivered=f.flag("delivered"),
            token=f.opt_text("token"),
            sent_at=f.opt_number("sent_at"),
            municipalities=tuple(RollCallParticipant._read(m) for m in f.objects("municipalities")),
            all_answered_s=f.opt_number("all_answered_s"),
        )


@dataclass(frozen=True)
class AckChannel:
    """Answers on one municipality's channel."""

    code: str
    name: str
    channel: str
    kind: str
    outcome: str  # the message's Outcome value, or "skipped"
    expected: int  # people reading the channel (the step's staff)
    answered: int
    times_s: tuple[float, ...] = ()  # seconds from the send to each answer
    token: str | None = None
    t25_s: float | None = None
    t50_s: float | None = None
    t75_s: float | None = None

    @property
    def counted(self) -> bool:
        """False when the message was a harness error or sent into the drill's own outage."""
        return self.outcome not in ("error", "drill_outage")

    def to_data(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "channel": self.channel,
            "kind": self.kind,
            "token": self.token,
            "outcome": self.outcome,
            "expected": self.expected,
            "answered": self.answered,
            "times_s": list(self.times_s),
            "t25_s": self.t25_s,
            "t50_s": self.t50_s,
            "t75_s": self.t75_s,
        }

    @classmethod
    def _read(cls, f: _Fields) -> Self:
        return cls(
            f.text("code"),
            f.text("name", ""),
            f.text("channel"),
            f.text("kind", ""),
            f.text("outcome"),
            f.integer("expected"),
            f.integer("answered"),
            f.numbers("times_s", required=False),
            f.opt_text("token"),
            f.opt_number("t25_s"),
            f.opt_number("t50_s"),
            f.opt_number("t75_s"),
        )


@dataclass(frozen=True)
class AckOverall:
    """All channels of an acknowledgement step together: the response-rate curve."""

    expected: int
    answered: int
    t25_s: float | None = None
    t50_s: float | None = None
    t75_s: float | None = None
    curve: tuple[tuple[float, float], ...] = ()  # (seconds, share answered)

    def to_data(self) -> dict[str, Any]:
        return {
            "expected": self.expected,
            "answered": self.answered,
            "t25_s": self.t25_s,
            "t50_s": self.t50_s,
            "t75_s": self.t75_s,
            "curve": [[t, s] for t, s in self.curve],
        }

    @classmethod
    def _read(cls, f: _Fields) -> Self:
        curve = []
        for i, point in enumerate(f.items("curve", required=False)):
            ok = isinstance(point, list | tuple) and len(point) == 2
            if not ok or any(isinstance(x, bool) or not isinstance(x, int | float) for x in point):
                raise f.bad(f"curve[{i}]", "a [seconds, share] pair", point)
            curve.append((float(point[0]), float(point[1])))
        return cls(
            f.integer("expected"),
            f.integer("answered"),
            f.opt_number("t25_s"),
            f.opt_number("t50_s"),
            f.opt_number("t75_s"),
            tuple(curve),
        )


@dataclass(frozen=True, kw_only=True)
class AcknowledgementEvent(_Event):
    """An acknowledgement step (安否確認): answers per channel and the response-rate curve."""

    kind: ClassVar[str] = "acknowledgement"

    window_s: float
    staff: int
    channels: tuple[AckChannel, ...] = ()
    overall: AckOverall = field(default_factory=lambda: AckOverall(0, 0))

    def to_data(self) -> dict[str, Any]:
        return {
            **self._head(),
            "window_s": self.window_s,
            "staff": self.staff,
            "channels": [c.to_data() for c in self.channels],
            "overall": self.overall.to_data(),
            **self._tail(),
        }

    @classmethod
    def from_data(cls, data: Any) -> Self:
        _version(cls.kind, data)
        f = _Fields(cls.kind, data)
        return cls(
            **cls._common(f),
            window_s=f.number("window_s"),
            staff=f.integer("staff"),
            channels=tuple(AckChannel._read(c) for c in f.objects("channels")),
            overall=AckOverall._read(f.obj("overall")),
        )


@dataclass(frozen=True, kw_only=True)
class OutageEvent(_Event):
    """An outage the drill made (``with drill.outage(...)``): the drill's, not the channel's."""

    kind: ClassVar[str] = "outage"

    channels: tuple[str, ...]  # target keys, "131211/chat"
    started_at: float
    ended_at: float

    def to_data(self) -> dict[str, Any]:
        return {
            **self._head(),
            "channels": list(self.channels),
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            **self._tail(),
        }

    @classmethod
    def from_data(cls, data: Any) -> Self:
        _version(cls.kind, data)
        f = _Fields(cls.kind, data)
        return cls(
            **cls._common(f, step_required=False),  # version 0 wrote no step
            channels=f.texts("channels"),
            started_at=f.number("started_at"),
            ended_at=f.number("ended_at"),
        )


@dataclass(frozen=True)
class RequirementVerdict:
    """One municipality's verdict on one requirement."""

    code: str
    status: str  # a drills.core.requirements.Status value: met, missed, harness
    summary: str = ""

    def to_data(self) -> dict[str, Any]:
        return {"code": self.code, "status": self.status, "summary": self.summary}

    @classmethod
    def _read(cls, f: _Fields) -> Self:
        status = f.text("status")
        if status not in ("met", "missed", "harness"):
            raise EventError(
                f.kind, f.name("status"), f"must be met, missed or harness: {status!r}"
            )
        return cls(f.text("code"), status, f.text("summary", ""))


@dataclass(frozen=True, kw_only=True)
class RequirementEvent(_Event):
    """The verdicts of one ``expect(...)``, and the scenario line that asked."""

    kind: ClassVar[str] = "requirement"

    where: str | None = None
    verdicts: tuple[RequirementVerdict, ...] = ()

    def to_data(self) -> dict[str, Any]:
        return {
            **self._head(),
            "where": self.where,
            "verdicts": [v.to_data() for v in self.verdicts],
            **self._tail(),
        }

    @classmethod
    def from_data(cls, data: Any) -> Self:
        _version(cls.kind, data)
        f = _Fields(cls.kind, data)
        return cls(
            **cls._common(f),
            where=f.opt_text("where"),
            verdicts=tuple(RequirementVerdict._read(v) for v in f.objects("verdicts")),
        )


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


@dataclass(frozen=True)
class PreflightChannel:
    """One channel's preflight in a ``drill.preflight()`` step."""

    channel: str  # target key, "131211/mail"
    kind: str
    ok: bool
    skipped: bool = False
    phase: str | None = None  # the failed phase, "imap.auth"
    phase_class: str | None = None  # its class: dns, connect, tls, auth, read, account
    reason: str = ""  # "日本語 / English", empty when ok
    elapsed_s: float = 0.0
    cert_days_left: float | None = None  # the soonest-expiring certificate seen

    def to_data(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "kind": self.kind,
            "ok": self.ok,
            "skipped": self.skipped,
            "phase": self.phase,
            "phase_class": self.phase_class,
            "reason": self.reason,
            "elapsed_s": self.elapsed_s,
            "cert_days_left": self.cert_days_left,
        }

    @classmethod
    def _read(cls, f: _Fields) -> Self:
        return cls(
            channel=f.text("channel"),
            kind=f.text("kind"),
            ok=f.flag("ok"),
            skipped=f.flag("skipped", False),
            phase=f.opt_text("phase"),
            phase_class=f.opt_text("phase_class"),
            reason=f.text("reason", ""),
            elapsed_s=f.number("elapsed_s", 0.0),
            cert_days_left=f.opt_number("cert_days_left"),
        )


@dataclass(frozen=True, kw_only=True)
class PreflightEvent(_Event):
    """A ``drill.preflight()`` step: every channel checked without sending, and whether
    the drill stopped because one cannot work."""

    kind: ClassVar[str] = "preflight"

    channels: tuple[PreflightChannel, ...] = ()
    stopped: bool = False

    @property
    def failing(self) -> tuple[PreflightChannel, ...]:
        return tuple(c for c in self.channels if not c.ok)

    def to_data(self) -> dict[str, Any]:
        return {
            **self._head(),
            "channels": [c.to_data() for c in self.channels],
            "stopped": self.stopped,
            **self._tail(),
        }

    @classmethod
    def from_data(cls, data: Any) -> Self:
        _version(cls.kind, data)
        f = _Fields(cls.kind, data)
        return cls(
            **cls._common(f),
            channels=tuple(PreflightChannel._read(c) for c in f.objects("channels")),
            stopped=f.flag("stopped"),
        )


StepEvent = (
    FallbackEvent
    | RollCallEvent
    | AcknowledgementEvent
    | OutageEvent
    | SurgeEvent
    | RequirementEvent
    | PreflightEvent
)
"""Any step event."""

EVENT_TYPES: Mapping[str, type[StepEvent]] = {
    cls.kind: cls
    for cls in (
        FallbackEvent,
        RollCallEvent,
        AcknowledgementEvent,
        OutageEvent,
        SurgeEvent,
        RequirementEvent,
        PreflightEvent,
    )
}
"""Event class by the journal's event kind."""


def decode(kind: str, data: Any) -> StepEvent | None:
    """The typed event of a journal row's *kind* and *data*; None for a kind not listed here.

    Raises :class:`EventError` when *data* is not a readable event of that kind.
    """
    cls = EVENT_TYPES.get(kind)
    return None if cls is None else cls.from_data(data)


# ---------------------------------------------------------------------- one run, read once

E = TypeVar("E", bound=StepEvent)


def _add(totals: dict[str, Ratio], code: str, good: float, total: float) -> None:
    prev = totals.get(code, Ratio(0.0, 0.0))
    totals[code] = Ratio(prev.good + good, prev.total + total)


@dataclass(frozen=True)
class RunEvents:
    """The typed step events of one run, in journal order, and what readers need of them.

    The per-municipality formulas are the module docstring's (every step counts, summed).
    ``unreadable`` holds the errors of events that could not be read (each names its
    kind and field); they are never guessed, and never counted.
    """

    run_id: str
    events: tuple[StepEvent, ...] = ()
    unreadable: tuple[EventError, ...] = ()

    def __iter__(self) -> Iterator[StepEvent]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)

    def of(self, cls: type[E]) -> list[E]:
        """The events of one class, in order: ``run.of(RollCallEvent)``."""
        return [e for e in self.events if isinstance(e, cls)]

    def unreadable_of(self, cls: type[StepEvent]) -> int:
        """How many events of *cls*'s kind could not be read."""
        return sum(1 for err in self.unreadable if err.kind == cls.kind)

    # -- per municipality, every step summed

    def fallback_ratios(self) -> dict[str, Ratio]:
        """Per municipality code: chains that reached it within their step / chains counted."""
        out: dict[str, Ratio] = {}
        for event in self.of(FallbackEvent):
            for m in event.municipalities:
                if m.counted:
                    _add(out, m.code, 1.0 if m.reached else 0.0, 1.0)
        return out

    def roll_call_ratios(self) -> dict[str, Ratio]:
        """Per municipality code: roll calls answered / roll calls it was asked in.

        A roll call that never reached its room counts for nobody.
        """
        out: dict[str, Ratio] = {}
        for event in self.of(RollCallEvent):
            if event.delivered:
                for m in event.municipalities:
                    _add(out, m.code, float(min(m.answered, m.expected)), float(m.expected))
        return out

    def acknowledgement_ratios(self) -> dict[str, Ratio]:
        """Per municipality code: people who answered / people expected, over its channels."""
        out: dict[str, Ratio] = {}
        for event in self.of(AcknowledgementEvent):
            for c in event.channels:
                if c.counted:
                    _add(out, c.code, float(min(c.answered, c.expected)), float(c.expected))
        return out

    # -- per municipality, every step's record (the detail behind the ratios)

    def fallbacks(self) -> dict[str, list[FallbackMunicipality]]:
        """Per municipality code: its chain in every fallback step, in order."""
        out: dict[str, list[FallbackMunicipality]] = {}
        for event in self.of(FallbackEvent):
            for m in event.municipalities:
                out.setdefault(m.code, []).append(m)
        return out

    def roll_calls(self) -> dict[str, list[RollCallParticipant]]:
        """Per municipality code: its part in every roll call that reached its room, in order."""
        out: dict[str, list[RollCallParticipant]] = {}
        for event in self.of(RollCallEvent):
            if event.delivered:
                for m in event.municipalities:
                    out.setdefault(m.code, []).append(m)
        return out

    def acknowledgements(self) -> dict[str, list[AckChannel]]:
        """Per municipality code: each of its channels in every acknowledgement step, in order."""
        out: dict[str, list[AckChannel]] = {}
        for event in self.of(AcknowledgementEvent):
            for c in event.channels:
                out.setdefault(c.code, []).append(c)
        return out

    def fallback_time_to_first(self) -> dict[str, float | None]:
        """Per municipality code: the slowest time to first success over its counted chains
        (the run's worst case); None when a counted chain never reached it."""
        out: dict[str, float | None] = {}
        for code, chains in self.fallbacks().items():
            counted = [m for m in chains if m.counted]
            if not counted:
                continue
            times = [m.time_to_first_s for m in counted if m.reached]
            done = len(times) == len(counted)
            out[code] = max(t for t in times if t is not None) if done and times else None
        return out

    def roll_call_answered_s(self) -> dict[str, float | None]:
        """Per municipality code: its slowest answer over the roll calls it was asked in;
        None when it missed one."""
        out: dict[str, float | None] = {}
        for code, parts in self.roll_calls().items():
            times = [m.answered_s for m in parts if m.answered and m.answered_s is not None]
            out[code] = max(times) if len(times) == len(parts) and times else None
        return out

    def names(self) -> dict[str, str]:
        """Municipality names the events carry, by code."""
        out: dict[str, str] = {}
        for event in self.events:
            rows: Iterable[FallbackMunicipality | RollCallParticipant | AckChannel]
            if isinstance(event, FallbackEvent | RollCallEvent):
                rows = event.municipalities
            elif isinstance(event, AcknowledgementEvent):
                rows = event.channels
            elif isinstance(event, SurgeEvent):
                if event.municipality_name:
                    out.setdefault(event.municipality_code, event.municipality_name)
                continue
            else:
                continue
            for r in rows:
                if r.name:
                    out.setdefault(r.code, r.name)
        return out


def read_events(run_id: str, rows: Iterable[Mapping[str, Any]]) -> RunEvents:
    """:class:`RunEvents` from journal rows (``{"kind", "data"}``, in order); kinds not listed
    here (a later version's, or a private one) are passed over."""
    events: list[StepEvent] = []
    errors: list[EventError] = []
    for row in rows:
        kind = row.get("kind")
        if not isinstance(kind, str):
            continue
        try:
            event = decode(kind, row.get("data"))
        except EventError as exc:
            errors.append(exc)
            continue
        if event is not None:
            events.append(event)
    return RunEvents(run_id, tuple(events), tuple(errors))


def run_events(journal: Journal, run_id: str) -> RunEvents:
    """The typed step events of *run_id*, in the order they were journalled.

    >>> from drills.core.journal import Journal                         # doctest: +SKIP
    >>> run = run_events(Journal("drills.sqlite"), run_id)         # doctest: +SKIP
    >>> run.roll_call_ratios()["131211"].value                     # doctest: +SKIP
    1.0
    """
    return read_events(run_id, journal.events(run_id))
