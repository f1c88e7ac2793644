"""Loading a registry: read the file, validate all of it, report every problem at once.

A registry is read whole (at most :data:`MAX_REGISTRY_BYTES`), its YAML parsed by
:func:`drills.core.yamlpos.read_yaml` (in one pass of libyaml's events; anything unusual
in full, with lines), its starter placeholders refused, then every
municipality and channel validated — a broken one does not stop the others from
being checked, so one pass names every problem, up to :data:`MAX_PROBLEMS`.
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path as FsPath
from typing import Any

from pydantic import Field, TypeAdapter, ValidationError

from drills.core.errors import RegistryError
from drills.core.placeholders import placeholder_problems
from drills.core.problem import Problem
from drills.core.registry.model import (
    SLO,
    Channel,
    Municipality,
    Registry,
    SurgeAllowance,
    _MunicipalityModel,
    _RegistryModel,
    known_kinds,
    load_kind,
)
from drills.core.registry.problems import problem_at, secret_ref_problems, validation_problems
from drills.core.yamlpos import LineMap, dotted, read_limited, read_yaml, text_problem
from probes.sim.base import SimKnobs

__all__ = ["MAX_PROBLEMS", "MAX_REGISTRY_BYTES", "load_registry", "parse_registry"]

MAX_REGISTRY_BYTES = 8 * 1024 * 1024
"""The largest registry file read (8 MiB): ~30,000 channels each with its own URL and two
secret files (~270 bytes a channel), or all 1,741 municipalities of Japan with 17 such
channels each. A 10,000-channel registry (~2.6 MB) loads in about half a second."""

MAX_PROBLEMS = 1_000
"""Problems a registry check collects before it stops: a file with more is mangled, and
its first ones are what to fix (:data:`drills.core.errors.SHOWN_PROBLEMS` are printed)."""
_COMMON_KEYS = {"id", "kind", "sim", "slo", "label", "surge"}


def _load_channel(
    raw: Any,
    path: tuple[str | int, ...],
    muni_slo: SLO,
    file: str,
    lines: LineMap,
    check_secrets: bool,
    line: int | None = None,
) -> tuple[Channel | None, list[Problem]]:
    if not isinstance(raw, dict):
        return None, [
            problem_at(
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
            problem_at(
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
            problem_at(
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
        problems += validation_problems(exc, (*path, "sim"), file, lines)
    try:
        slo = (
            SLO.model_validate({**muni_slo.model_dump(), **raw["slo"]})
            if raw.get("slo")
            else muni_slo
        )
    except (ValidationError, TypeError) as exc:
        if isinstance(exc, ValidationError):
            problems += validation_problems(exc, (*path, "slo"), file, lines)
        else:
            problems.append(
                problem_at(
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
        problems += validation_problems(exc, (*path, "surge"), file, lines)
    settings_raw = {k: v for k, v in raw.items() if k not in _COMMON_KEYS}
    is_sim = "sim" in raw
    to_validate = settings_raw
    if is_sim:
        sim_cls = probe_cls.simulator()
        if sim_cls is None:
            problems.append(
                problem_at(
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
        problems += validation_problems(exc, path, file, lines)
    if settings is not None and check_secrets and not is_sim:
        problems += secret_ref_problems(settings, path, file, lines)
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
        line=line or lines.line(path),
    )
    return channel, []


@contextmanager
def _collector_held() -> Iterator[None]:
    """The cyclic garbage collector off while a registry is built, as it was after.

    Reading a registry allocates dozens of containers per channel, nearly all of which
    live on as the registry: a collection meanwhile frees next to nothing yet walks
    what is alive (a full one, at start-up, every imported module too), and the
    allocations set collections off all along — a quarter of a 1,000-channel load.
    Held off, what a load allocates is bounded by the file's size limit; plain
    reference counting still frees as usual.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def parse_registry(text: str, file: str = "<registry>", check_secrets: bool = True) -> Registry:
    """Validate registry *text*; raise :class:`RegistryError` listing every problem."""
    with _collector_held():
        return _parse(text, file, check_secrets)


def _parse(text: str, file: str, check_secrets: bool) -> Registry:
    refused = text_problem(text, file, MAX_REGISTRY_BYTES)
    if refused is not None:
        raise RegistryError([refused])
    loaded = read_yaml(text, file)
    data, lines, problems, starts = loaded.data, loaded.lines, loaded.problems, loaded.starts
    if data is None and not problems:
        problems.append(Problem(file, 1, "(top)", "レジストリが空です", "the registry is empty"))
    if problems and data is None:
        raise RegistryError(problems)
    # a starter's <<…>>: fill these first (none can be left where no scalar holds "<<")
    unfilled = placeholder_problems(data, file, lines) if loaded.angled else []
    if unfilled:
        raise RegistryError(_capped(problems + unfilled))
    try:
        # not a mapping: the schema's own model says so, by its own name
        model = _Top if isinstance(data, dict) else _RegistryModel
        top: _RegistryModel | None = model.model_validate(data)
        top_problems = []
    except ValidationError as exc:
        top, top_problems = None, validation_problems(exc, (), file, lines)
    raw_munis = data.get("municipalities") if isinstance(data, dict) else None
    munis, item_problems = _mappings(raw_munis, ("municipalities",), file, lines)
    if top is None or item_problems:
        raise RegistryError(_capped(problems + top_problems + item_problems))
    municipalities: list[Municipality] = []
    codes: dict[str, int] = {}  # code → index of its first municipality
    for mi, raw_m in enumerate(munis):
        if len(problems) >= MAX_PROBLEMS:
            break
        mpath: tuple[str | int, ...] = ("municipalities", mi)
        raw_channels = raw_m.get("channels")
        raw_channels = raw_channels if isinstance(raw_channels, list) else []
        try:
            m: _Muni | None = _Muni.model_validate(raw_m)
            muni_problems = []
        except ValidationError as exc:
            m, muni_problems = None, validation_problems(exc, mpath, file, lines)
        chans, chan_problems = _mappings(raw_channels, (*mpath, "channels"), file, lines)
        if m is None or chan_problems:
            problems += muni_problems + chan_problems
            # Still check its channels: every problem is reported in one pass.
            for ci, raw_c in enumerate(raw_channels):
                if len(problems) >= MAX_PROBLEMS:
                    break
                cpath = (*mpath, "channels", ci)
                problems += _load_channel(
                    raw_c, cpath, top.defaults.slo, file, lines, check_secrets
                )[1]
            continue
        if m.code in codes:
            first = lines.line(("municipalities", codes[m.code], "code")) or 0
            problems.append(
                problem_at(
                    file,
                    lines,
                    (*mpath, "code"),
                    f"団体コード {m.code} が重複しています（{first} 行目）",
                    f"duplicate municipality code {m.code} (line {first})",
                )
            )
        codes.setdefault(m.code, mi)
        muni_slo = m.slo or top.defaults.slo
        channels: list[Channel] = []
        ids: dict[str, int] = {}  # channel id → index of its first channel
        for ci, raw_c in enumerate(chans):
            if len(problems) >= MAX_PROBLEMS:
                break
            cpath = (*mpath, "channels", ci)
            line = starts.get(id(raw_channels[ci]))  # as read: the validated dicts are copies
            channel, found = _load_channel(raw_c, cpath, muni_slo, file, lines, check_secrets, line)
            problems += found
            cid = raw_c.get("id")
            if isinstance(cid, str):
                if cid in ids:
                    first = lines.line((*mpath, "channels", ids[cid], "id")) or 0
                    problems.append(
                        problem_at(
                            file,
                            lines,
                            (*cpath, "id"),
                            f"チャネル ID {cid!r} が重複しています（{first} 行目）",
                            f"duplicate channel id {cid!r} (line {first})",
                        )
                    )
                ids.setdefault(cid, ci)
            if channel is not None:
                channels.append(channel)
        municipalities.append(
            Municipality(
                m.code, m.name, m.name_en, tuple(m.tags), tuple(channels), m.drill_interval
            )
        )
    if problems:
        raise RegistryError(_capped(problems))
    return Registry(file, tuple(municipalities), top.defaults, lines)


class _Top(_RegistryModel):
    """The top level with its municipalities' items left to :func:`_mappings`."""

    municipalities: list[Any] = Field(min_length=1)


class _Muni(_MunicipalityModel):
    """A municipality with its channels' items left to :func:`_mappings`."""

    channels: list[Any]


@functools.cache
def _mapping() -> TypeAdapter[dict[str, Any]]:
    return TypeAdapter(dict[str, Any])


def _mappings(
    items: Any, path: tuple[str | int, ...], file: str, lines: LineMap
) -> tuple[list[dict[str, Any]], list[Problem]]:
    """*items* (a list, else nothing to do) checked one by one as mappings with str keys.

    What ``list[dict[str, Any]]`` checks, item by item, so that a list of a million
    wrong items costs :data:`MAX_PROBLEMS` problems, not a million.
    """
    if not isinstance(items, list):
        return [], []
    as_mapping = _mapping().validate_python
    good: list[dict[str, Any]] = []
    problems: list[Problem] = []
    for i, item in enumerate(items):
        try:
            good.append(as_mapping(item))
        except ValidationError as exc:
            problems += validation_problems(exc, (*path, i), file, lines)
            if len(problems) >= MAX_PROBLEMS:
                break
    return good, problems


def _capped(problems: list[Problem]) -> list[Problem]:
    """*problems*, or the first :data:`MAX_PROBLEMS` after one saying checking stopped."""
    if len(problems) < MAX_PROBLEMS:
        return problems
    file = problems[0].file
    stopped = Problem(
        file,
        None,
        "(file)",
        f"問題が {MAX_PROBLEMS:,} 件に達したので確認を打ち切りました（最初の {MAX_PROBLEMS:,} "
        "件を示します）。ファイルを確認してください",
        f"{MAX_PROBLEMS:,} problems found: checking stopped there (the first {MAX_PROBLEMS:,} "
        "are listed). Check the file",
    )
    return [stopped, *problems[:MAX_PROBLEMS]]


def load_registry(path: str | FsPath, check_secrets: bool = True) -> Registry:
    """Read and validate the registry at *path* (at most 8 MiB of UTF-8).

    ``check_secrets=False`` checks secret references' form only; then check the
    selected targets with :meth:`Registry.check_secrets`.
    """
    text, problems = read_limited(FsPath(path), MAX_REGISTRY_BYTES)
    if text is None:
        raise RegistryError(problems)
    return parse_registry(text, str(path), check_secrets)
