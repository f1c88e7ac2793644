"""What the sharing rules report (:class:`Finding`), and the helpers every rule uses."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from drills.core.registry import Channel, Municipality, Registry
from probes.settings import SecretRef, SecretUnresolvable

__all__ = [
    "Finding",
    "Path",
    "Seat",
    "Severity",
    "about",
    "groups",
    "municipalities",
    "names",
    "names_en",
    "origin",
    "recipients",
    "same_secret",
    "seats",
    "unlike_secrets",
]

Path = tuple[str | int, ...]


class Severity(StrEnum):
    ERROR = "error"  # the registry is wrong: registry check exits 2
    WARNING = "warning"  # probably wrong, or a connection is split in two
    NOTE = "note"  # allowed: how to read the results


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing sharing means for the drill, pointing at a field of the first channel named."""

    severity: Severity
    rule: str
    channels: tuple[str, ...]  # "131016/chat", …; the first is where ``path`` points
    path: Path
    why_ja: str
    why_en: str

    def why(self, lang: str = "ja") -> str:
        return self.why_ja if lang == "ja" else self.why_en


@dataclass(frozen=True, slots=True)
class Seat:
    """A live channel with where it is: the key people read, the path in the file."""

    municipality: Municipality
    channel: Channel
    path: Path

    @property
    def key(self) -> str:
        return f"{self.municipality.code}/{self.channel.id}"

    def get(self, *names: str) -> Any:
        value: Any = self.channel.settings
        for name in names:
            value = getattr(value, name, None)
            if value is None:
                return None
        return value


def seats(registry: Registry) -> list[Seat]:
    return [
        Seat(m, c, ("municipalities", mi, "channels", ci))
        for mi, m in enumerate(registry.municipalities)
        for ci, c in enumerate(m.channels)
        if not c.simulated
    ]


def same_secret(a: Any, b: Any, reveal: bool) -> bool | None:
    """Do two secret references hold the same value? None: cannot tell (not resolvable)."""
    if not isinstance(a, SecretRef) or not isinstance(b, SecretRef):
        return bool(a == b)
    if a == b:
        return True
    if not reveal:
        return None
    try:
        return a.reveal() == b.reveal()
    except SecretUnresolvable:
        return None


def unlike_secrets(
    group: Sequence[Seat], *field: str, reveal: bool
) -> list[tuple[Seat, Seat, bool | None]]:
    """``(other, first, same)`` for each later seat whose secret at *field* may not be the first's.

    ``same`` is False (they differ) or None (cannot tell: see :func:`same_secret`).
    """
    first = group[0]
    out: list[tuple[Seat, Seat, bool | None]] = []
    for other in group[1:]:
        same = same_secret(first.get(*field), other.get(*field), reveal)
        if same is not True:
            out.append((other, first, same))
    return out


def origin(url: str | None) -> str:
    parts = urlsplit(url or "")
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{parts.port or ''}"


def names(seats: Iterable[Seat]) -> str:
    return ", ".join(f"{s.key}（{s.municipality.name}）" for s in seats)


def names_en(seats: Iterable[Seat]) -> str:
    return ", ".join(s.key for s in seats)


def groups(seats: Iterable[Seat], key: Callable[[Seat], Any]) -> list[list[Seat]]:
    """Seats with the same (not None) key, for keys held by two or more."""
    found: dict[Any, list[Seat]] = defaultdict(list)
    for seat in seats:
        k = key(seat)
        if k is not None:
            found[k].append(seat)
    return [group for group in found.values() if len(group) > 1]


def municipalities(group: list[Seat]) -> int:
    return len({s.municipality.code for s in group})


def recipients(
    seats: Iterable[Seat], fold: Callable[[str], str] = str
) -> list[tuple[str, list[Seat]]]:
    """Each ``to`` entry (as *fold* makes it) used by channels of two or more municipalities."""
    found: dict[str, list[Seat]] = defaultdict(list)
    for seat in seats:
        for value in seat.get("to") or ():
            found[fold(value)].append(seat)
    return [(value, group) for value, group in found.items() if municipalities(group) > 1]


def about(
    severity: Severity, rule: str, group: Sequence[Seat], where: Path, ja: str, en: str, at: int = 0
) -> Finding:
    """A finding naming every channel of *group*, pointing at *where* in ``group[at]``."""
    return Finding(severity, rule, tuple(s.key for s in group), (*group[at].path, *where), ja, en)
