"""Loading a registry: read the file, validate all of it, report every problem at once.

A registry is read whole (at most :data:`MAX_REGISTRY_BYTES`), its YAML parsed with
lines (:mod:`drills.core.yamlpos`), its starter placeholders refused, then every
municipality and channel validated — a broken one does not stop the others from
being checked, so one pass names every problem.
"""

from __future__ import annotations

from pathlib import Path as FsPath
from typing import Any

from pydantic import ValidationError

from drills.core.errors import Problem, RegistryError
from drills.core.placeholders import placeholder_problems
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
from drills.core.yamlpos import LineMap, dotted, load_with_lines, read_limited, text_problem
from probes.sim.base import SimKnobs

__all__ = ["MAX_REGISTRY_BYTES", "load_registry", "parse_registry"]

MAX_REGISTRY_BYTES = 1024 * 1024
"""The largest registry file read (1 MiB); all of Japan's 1,741 municipalities fit."""
_COMMON_KEYS = {"id", "kind", "sim", "slo", "label", "surge"}


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
        raise RegistryError(problems + validation_problems(exc, (), file, lines)) from None
    municipalities: list[Municipality] = []
    codes: dict[str, int] = {}
    for mi, raw_m in enumerate(top.municipalities):
        mpath: tuple[str | int, ...] = ("municipalities", mi)
        try:
            m = _MunicipalityModel.model_validate(raw_m)
        except ValidationError as exc:
            problems += validation_problems(exc, mpath, file, lines)
            # Still check its channels: every problem is reported in one pass.
            raw_channels = raw_m.get("channels") if isinstance(raw_m, dict) else None
            for ci, raw_c in enumerate(raw_channels if isinstance(raw_channels, list) else []):
                problems += _load_channel(
                    raw_c, (*mpath, "channels", ci), top.defaults.slo, file, lines, check_secrets
                )[1]
            continue
        if m.code in codes:
            problems.append(
                problem_at(
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
                        problem_at(
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
