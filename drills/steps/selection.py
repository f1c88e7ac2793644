"""Which municipality × channel pairs a step addresses, with mistakes named clearly.

Operators name channels by registry id (``chat``) or by kind (``webhook``,
``mail``, ``twilio``), and municipalities by code, name, English name or tag.
A name that matches nothing is a mistake, with close matches suggested::

    >>> suggest("mial", ["chat", "mail", "sms"])
    'mail'
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

from drills.core.registry import Municipality, Registry, Target, known_kinds
from drills.core.requirements import ScenarioMistake

__all__ = [
    "NothingSelected",
    "channel_names",
    "check_selection",
    "municipalities",
    "resolve_room",
    "suggest",
    "targets",
]


class NothingSelected(Exception):
    """The run's ``--municipality`` selection leaves this step nobody to address."""


def suggest(name: str, choices: Iterable[str]) -> str | None:
    close = difflib.get_close_matches(name, sorted(set(choices)), n=1, cutoff=0.6)
    return close[0] if close else None


def _hint(name: str, choices: Iterable[str]) -> tuple[str, str]:
    guess = suggest(name, choices)
    return (f"（もしかして {guess!r}？）", f" (did you mean {guess!r}?)") if guess else ("", "")


def _matches(m: Municipality, sel: str) -> bool:
    return sel in (m.code, m.name, m.name_en) or sel in m.tags


def _muni_words(registry: Registry) -> list[str]:
    words: list[str] = []
    for m in registry.municipalities:
        words += [m.code, m.name, *(m.tags)] + ([m.name_en] if m.name_en else [])
    return words


def check_selection(registry: Registry, selection: Sequence[str]) -> None:
    """The run's ``--municipality`` selectors must each match something, and every
    municipality they select (all, without selectors) must have its channels filled in
    (``channels: []`` is a registry not finished yet: ``registry init --prefecture 13``)."""
    for sel in selection:
        if not any(_matches(m, sel) for m in registry.municipalities):
            ja, en = _hint(sel, _muni_words(registry))
            raise ScenarioMistake(
                f"--municipality {sel!r} に当たる団体がレジストリ {registry.path} にありません{ja}",
                f"--municipality {sel!r} matches no municipality in the registry {registry.path}{en}",
            )
    unfilled = registry.unfilled(selection)  # ``channels: []``: not filled in yet
    if unfilled:
        shown = ", ".join(f"{m.code} {m.name}" for m in unfilled[:5])
        more = f" … (+{len(unfilled) - 5})" if len(unfilled) > 5 else ""
        raise ScenarioMistake(
            f"チャネルが未記入の団体は訓練できません（{len(unfilled)} 団体: {shown}{more}）。"
            f"レジストリ {registry.path} の channels を記入するか、--municipality で記入済みの団体を選んでください",
            f"{len(unfilled)} municipalities have no channels filled in yet and cannot be "
            f"drilled: {shown}{more}. Fill in their channels in the registry {registry.path}, "
            "or select filled-in ones with --municipality",
        )


def municipalities(
    registry: Registry, selection: Sequence[str], to: str | Sequence[str] | None
) -> list[Municipality]:
    """Municipalities a step addresses: its ``to=`` within the run's selection."""
    universe = [
        m
        for m in registry.municipalities
        if not selection or any(_matches(m, s) for s in selection)
    ]
    if to is None:
        return universe
    wanted = [to] if isinstance(to, str) else list(to)
    if not wanted:
        raise ScenarioMistake("to= が空です", "to= is empty")
    chosen: list[Municipality] = []
    for sel in wanted:
        hits = [m for m in registry.municipalities if _matches(m, str(sel))]
        if not hits:
            ja, en = _hint(str(sel), _muni_words(registry))
            raise ScenarioMistake(
                f"未知の団体 {sel!r}: レジストリ {registry.path} に団体コード・名前・タグが一致する団体がありません{ja}",
                f"unknown municipality {sel!r}: no code, name or tag in the registry {registry.path} matches{en}",
            )
        chosen += [m for m in hits if m not in chosen]
    return [m for m in chosen if m in universe]


def channel_names(registry: Registry, channels: str | Sequence[str] | None) -> list[str] | None:
    """Validated channel names (ids or kinds) in the operator's order; None for "all"."""
    if channels is None:
        return None
    names = [channels] if isinstance(channels, str) else [str(c) for c in channels]
    if not names:
        raise ScenarioMistake(
            "channels= が空です: チャネルのない手順は実行できません",
            "channels= is empty: a step with no channels cannot run",
        )
    ids = {c.id for m in registry.municipalities for c in m.channels}
    kinds = {c.kind for m in registry.municipalities for c in m.channels}
    for name in names:
        if name not in ids and name not in kinds and name not in known_kinds():
            ja, en = _hint(name, ids | kinds)
            raise ScenarioMistake(
                f"未知のチャネル {name!r}（このレジストリのチャネル ID: {', '.join(sorted(ids))}; "
                f"種別: {', '.join(sorted(kinds))}）{ja}",
                f"unknown channel {name!r} (channel ids in this registry: {', '.join(sorted(ids))}; "
                f"kinds: {', '.join(sorted(kinds))}){en}",
            )
    return names


def targets(
    registry: Registry,
    selection: Sequence[str],
    *,
    channels: str | Sequence[str] | None,
    to: str | Sequence[str] | None,
) -> list[Target]:
    """The targets of a step, ordered municipality by municipality, channels in *channels* order."""
    names = channel_names(registry, channels)
    munis = municipalities(registry, selection, to)
    if not munis:
        raise NothingSelected()
    out: list[Target] = []
    for m in munis:
        if names is None:
            out += [Target(m, c) for c in m.channels]
            continue
        for name in names:
            out += [
                Target(m, c)
                for c in m.channels
                if name in (c.id, c.kind) and Target(m, c) not in out
            ]
    if not out:
        shown = ", ".join(names or [])
        raise ScenarioMistake(
            f"この手順の対象チャネルがありません（channels={shown or '全部'}、団体 {len(munis)}）",
            f"this step has no channels to address (channels={shown or 'all'}, {len(munis)} municipalities)",
        )
    return out


def resolve_room(registry: Registry, room: str) -> Target:
    """A shared room given as ``"東京都/chat"`` or ``"130001/chat"`` (municipality/channel id)."""
    muni_sel, sep, channel_id = room.partition("/")
    if not sep or not muni_sel or not channel_id:
        raise ScenarioMistake(
            f'room= は「団体/チャネル ID」で書いてください（例: "東京都/chat"）: {room!r}',
            f'write room= as "municipality/channel id" (e.g. "130001/chat"): {room!r}',
        )
    try:
        muni = registry.municipality(muni_sel)
    except KeyError:
        ja, en = _hint(muni_sel, _muni_words(registry))
        raise ScenarioMistake(
            f"room= の団体 {muni_sel!r} がレジストリにありません{ja}",
            f"the municipality {muni_sel!r} of room= is not in the registry{en}",
        ) from None
    for c in muni.channels:
        if c.id == channel_id:
            return Target(muni, c)
    ja, en = _hint(channel_id, [c.id for c in muni.channels])
    raise ScenarioMistake(
        f"{muni.name} にチャネル {channel_id!r} がありません{ja}",
        f"{muni.name} has no channel {channel_id!r}{en}",
    )
