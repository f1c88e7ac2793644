"""Outages the drill itself made (``with drill.outage(...)``): :class:`OutageEvent`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

from drills.core.events.fields import _Event, _Fields, _version


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
