"""The ground every step event stands on: :class:`EventError`, the schema version, the
typed JSON field reader (``_Fields``, ``_version``) and ``_Event``, the fields every
event carries (step, scenario, vantage)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Self

from drills.core.errors import TsunagariError

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
