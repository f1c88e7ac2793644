"""Placeholders a starter registry leaves for the operator: ``<<mail.smtp.host>>``.

``tsunagari registry init`` writes one wherever a value must go; the loader
refuses a registry that still holds one, naming the line and the field, so a
half-filled file is never drilled (a placeholder can be a valid string: a host
name, a sender address, a municipality's name).

>>> [dotted(p) for p, _ in unfilled({"a": [{"b": "<<x.b>>"}, "ok"]})]
['a[0].b']
"""

from __future__ import annotations

import re
from typing import Any

from drills.core.problem import Problem
from drills.core.yamlpos import LineMap, dotted

__all__ = ["PLACEHOLDER_RE", "placeholder", "placeholder_problems", "unfilled"]

PLACEHOLDER_RE = re.compile(r"<<([A-Za-z0-9_.]+)>>")

Path = tuple[str | int, ...]


def placeholder(path: str) -> str:
    """The placeholder for the value at *path* (e.g. ``mail.smtp.host``)."""
    return f"<<{path}>>"


def unfilled(data: Any, path: Path = ()) -> list[tuple[Path, str]]:
    """(path, placeholder) for every string value in *data* that still holds one."""
    if isinstance(data, dict):
        return [hit for key, value in data.items() for hit in unfilled(value, (*path, key))]
    if isinstance(data, list):
        return [hit for i, value in enumerate(data) for hit in unfilled(value, (*path, i))]
    if isinstance(data, str):
        match = PLACEHOLDER_RE.search(data)
        return [(path, match.group(0))] if match else []
    return []


def placeholder_problems(data: Any, file: str, lines: LineMap) -> list[Problem]:
    """One problem per placeholder left in *data*."""
    return [
        Problem(
            file,
            lines.line(path),
            dotted(path),
            f"ひな形の {mark} が未記入です（実際の値に置き換えてください）",
            f"{mark} from the starter is not filled in (replace it with the real value)",
        )
        for path, mark in unfilled(data)
    ]
