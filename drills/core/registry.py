"""The registry: municipalities, their channels, and each channel's SLO.

Loaded from YAML and validated *completely* before any message leaves; every
problem names the file, the line and the field, in Japanese and English::

    municipalities:
      - code: "131211"            # 全国地方公共団体コード, check digit verified
        name: 足立区
        tags: [23ku]
        slo: {latency: 60s, reachability: 0.99}
        channels:
          - id: chat-main
            kind: webhook          # found through the ``tsunagari.channels`` entry points
            sim: {latency: 300ms}  # a simulated channel (demo, tests)
            url: https://…

>>> check_digit_ok("131211"), check_digit_ok("131212")
(True, False)
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path as FsPath
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from drills.core.errors import Problem, RegistryError
from drills.core.yamlpos import LineMap, dotted, load_with_lines
from probes.base import DEFAULT_MARKER, ChannelSettings, Probe
from probes.settings import Duration, SecretRef, SecretUnresolvable
from probes.sim.base import SimKnobs

__all__ = [
    "SLO",
    "Channel",
    "Municipality",
    "Registry",
    "Target",
    "check_digit_ok",
    "known_kinds",
    "load_kind",
    "load_registry",
]

ENTRY_POINT_GROUP = "tsunagari.channels"
_COMMON_KEYS = {"id", "kind", "sim", "slo", "label", "surge"}


def check_digit_ok(code: str) -> bool:
    """Verify the check digit of a 6-digit 全国地方公共団体コード.

    The sixth digit is ``(11 - (6a + 5b + 4c + 3d + 2e) mod 11) mod 10``.
    """
    if len(code) != 6 or not code.isdigit():
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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SLO(_Strict):
    """Service level objective of a channel: latency and reachability."""

    latency: Duration = 60.0
    reachability: float = Field(default=0.99, gt=0.0, le=1.0)


class SurgeAllowance(_Strict):
    """Permission to put surge load on a *live* channel (rate and duration caps)."""

    rate: float = Field(gt=0)
    duration: Duration


class Defaults(_Strict):
    slo: SLO = SLO()
    marker: str = DEFAULT_MARKER


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


class _MunicipalityModel(_Strict):
    code: str
    name: str = Field(min_length=1)
    name_en: str | None = None
    tags: list[str] = []
    slo: SLO | None = None
    drill_interval: Duration | None = None
    channels: list[dict[str, Any]] = Field(min_length=1)

    @field_validator("code", mode="before")
    @classmethod
    def _code(cls, value: Any) -> str:
        text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
        if not isinstance(text, str) or len(text) != 6 or not text.isdigit():
            raise ValueError('must be the 6-digit 全国地方公共団体コード, quoted, e.g. "131211"')
        if not check_digit_ok(text):
            raise ValueError(f"check digit of {text} is wrong")
        return text


class _RegistryModel(_Strict):
    defaults: Defaults = Defaults()
    municipalities: list[dict[str, Any]] = Field(min_length=1)


@dataclass(frozen=True)
class Registry:
    """A validated registry. Build it with :func:`load_registry`."""

    path: str
    municipalities: tuple[Municipality, ...]
    defaults: Defaults

    @property
    def marker(self) -> str:
        return self.defaults.marker

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
        wanted = list(select)
        kind_set, chan_set = set(kinds), set(channels)
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
        munis = chosen if wanted else list(self.municipalities)
        return [
            Target(m, c)
            for m in munis
            for c in m.channels
            if (not kind_set or c.kind in kind_set) and (not chan_set or c.id in chan_set)
        ]

    def municipality(self, key: str) -> Municipality:
        for m in self.municipalities:
            if key in (m.code, m.name, m.name_en):
                return m
        raise KeyError(key)


# --------------------------------------------------------------------------- loading

_JA = {
    "missing": "必須の項目がありません",
    "extra_forbidden": "未知のキーです（綴りを確認してください）",
    "string_type": "文字列が必要です",
    "float_parsing": "数値が必要です",
    "int_parsing": "整数が必要です",
    "bool_parsing": "true か false が必要です",
    "list_type": "リストが必要です",
    "dict_type": "マッピング（キー: 値）が必要です",
    "model_type": "マッピング（キー: 値）が必要です",
    "too_short": "空にできません",
    "greater_than": "値が小さすぎます",
    "less_than_equal": "値が大きすぎます",
    "greater_than_equal": "値が小さすぎます",
    "literal_error": "許されない値です",
}


def _at(file: str, lines: LineMap, path: tuple[str | int, ...], ja: str, en: str) -> Problem:
    """A problem at *path*: its line from the line map, its dotted field name."""
    return Problem(file, lines.line(path), dotted(path), ja, en)


def _problems_from(
    exc: ValidationError, prefix: tuple[str | int, ...], file: str, lines: LineMap
) -> list[Problem]:
    out = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
        path = (*prefix, *loc)
        msg = str(err["msg"]).removeprefix("Value error, ")
        ja = _JA.get(str(err["type"]), msg)
        if err["type"] == "value_error":
            ja = msg
        elif ja != msg:
            ja = f"{ja}（{msg}）"
        out.append(_at(file, lines, path, ja, msg))
    return out


def _secret_problems(
    model: BaseModel, path: tuple[str | int, ...], file: str, lines: LineMap
) -> list[Problem]:
    out: list[Problem] = []
    for name, value in model:
        here = (*path, name)
        if isinstance(value, SecretRef):
            try:
                value.check()
            except SecretUnresolvable as exc:
                out.append(
                    _at(
                        file,
                        lines,
                        here,
                        f"秘密情報 {value} を解決できません（{exc}）",
                        f"cannot resolve secret {value} ({exc})",
                    )
                )
        elif isinstance(value, BaseModel):
            out.extend(_secret_problems(value, here, file, lines))
    return out


def _load_channel(
    raw: Any,
    path: tuple[str | int, ...],
    muni_slo: SLO,
    file: str,
    lines: LineMap,
    check_secrets: bool,
) -> tuple[Channel | None, list[Problem]]:
    if not isinstance(raw, dict):
        return None, [
            _at(
                file,
                lines,
                path,
                "チャネルはマッピングで書いてください",
                "a channel must be a mapping",
            )
        ]
    problems: list[Problem] = []
    for key in ("id", "kind"):
        if not isinstance(raw.get(key), str) or not raw.get(key):
            problems.append(
                Problem(
                    file,
                    lines.line(path),
                    dotted((*path, key)),
                    "必須の項目がありません",
                    "field required",
                )
            )
    if problems:
        return None, problems
    kind = raw["kind"]
    if kind not in known_kinds():
        known = ", ".join(sorted(known_kinds()))
        return None, [
            _at(
                file,
                lines,
                (*path, "kind"),
                f"未知のチャネル種別 {kind!r}（使える種別: {known}）",
                f"unknown channel kind {kind!r} (known: {known})",
            )
        ]
    try:
        probe_cls = load_kind(kind)
    except Exception as exc:  # a broken plugin must not take the whole registry down
        return None, [
            _at(
                file,
                lines,
                (*path, "kind"),
                f"種別 {kind!r} を読み込めません: {exc}",
                f"channel kind {kind!r} failed to load: {exc}",
            )
        ]
    sim = slo = surge = None
    try:
        sim = SimKnobs.model_validate(raw["sim"]) if raw.get("sim") is not None else None
        if "sim" in raw and raw["sim"] is None:
            sim = SimKnobs()
    except ValidationError as exc:
        problems += _problems_from(exc, (*path, "sim"), file, lines)
    try:
        slo = (
            SLO.model_validate({**muni_slo.model_dump(), **raw["slo"]})
            if raw.get("slo")
            else muni_slo
        )
    except (ValidationError, TypeError) as exc:
        if isinstance(exc, ValidationError):
            problems += _problems_from(exc, (*path, "slo"), file, lines)
        else:
            problems.append(
                _at(
                    file,
                    lines,
                    (*path, "slo"),
                    "マッピングが必要です",
                    "must be a mapping",
                )
            )
    try:
        surge = SurgeAllowance.model_validate(raw["surge"]) if raw.get("surge") else None
    except ValidationError as exc:
        problems += _problems_from(exc, (*path, "surge"), file, lines)
    settings_raw = {k: v for k, v in raw.items() if k not in _COMMON_KEYS}
    is_sim = "sim" in raw
    to_validate = settings_raw
    if is_sim:
        sim_cls = probe_cls.simulator()
        if sim_cls is None:
            problems.append(
                _at(
                    file,
                    lines,
                    (*path, "sim"),
                    f"種別 {kind!r} にはシミュレータがありません",
                    f"kind {kind!r} has no simulator",
                )
            )
        else:
            to_validate = sim_cls.settings_to_validate(settings_raw)
    settings = None
    try:
        settings = probe_cls.Settings.model_validate(to_validate)
    except ValidationError as exc:
        problems += _problems_from(exc, path, file, lines)
    if settings is not None and check_secrets and not is_sim:
        problems += _secret_problems(settings, path, file, lines)
    if problems or settings is None or slo is None:
        return None, problems
    channel = Channel(
        id=raw["id"],
        kind=kind,
        settings=settings,
        raw_settings=settings_raw,
        slo=slo,
        sim=sim,
        label=raw.get("label"),
        surge=surge,
        line=lines.line(path),
    )
    return channel, []


def parse_registry(text: str, file: str = "<registry>", check_secrets: bool = True) -> Registry:
    """Validate registry *text*; raise :class:`RegistryError` listing every problem."""
    data, lines, problems = load_with_lines(text, file)
    if data is None and not problems:
        problems.append(Problem(file, 1, "(top)", "レジストリが空です", "the registry is empty"))
    if problems and data is None:
        raise RegistryError(problems)
    try:
        top = _RegistryModel.model_validate(data)
    except ValidationError as exc:
        raise RegistryError(problems + _problems_from(exc, (), file, lines)) from None
    municipalities: list[Municipality] = []
    codes: dict[str, int] = {}
    for mi, raw_m in enumerate(top.municipalities):
        mpath: tuple[str | int, ...] = ("municipalities", mi)
        try:
            m = _MunicipalityModel.model_validate(raw_m)
        except ValidationError as exc:
            problems += _problems_from(exc, mpath, file, lines)
            # Still check its channels: every problem is reported in one pass.
            raw_channels = raw_m.get("channels") if isinstance(raw_m, dict) else None
            for ci, raw_c in enumerate(raw_channels if isinstance(raw_channels, list) else []):
                problems += _load_channel(
                    raw_c, (*mpath, "channels", ci), top.defaults.slo, file, lines, check_secrets
                )[1]
            continue
        if m.code in codes:
            problems.append(
                _at(
                    file,
                    lines,
                    (*mpath, "code"),
                    f"団体コード {m.code} が重複しています（{codes[m.code]} 行目）",
                    f"duplicate municipality code {m.code} (line {codes[m.code]})",
                )
            )
        codes.setdefault(m.code, lines.line((*mpath, "code")) or 0)
        muni_slo = m.slo or top.defaults.slo
        channels: list[Channel] = []
        ids: dict[str, int] = {}
        for ci, raw_c in enumerate(m.channels):
            cpath = (*mpath, "channels", ci)
            channel, found = _load_channel(raw_c, cpath, muni_slo, file, lines, check_secrets)
            problems += found
            cid = raw_c.get("id") if isinstance(raw_c, dict) else None
            if isinstance(cid, str):
                if cid in ids:
                    problems.append(
                        _at(
                            file,
                            lines,
                            (*cpath, "id"),
                            f"チャネル ID {cid!r} が重複しています（{ids[cid]} 行目）",
                            f"duplicate channel id {cid!r} (line {ids[cid]})",
                        )
                    )
                ids.setdefault(cid, lines.line((*cpath, "id")) or 0)
            if channel is not None:
                channels.append(channel)
        municipalities.append(
            Municipality(
                m.code, m.name, m.name_en, tuple(m.tags), tuple(channels), m.drill_interval
            )
        )
    if problems:
        raise RegistryError(problems)
    return Registry(file, tuple(municipalities), top.defaults)


def load_registry(path: str | FsPath, check_secrets: bool = True) -> Registry:
    """Read and validate the registry at *path*."""
    p = FsPath(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise RegistryError(
            [
                Problem(
                    str(p),
                    None,
                    "(file)",
                    f"レジストリを読めません: {exc.strerror}",
                    f"cannot read registry: {exc.strerror}",
                )
            ]
        ) from None
    return parse_registry(text, str(p), check_secrets)
