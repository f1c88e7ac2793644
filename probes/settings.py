"""Value types shared by every kind's settings: secret references and durations.

Secrets are *references* — ``env:NAME`` or ``file:PATH`` — resolved at send
time and never printed: ``repr``/``str`` show the reference, not the value.

    >>> ref = SecretRef.parse("env:ADACHI_SMTP_PW")
    >>> str(ref)
    'env:ADACHI_SMTP_PW'
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, GetCoreSchemaHandler, PlainSerializer
from pydantic_core import core_schema

__all__ = ["Duration", "SecretRef", "SecretUnresolvable", "parse_duration"]


class SecretUnresolvable(LookupError):
    """A secret reference points at nothing (unset variable, unreadable file)."""


class SecretRef:
    """A reference to a secret; the value is read only by :meth:`reveal`."""

    __slots__ = ("_inline", "source", "target")

    def __init__(self, source: str, target: str, inline: str | None = None) -> None:
        self.source = source
        self.target = target
        self._inline = inline

    @classmethod
    def parse(cls, text: str) -> SecretRef:
        if not isinstance(text, str):
            raise ValueError("secret must be a reference string: env:NAME or file:PATH")
        source, sep, target = text.partition(":")
        if not sep or source not in ("env", "file") or not target:
            raise ValueError(
                "secrets must be references (env:NAME or file:PATH), never literal values"
            )
        if source == "env" and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", target):
            raise ValueError(f"not a valid environment variable name: {target!r}")
        return cls(source, target)

    @classmethod
    def inline(cls, value: str, label: str = "simulator") -> SecretRef:
        """A secret held in memory (simulators only; cannot come from a registry file)."""
        return cls("inline", label, inline=value)

    def reveal(self) -> str:
        """The secret's value. Call at send time only; never log the result."""
        if self.source == "inline":
            assert self._inline is not None
            return self._inline
        if self.source == "env":
            value = os.environ.get(self.target)
            if value is None:
                raise SecretUnresolvable(f"environment variable {self.target} is not set")
            return value
        try:
            return Path(self.target).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SecretUnresolvable(
                f"cannot read secret file {self.target}: {exc.strerror}"
            ) from None

    def check(self) -> None:
        """Raise :class:`SecretUnresolvable` if the reference cannot be resolved now."""
        self.reveal()

    def __str__(self) -> str:
        return f"{self.source}:{self.target}" if self.source != "inline" else "inline:***"

    def __repr__(self) -> str:
        return f"SecretRef({self})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretRef) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source_type: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        def validate(value: Any) -> SecretRef:
            if isinstance(value, SecretRef):
                return value
            return cls.parse(value)

        return core_schema.no_info_plain_validator_function(
            validate, serialization=core_schema.plain_serializer_function_ser_schema(str)
        )


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|min|m|h|d)?\s*$")


def parse_duration(value: Any) -> float:
    """Seconds from ``"60s"``, ``"2m"``, ``"500ms"``, ``"1.5h"``, ``"30d"`` or a plain number.

    >>> parse_duration("2m"), parse_duration("500ms"), parse_duration(3), parse_duration("30d")
    (120.0, 0.5, 3.0, 2592000.0)
    """
    if isinstance(value, bool):
        raise ValueError("a duration must be a number of seconds or a string like '60s'")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        match = _DURATION_RE.match(value)
        if match:
            return float(match.group(1)) * _UNITS[match.group(2) or "s"]
    raise ValueError(
        f"malformed duration {value!r}: use a number with a unit, e.g. 500ms, 60s, 2m, 1h, 30d"
    )


Duration = Annotated[float, BeforeValidator(parse_duration), PlainSerializer(float)]
