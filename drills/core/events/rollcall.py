"""Roll calls (点呼): one post to a shared room and each participant's answer
(:class:`RollCallEvent`, :class:`RollCallParticipant`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

from drills.core.events.fields import _Event, _Fields, _version


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
