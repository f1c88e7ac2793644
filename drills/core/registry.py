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

Limits: a registry file is at most :data:`MAX_REGISTRY_BYTES` (1 MiB,
1,048,576 bytes) of UTF-8; once YAML aliases are expanded it has at most
250,000 nodes, nested at most 64 deep, and no alias inside its own anchor
(:mod:`drills.core.yamlpos`). Durations, latencies and reachability are finite:
``.nan`` and ``.inf`` are refused everywhere, ``0`` where it means nothing (an
SLO latency, a ``drill_interval``, a surge duration).

The drill marker (``defaults.marker``, default ``【訓練】``) must contain ``訓練``
or ``DRILL`` (any case), be one line and at most 32 characters. It leads every
message, so the word that says "this is a drill" is within the first 32
characters — what a phone's lock screen or a mail list shows — and no registry
can make a drill message look like a real alert.

Secrets are checked for the municipalities a run selects, not the others:
:func:`load_registry` with ``check_secrets=False`` validates the structure
(``env:``/``file:`` references are well-formed), then
:meth:`Registry.secret_problems` resolves the selected targets' references.

>>> check_digit_ok("131211"), check_digit_ok("131212")
(True, False)
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path as FsPath
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from drills.core.errors import Problem, RegistryError
from drills.core.placeholders import placeholder_problems
from drills.core.yamlpos import LineMap, dotted, load_with_lines, read_limited, text_problem
from probes.base import DEFAULT_MARKER, ChannelSettings, Probe
from probes.settings import Duration, SecretRef, SecretUnresolvable
from probes.sim.base import SimKnobs

__all__ = [
    "MAX_MARKER_CHARS",
    "MAX_REGISTRY_BYTES",
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
MAX_REGISTRY_BYTES = 1024 * 1024
"""The largest registry file read (1 MiB); all of Japan's 1,741 municipalities fit."""
MAX_MARKER_CHARS = 32
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


class _MunicipalityModel(_Strict):
    code: str
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
        min_length=1, description="チャネル（少なくとも 1 つ） / its channels (at least one)"
    )

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
        out: list[Problem] = []
        for target in chosen:
            if target.channel.simulated:
                continue
            mi = self.municipalities.index(target.municipality)
            ci = target.municipality.channels.index(target.channel)
            path = ("municipalities", mi, "channels", ci)
            out += _secret_problems(target.channel.settings, path, self.path, self.lines)
        return out

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
    "finite_number": "有限の数が必要です（.nan や .inf は使えません）",
}


_BOUNDS = {
    "greater_than": "より大きい値",
    "greater_than_equal": "以上の値",
    "less_than": "より小さい値",
    "less_than_equal": "以下の値",
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
        cause = err.get("ctx", {}).get("error")
        if isinstance(getattr(cause, "ja", None), str) and isinstance(
            getattr(cause, "en", None), str
        ):
            ja, msg = cause.ja, cause.en  # type: ignore[union-attr]
        elif err["type"] == "value_error":
            ja = msg
        elif err["type"] in _BOUNDS and "ctx" in err:
            bound = next(iter(err["ctx"].values()))
            shown = f"{bound:g}" if isinstance(bound, float) else bound
            ja = f"{shown} {_BOUNDS[str(err['type'])]}が必要です（{msg}）"
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
            except UnicodeDecodeError:
                out.append(
                    _at(
                        file,
                        lines,
                        here,
                        f"秘密情報 {value} のファイルが UTF-8 ではありません",
                        f"the file of secret {value} is not UTF-8",
                    )
                )
            except SecretUnresolvable as exc:
                out.append(
                    _at(
                        file,
                        lines,
                        here,
                        f"秘密情報 {value} を解決できません（{exc.ja}）",
                        f"cannot resolve secret {value} ({exc.en})",
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
            try:
                to_validate = sim_cls.settings_to_validate(settings_raw)
            except Exception:  # a simulator's hook tripping on a bad value (``to: 1``):
                # the base rule (placeholders, then the channel's keys) names the field
                to_validate = {**sim_cls.placeholder_settings(), **settings_raw}
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
    refused = text_problem(text, file, MAX_REGISTRY_BYTES)
    if refused is not None:
        raise RegistryError([refused])
    data, lines, problems = load_with_lines(text, file)
    if data is None and not problems:
        problems.append(Problem(file, 1, "(top)", "レジストリが空です", "the registry is empty"))
    if problems and data is None:
        raise RegistryError(problems)
    unfilled = placeholder_problems(data, file, lines)  # a starter's <<…>>: fill these first
    if unfilled:
        raise RegistryError(problems + unfilled)
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
    return Registry(file, tuple(municipalities), top.defaults, lines)


def load_registry(path: str | FsPath, check_secrets: bool = True) -> Registry:
    """Read and validate the registry at *path* (at most 1 MiB of UTF-8).

    ``check_secrets=False`` checks secret references' form only; then check the
    selected targets with :meth:`Registry.check_secrets`.
    """
    text, problems = read_limited(FsPath(path), MAX_REGISTRY_BYTES)
    if text is None:
        raise RegistryError(problems)
    return parse_registry(text, str(path), check_secrets)
