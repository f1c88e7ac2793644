"""The verdicts of one ``expect(...)``: :class:`RequirementEvent`, :class:`RequirementVerdict`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

from drills.core.events.fields import EventError, _Event, _Fields, _version


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
