"""Shipped registries of whole prefectures (``tsunagari registry init --prefecture 13``).

Each is package data, ``drills/data/prefectures/NN.yaml`` by the prefecture's
number (JIS X 0401, the first two digits of its municipalities' 全国地方公共団体コード):
every municipality with its code, Japanese and English names and tags, every
channel a commented placeholder the operator fills in (``channels: []`` until
then: ``registry check`` warns, ``run`` refuses to drill it). The file names its
sources in its header. Today: 13, Tokyo (東京都 and its 62 区市町村).

The shipped file points editors at ``../registry.schema.json`` (the schema in the
package); :func:`prefecture_registry` gives the text as ``registry init`` writes
it, beside its own copy of the schema.

>>> prefecture_number(" 13 "), prefecture_number("013"), prefecture_number("東京")
('13', '13', None)
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

import yaml

__all__ = [
    "UnknownPrefecture",
    "available_prefectures",
    "prefecture_file",
    "prefecture_number",
    "prefecture_registry",
]

_SHIPPED_MODELINE = "# yaml-language-server: $schema=../registry.schema.json"
_WRITTEN_MODELINE = "# yaml-language-server: $schema=registry.schema.json"


class UnknownPrefecture(ValueError):
    """No registry is shipped for the prefecture asked for; ``available`` lists those that are."""

    def __init__(self, asked: str, available: dict[str, str]) -> None:
        super().__init__(asked)
        self.asked = asked
        self.available = available


def _folder() -> Traversable:
    return files("drills") / "data" / "prefectures"


def prefecture_number(text: str) -> str | None:
    """``"13"`` for ``13``, ``013`` or `` 13 ``; None unless it is a number 1–47."""
    value = text.strip()
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= 47:
        return None
    return f"{int(value):02d}"


def _own_name(text: str, number: str) -> str:
    """The prefecture's own name: the entry whose code is ``NN000`` + check digit."""
    data = yaml.safe_load(text)
    for m in data.get("municipalities", []) if isinstance(data, dict) else []:
        if isinstance(m, dict) and str(m.get("code", "")).startswith(f"{number}000"):
            return str(m.get("name", number))
    return number


def available_prefectures() -> dict[str, str]:
    """Shipped prefecture number → its name (``{"13": "東京都"}``), in number order."""
    found = sorted(
        (entry.name.removesuffix(".yaml"), entry)
        for entry in _folder().iterdir()
        if entry.name.endswith(".yaml")
    )
    return {n: _own_name(e.read_text(encoding="utf-8"), n) for n, e in found}


def prefecture_file(asked: str) -> Traversable:
    """The shipped registry of prefecture *asked*; :class:`UnknownPrefecture` if none."""
    number = prefecture_number(asked)
    entry = _folder() / f"{number}.yaml" if number is not None else None
    if entry is None or not entry.is_file():
        raise UnknownPrefecture(asked, available_prefectures())
    return entry


def prefecture_registry(asked: str) -> str:
    """The registry ``registry init --prefecture`` writes (its schema line made local)."""
    text = prefecture_file(asked).read_text(encoding="utf-8")
    first, sep, rest = text.partition("\n")
    return (_WRITTEN_MODELINE if first == _SHIPPED_MODELINE else first) + sep + rest
