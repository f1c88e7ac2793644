"""A registry's YAML in one pass over libyaml's events, lines mapped only when asked for.

:func:`drills.core.yamlpos.load_with_lines` checks the limits on one pass of events,
composes the nodes on a second, builds the values on a third and maps every
line on a fourth: 0.3 ms a channel, most of a 10,000-channel registry's load.
:func:`fast_load` does it in one pass for the registries people write: it builds
the values straight from libyaml's events (a plain scalar resolved once per
distinct text — ``webhook``, ``longpoll``, ``300ms`` recur thousands of times),
checks depth and the node count as it goes, and leaves the line map to be made
from the text the first time a problem asks for a line.

Anything out of the ordinary — an anchor or alias, a tag, a key that is not a
scalar, a duplicate key, a value YAML cannot build, a syntax error, too deep,
more than one document, no libyaml — returns None, and the caller loads with
:func:`~drills.core.yamlpos.load_with_lines`, whose checks and problems (file,
line, field, both languages) are the ones every registry gets. Only the node
limit is judged here, at the same event and with the same problem as there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from drills.core.problem import Problem
from drills.core.yamlpos import MAX_DEPTH, MAX_NODES, LineMap, too_many_nodes

__all__ = ["Loaded", "fast_load"]


@dataclass(frozen=True)
class Loaded:
    """What :func:`fast_load` read: the data, its (lazy) lines, and what it found."""

    data: Any
    lines: LineMap
    problems: list[Problem]
    starts: dict[int, int]
    """First line of each mapping and list of *data*, by ``id`` (valid while *data* lives)."""
    angled: bool
    """Whether any scalar holds ``<<`` (only then can a starter's placeholder be left)."""


class _Unusual(Exception):
    """Not the ordinary registry this reader builds: the full loader takes it."""


_MISSING = object()
_NO_KEY = object()


def _plain(value: str, builder: yaml.SafeLoader) -> Any:
    """A plain scalar as PyYAML's safe loader builds it (``300ms`` a str, ``0.99`` a float)."""
    tag = builder.resolve(yaml.ScalarNode, value, (True, False))  # type: ignore[no-untyped-call]
    try:
        return builder.construct_object(yaml.ScalarNode(tag, value))
    except Exception:  # `2001-02-30`, `<<` (a merge), `=`: the full loader names the line
        raise _Unusual from None


def fast_load(text: str, file: str) -> Loaded | None:
    """Read *text* in one pass; None when the full loader must (see the module docstring)."""
    parser_cls = getattr(yaml.cyaml, "CParser", None) if yaml.__with_libyaml__ else None
    if parser_cls is None:
        return None
    parser = parser_cls(text)
    builder = yaml.SafeLoader("")
    try:
        return _build(parser, builder, text, file)
    except (_Unusual, yaml.YAMLError):
        return None
    finally:
        parser.dispose()
        builder.dispose()


def _build(parser: Any, builder: yaml.SafeLoader, text: str, file: str) -> Loaded:
    scalar_t, alias_t = yaml.ScalarEvent, yaml.AliasEvent
    map_t, seq_t = yaml.MappingStartEvent, yaml.SequenceStartEvent
    end_t = (yaml.MappingEndEvent, yaml.SequenceEndEvent)
    doc_t = yaml.DocumentStartEvent
    resolved: dict[str, Any] = {}
    # A plain scalar whose first character starts no implicit type (bool, int, float,
    # null, timestamp, merge, value) is a str: ``c1``, ``webhook``, ``足立区`` need no lookup.
    firsts = builder.yaml_implicit_resolvers
    typed = frozenset(k for k in firsts if k) if None not in firsts else None
    starts: dict[int, int] = {}
    # The mappings and lists not closed yet, innermost last: [it, a mapping's key waiting
    # for its value, the mapping's keys as written] (a list's are unused).
    frames: list[list[Any]] = []
    frame: list[Any] | None = None
    root: Any = None
    nodes = docs = 0
    angled = False
    get_event = parser.get_event
    while (event := get_event()) is not None:
        kind = type(event)
        if kind is scalar_t:
            if event.anchor is not None or event.tag is not None:
                raise _Unusual
            raw = event.value
            if not event.implicit[0] or (typed is not None and raw and raw[0] not in typed):
                node = raw
            else:
                node = resolved.get(raw, _MISSING)
                if node is _MISSING:
                    node = resolved[raw] = _plain(raw, builder)
            if "<<" in raw:
                angled = True
            opens = False
        elif kind is map_t or kind is seq_t:
            if event.anchor is not None or event.tag is not None or len(frames) >= MAX_DEPTH:
                raise _Unusual
            node = {} if kind is map_t else []
            starts[id(node)] = event.start_mark.line + 1
            opens = True
        elif kind in end_t:
            frames.pop()
            frame = frames[-1] if frames else None
            continue
        elif kind is alias_t:
            raise _Unusual
        else:
            if kind is doc_t:
                docs += 1
                if docs > 1:
                    raise _Unusual
            continue
        nodes += 1
        if nodes > MAX_NODES:  # no aliases: every node counts once, as the full loader counts
            return Loaded(
                None, LineMap(), [too_many_nodes(file, event.start_mark.line + 1)], {}, False
            )
        if frame is None:
            root = node
        elif (parent := frame[0]).__class__ is list:
            parent.append(node)
        elif (key := frame[1]) is _NO_KEY:
            if opens or raw in frame[2]:  # a mapping as a key, a duplicate key
                raise _Unusual
            frame[2].add(raw)
            frame[1] = node
        else:
            parent[key] = node
            frame[1] = _NO_KEY
        if opens:
            frame = [node, _NO_KEY, set()] if kind is map_t else [node, None, None]
            frames.append(frame)
    return Loaded(root, LineMap.later(text), [], starts, angled)
