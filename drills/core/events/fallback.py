"""Fallback steps: per municipality, each channel the chain tried and the first to reach it
(:class:`FallbackEvent`, :class:`FallbackMunicipality`, :class:`FallbackAttempt`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

from drills.core.events.fields import _Event, _Fields, _version


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
