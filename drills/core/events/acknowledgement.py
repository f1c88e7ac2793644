"""Acknowledgement steps (安否確認): answers per municipality × channel and the
response-rate curve (:class:`AcknowledgementEvent`, :class:`AckChannel`, :class:`AckOverall`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from drills.core.events.fields import _Event, _Fields, _version


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
