"""What a registry holds: its YAML's models, and the validated types a run addresses.

The pydantic models (:class:`SLO`, :class:`SurgeAllowance`, :class:`Defaults`, the
municipality and the top level) check the YAML; :class:`Registry`,
:class:`Municipality`, :class:`Channel` and :class:`Target` are what loading
(:mod:`drills.core.registry.loader`) builds from them. Channel kinds come from the
``tsunagari.channels`` entry points.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

from drills.core.errors import RegistryError
from drills.core.problem import Problem
from drills.core.registry.problems import secret_ref_problems
from drills.core.yamlpos import LineMap
from probes.base import DEFAULT_MARKER, ChannelSettings, Probe
from probes.settings import Duration
from probes.sim.base import SimKnobs

__all__ = [
    "ENTRY_POINT_GROUP",
    "MAX_MARKER_CHARS",
    "SLO",
    "Channel",
    "Defaults",
    "Municipality",
    "Registry",
    "SurgeAllowance",
    "Target",
    "check_digit_ok",
    "known_kinds",
    "load_kind",
]

ENTRY_POINT_GROUP = "tsunagari.channels"
MAX_MARKER_CHARS = 32


def check_digit_ok(code: str) -> bool:
    """Verify the check digit of a 6-digit 全国地方公共団体コード.

    The sixth digit is ``(11 - (6a + 5b + 4c + 3d + 2e) mod 11) mod 10``.
    """
    if len(code) != 6 or not (code.isascii() and code.isdigit()):  # not ０-９ nor ٠-٩
        return False
    weights = (6, 5, 4, 3, 2)
    total = sum(int(d) * w for d, w in zip(code[:5], weights, strict=True))
    return (11 - total % 11) % 10 == int(code[5])


@functools.cache
def known_kinds() -> dict[str, Any]:
    """Channel kinds registered through the ``tsunagari.channels`` entry-point group."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


@functools.cache
def load_kind(kind: str) -> type[Probe]:
    """The probe class of *kind* (KeyError if unknown, ImportError if broken)."""
    cls = known_kinds()[kind].load()
    if not (isinstance(cls, type) and issubclass(cls, Probe)):
        raise ImportError(f"entry point {kind!r} is not a Probe subclass")
    return cls


class _Why(ValueError):
    """A validator's reason in both languages (``str`` is English)."""

    def __init__(self, ja: str, en: str) -> None:
        super().__init__(en)
        self.ja = ja
        self.en = en


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SLO(_Strict):
    """Service level objective of a channel: latency (finite, > 0) and reachability."""

    latency: Duration = Field(
        default=60.0,
        gt=0.0,
        description="この時間内に届けば「遅延なし」 / delivered within this is on time",
    )
    reachability: float = Field(
        default=0.99,
        gt=0.0,
        le=1.0,
        description="届くべき割合（0 より大きく 1 以下） / the share that must arrive (above 0, at most 1)",
    )


class SurgeAllowance(_Strict):
    """Permission to put surge load on a *live* channel (rate and duration caps)."""

    rate: float = Field(
        gt=0, description="負荷の上限（通/秒） / the highest load (messages per second)"
    )
    duration: Duration = Field(gt=0.0, description="負荷をかける時間の上限 / the longest surge")


class Defaults(_Strict):
    slo: SLO = Field(
        default=SLO(), description="全チャネルの既定の SLO / every channel's default SLO"
    )
    marker: str = Field(
        default=DEFAULT_MARKER,
        description="訓練メッセージの先頭に付く印 / the mark at the start of every drill message",
    )

    @field_validator("marker")
    @classmethod
    def _marker(cls, value: str) -> str:
        """訓練 or DRILL, one line, at most 32 characters (see the module docstring)."""
        if "訓練" not in value and "drill" not in value.casefold():
            raise _Why(
                f"訓練マーカー {value[:40]!r} には「訓練」か「DRILL」を含めてください"
                "（本物の警報と取り違えられないように）",
                f"the drill marker {value[:40]!r} must contain 訓練 or DRILL "
                "(so no one takes a drill for a real alert)",
            )
        if len(value) > MAX_MARKER_CHARS or not value.isprintable():
            raise _Why(
                f"訓練マーカーは改行・制御文字なしの {MAX_MARKER_CHARS} 文字以内です"
                "（通知のプレビューに収まるように）",
                f"the drill marker must be one line of at most {MAX_MARKER_CHARS} characters "
                "(so a phone's preview shows it)",
            )
        return value


@dataclass(frozen=True)
class Channel:
    """One registered channel of a municipality, with validated settings."""

    id: str
    kind: str
    settings: ChannelSettings
    raw_settings: dict[str, Any]
    slo: SLO
    sim: SimKnobs | None = None
    label: str | None = None
    surge: SurgeAllowance | None = None
    line: int | None = None

    @property
    def simulated(self) -> bool:
        return self.sim is not None

    def probe_class(self) -> type[Probe]:
        return load_kind(self.kind)


@dataclass(frozen=True)
class Municipality:
    code: str
    name: str
    name_en: str | None
    tags: tuple[str, ...]
    channels: tuple[Channel, ...]
    drill_interval_s: float | None = None


@dataclass(frozen=True)
class Target:
    """A municipality × channel pair: what a step addresses."""

    municipality: Municipality
    channel: Channel

    @property
    def key(self) -> str:
        return f"{self.municipality.code}/{self.channel.id}"


CODE_JSON_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "pattern": "^[0-9]{6}$"},
        {"type": "integer", "minimum": 100000, "maximum": 999999},
    ],
    "description": "6 桁の全国地方公共団体コード（検査数字つき）。引用符で囲むのが確実（0 で始まる"
    "コードは引用符が必要） / the 6-digit local government code with its check digit; "
    'quote it ("131211"): a code starting with 0 must be quoted',
}
"""``code`` as the loader takes it: 6 digits, quoted or (from 100000) a bare YAML number."""


class _MunicipalityModel(_Strict):
    code: Annotated[str, WithJsonSchema(CODE_JSON_SCHEMA)]
    name: str = Field(min_length=1, description="団体名 / the municipality's name")
    name_en: str | None = Field(default=None, description="英語名 / its English name")
    tags: list[str] = Field(
        default=[], description="選択用のタグ（例: 23ku） / tags for selecting (e.g. 23ku)"
    )
    slo: SLO | None = Field(
        default=None,
        description="この団体のチャネルの SLO（defaults を上書き） / the SLO of this municipality's channels (overrides defaults)",
    )
    drill_interval: Duration | None = Field(
        default=None,
        gt=0.0,
        description="定期訓練の間隔（例: 7d） / how often it is drilled (e.g. 7d)",
    )
    channels: list[dict[str, Any]] = Field(
        description="チャネル。空のリスト（channels: []）は「未記入」: registry check は警告し、"
        "run はその団体を選ぶと拒否する / its channels; an empty list (channels: []) is "
        "*not filled in yet*: registry check warns, run refuses to drill it"
    )

    @field_validator("code", mode="before")
    @classmethod
    def _code(cls, value: Any) -> str:
        # a bare number is read as YAML reads it (131211; 011002 would be octal 4610)
        text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
        if not isinstance(text, str) or len(text) != 6 or not (text.isascii() and text.isdigit()):
            raise _Why(
                '6 桁の全国地方公共団体コードを引用符で囲んで書いてください（例: "131211"）',
                'must be the 6-digit 全国地方公共団体コード, quoted, e.g. "131211"',
            )
        if not check_digit_ok(text):
            raise _Why(
                f"団体コード {text} の検査数字（6 桁目）が違います",
                f"check digit of {text} is wrong",
            )
        return text


class _RegistryModel(_Strict):
    defaults: Defaults = Field(
        default=Defaults(),
        description="全体の既定値（SLO、訓練メッセージの印） / defaults for everything (SLO, the drill marker)",
    )
    municipalities: list[dict[str, Any]] = Field(
        min_length=1,
        description="訓練の対象となる団体（少なくとも 1 つ） / the municipalities drilled (at least one)",
    )


@dataclass(frozen=True)
class Registry:
    """A validated registry. Build it with :func:`load_registry`."""

    path: str
    municipalities: tuple[Municipality, ...]
    defaults: Defaults
    lines: LineMap = field(default_factory=LineMap, repr=False, compare=False)

    @property
    def marker(self) -> str:
        return self.defaults.marker

    def secret_problems(self, targets: Iterable[Target] | None = None) -> list[Problem]:
        """Secret references of *targets* (default: every channel) that do not resolve now.

        Simulated channels have no secrets to resolve. Use it after loading with
        ``check_secrets=False`` and selecting: an unset ``env:`` variable of a
        municipality the run does not drill is none of its business.
        """
        chosen = (
            [Target(m, c) for m in self.municipalities for c in m.channels]
            if targets is None
            else list(targets)
        )
        where = {  # by identity: one dict, not a search of every municipality per target
            id(c): ("municipalities", mi, "channels", ci)
            for mi, m in enumerate(self.municipalities)
            for ci, c in enumerate(m.channels)
        }
        out: list[Problem] = []
        for target in chosen:
            if target.channel.simulated:
                continue
            path = where.get(id(target.channel)) or self._path_of(target)
            out += secret_ref_problems(target.channel.settings, path, self.path, self.lines)
        return out

    def _path_of(self, target: Target) -> tuple[str | int, ...]:
        """Where an equal (not the same) channel is: a target built from a copy."""
        mi = self.municipalities.index(target.municipality)
        ci = target.municipality.channels.index(target.channel)
        return ("municipalities", mi, "channels", ci)

    def check_secrets(self, targets: Iterable[Target] | None = None) -> None:
        """Raise :class:`RegistryError` if a secret of *targets* does not resolve."""
        problems = self.secret_problems(targets)
        if problems:
            raise RegistryError(problems)

    def targets(
        self,
        select: Iterable[str] = (),
        kinds: Iterable[str] = (),
        channels: Iterable[str] = (),
    ) -> list[Target]:
        """Targets filtered by municipality code, name or tag, channel kind and id.

        An empty filter selects everything. Raises KeyError for a selector that
        matches no municipality (a typo must not silently select nothing).
        """
        kind_set, chan_set = set(kinds), set(channels)
        munis = self.selected(select)
        return [
            Target(m, c)
            for m in munis
            for c in m.channels
            if (not kind_set or c.kind in kind_set) and (not chan_set or c.id in chan_set)
        ]

    def unfilled(self, select: Iterable[str] = ()) -> list[Municipality]:
        """Municipalities of *select* (default: all) whose channels are not filled in yet.

        A registry may list a municipality with ``channels: []`` (the all-Tokyo starter,
        ``tsunagari registry init --prefecture 13``, lists all 63 so): ``registry check``
        accepts it with a warning, a run that selects it is refused. Raises KeyError as
        :meth:`targets` does.
        """
        return [m for m in self.selected(select) if not m.channels]

    def selected(self, select: Iterable[str] = ()) -> list[Municipality]:
        """Municipalities matching any of *select* by code, name or tag (empty: all).

        Raises KeyError for a selector that matches no municipality (a typo must not
        silently select nothing).
        """
        wanted = list(select)
        chosen: list[Municipality] = []
        for sel in wanted:
            hits = [
                m
                for m in self.municipalities
                if sel in (m.code, m.name, m.name_en) or sel in m.tags
            ]
            if not hits:
                raise KeyError(sel)
            chosen.extend(m for m in hits if m not in chosen)
        return chosen if wanted else list(self.municipalities)

    def municipality(self, key: str) -> Municipality:
        for m in self.municipalities:
            if key in (m.code, m.name, m.name_en):
                return m
        raise KeyError(key)
