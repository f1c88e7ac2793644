"""YAML in one pass over libyaml's events: the values of an ordinary file, and the limits of any.

:func:`one_pass` builds the values straight from the parser's events (a plain scalar
resolved once per distinct text — ``webhook``, ``longpoll``, ``300ms`` recur thousands
of times) and counts the nodes and the depth as it goes. At the first thing out of the
ordinary — an anchor or alias, a tag, a key that is not a scalar, a duplicate key, a
value YAML cannot build, more than one document, a limit reached — it stops building
and only counts, on the same events, as :func:`limit_problem` counts from the start:
the answer is the same as the limit pass alone would give, for one pass over the text.
A syntax error ends the pass with no answer: the full loader
(:mod:`drills.core.yamlpos`) names it, with its line.

Limits (a file written by people; anything past these is a mistake or an attack, and
is refused with a problem naming the line):

* **Nodes after alias expansion:** at most :data:`MAX_NODES` (1,000,000). Every
  scalar, list and mapping counts, keys included, and an alias ``*a`` counts as
  many nodes as its anchor ``&a`` expands to. This is what stops a "billion
  laughs" (8 levels of 9 aliases, 386 bytes, would be 43 million nodes). A
  registry written out normally has one node per 5 (terse flow style) to 15
  bytes (each channel its own URL and secret files): 10,000 such channels are
  177,000 nodes, and the limit is some 100,000 channels however tersely written.
* **Nesting depth:** at most :data:`MAX_DEPTH` (64) lists and mappings inside
  each other; a registry needs 6.
* **No recursive aliases:** an alias inside the node its anchor names
  (``a: &x [*x]``) would expand forever.

They are judged on the events *before* any node is composed, so a refused file costs
one pass over its text and no memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from drills.core.problem import Problem

__all__ = [
    "MAX_DEPTH",
    "MAX_NODES",
    "Built",
    "Unbuildable",
    "build_scalar",
    "event_loader",
    "limit_problem",
    "one_pass",
    "too_deep",
    "too_many_nodes",
]

MAX_NODES = 1_000_000
"""Most nodes a document may have once every alias is expanded."""

MAX_DEPTH = 64
"""Most lists and mappings nested inside each other."""


def event_loader(text: str) -> Any:
    """A safe loader of *text*: libyaml's when PyYAML has it, else PyYAML's own."""
    loader_cls = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return loader_cls(text)


class Unbuildable(Exception):
    """A scalar PyYAML's safe constructor cannot build (``2001-02-30``, ``=``, ``<<``)."""


def build_scalar(builder: Any, node: yaml.ScalarNode) -> Any:
    """*node*'s value as PyYAML's safe loader builds it (``300ms`` a str, ``0.99`` a float)."""
    try:
        return builder.construct_object(node)
    except Exception:  # whatever the value's constructor raises: the full loader says why
        raise Unbuildable from None


# ------------------------------------------------------------------ the limits


def too_many_nodes(file: str, line: int) -> Problem:
    """More than :data:`MAX_NODES` nodes, counted up to *line*."""
    return Problem(
        file,
        line,
        "(yaml)",
        f"エイリアスを展開すると要素が {MAX_NODES:,} 個を超えます"
        f"（上限 {MAX_NODES:,} 個。エイリアスの入れ子か、ファイルが大きすぎます）",
        f"more than {MAX_NODES:,} nodes once aliases are expanded (the limit is "
        f"{MAX_NODES:,}: nested aliases, or the file is too big)",
    )


def too_deep(file: str, line: int) -> Problem:
    """More than :data:`MAX_DEPTH` lists and mappings inside each other, at *line*."""
    return Problem(
        file,
        line,
        "(yaml)",
        f"入れ子が深すぎます（リストとマッピングは {MAX_DEPTH} 段まで）",
        f"nested too deeply (at most {MAX_DEPTH} levels of lists and mappings)",
    )


def _recursive_alias(file: str, line: int, anchor: str) -> Problem:
    return Problem(
        file,
        line,
        "(yaml)",
        f"エイリアス *{anchor} が自分を含むアンカー &{anchor} を参照しています（無限に展開されます）",
        f"alias *{anchor} refers to the anchor &{anchor} that contains it (it would expand forever)",
    )


def limit_problem(text: str, file: str) -> Problem | None:
    """The first limit *text* breaks, from its events alone (None: none, or a syntax error)."""
    loader = event_loader(text)
    try:
        return _counted(loader.get_event, loader.get_event(), file, 0, 0)
    except yaml.YAMLError:
        return None  # the syntax error is reported by the real load, with its line
    finally:
        loader.dispose()


def _counted(
    get_event: Callable[[], Any], event: Any, file: str, expanded: int, depth: int
) -> Problem | None:
    """The first limit broken from *event* on, *expanded* nodes counted before it, inside
    *depth* open collections with no anchor (how :func:`one_pass` hands over)."""
    sizes: dict[str, int] = {}  # anchor → nodes it expands to (closed collections, scalars)
    stack: list[tuple[str | None, int]] = [(None, 0)] * depth  # open: (anchor, expanded so far)
    while event is not None:
        line = event.start_mark.line + 1
        size = 0
        if isinstance(event, yaml.AliasEvent):
            if any(anchor == event.anchor for anchor, _ in stack):
                return _recursive_alias(file, line, str(event.anchor))
            size = sizes.get(str(event.anchor), 1)  # an unknown anchor: the composer says so
        elif isinstance(event, yaml.ScalarEvent):
            size = 1
            if event.anchor is not None:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.CollectionStartEvent):
            expanded += 1
            stack.append((event.anchor, 1))
            if len(stack) > MAX_DEPTH:
                return too_deep(file, line)
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, size = stack.pop()
            if anchor is not None:
                sizes[anchor] = size
            expanded -= size  # already counted as it grew: only the parent grows now
        expanded += size
        if stack:
            anchor, grown = stack[-1]
            stack[-1] = (anchor, grown + size)
        if expanded > MAX_NODES:
            return too_many_nodes(file, line)
        event = get_event()
    return None


# ------------------------------------------------------------------ the one pass


@dataclass(frozen=True)
class Built:
    """What :func:`one_pass` built of an ordinary file."""

    data: Any
    starts: dict[int, int]
    """First line of each mapping and list of *data*, by ``id`` (valid while *data* lives)."""
    angled: bool
    """Whether any scalar holds ``<<`` (only then can a starter's placeholder be left)."""


_MISSING = object()
_NO_KEY = object()


def one_pass(text: str, file: str) -> Built | Problem | None:
    """*text* built, or the first limit it breaks, or None: within the limits, but for the
    full loader (see the module docstring)."""
    loader = event_loader(text)
    try:
        return _build(loader, file)
    except yaml.YAMLError:
        return None
    finally:
        loader.dispose()


def _build(loader: Any, file: str) -> Built | Problem | None:
    scalar_t, alias_t = yaml.ScalarEvent, yaml.AliasEvent
    map_t, seq_t = yaml.MappingStartEvent, yaml.SequenceStartEvent
    end_t = (yaml.MappingEndEvent, yaml.SequenceEndEvent)
    doc_t = yaml.DocumentStartEvent
    resolved: dict[str, Any] = {}
    # A plain scalar whose first character starts no implicit type (bool, int, float,
    # null, timestamp, merge, value) is a str: ``c1``, ``webhook``, ``足立区`` need no lookup.
    firsts = loader.yaml_implicit_resolvers
    typed = frozenset(k for k in firsts if k) if None not in firsts else None
    starts: dict[int, int] = {}
    # The mappings and lists not closed yet, innermost last: [it, a mapping's key waiting
    # for its value, the mapping's keys as written] (a list's are unused).
    frames: list[list[Any]] = []
    frame: list[Any] | None = None
    root: Any = None
    nodes = docs = 0
    most_nodes, most_deep = MAX_NODES, MAX_DEPTH
    angled = False
    get_event = loader.get_event
    # Each `break` is the unusual: *event* not placed, not counted — the count goes on from it.
    while (event := get_event()) is not None:
        kind = type(event)
        if kind is scalar_t:
            if event.anchor is not None or event.tag is not None:
                break
            raw = event.value
            if not event.implicit[0] or (typed is not None and raw and raw[0] not in typed):
                node = raw
            else:
                node = resolved.get(raw, _MISSING)
                if node is _MISSING:
                    tag = loader.resolve(yaml.ScalarNode, raw, (True, False))
                    try:
                        node = resolved[raw] = build_scalar(loader, yaml.ScalarNode(tag, raw))
                    except Unbuildable:
                        break
            if "<<" in raw:
                angled = True
            opens = False
        elif kind is map_t or kind is seq_t:
            if event.anchor is not None or event.tag is not None or len(frames) == most_deep:
                break
            node = {} if kind is map_t else []
            starts[id(node)] = event.start_mark.line + 1
            opens = True
        elif kind in end_t:
            frames.pop()
            frame = frames[-1] if frames else None
            continue
        elif kind is alias_t:
            break
        else:
            if kind is doc_t:
                docs += 1
                if docs > 1:
                    break
            continue
        if nodes == most_nodes:
            break
        if frame is None:
            root = node
        elif (parent := frame[0]).__class__ is list:
            parent.append(node)
        elif (key := frame[1]) is _NO_KEY:
            if opens or raw in frame[2]:  # a mapping as a key, a duplicate key
                break
            frame[2].add(raw)
            frame[1] = node
        else:
            parent[key] = node
            frame[1] = _NO_KEY
        nodes += 1
        if opens:
            frame = [node, _NO_KEY, set()] if kind is map_t else [node, None, None]
            frames.append(frame)
    else:
        return Built(root, starts, angled)
    return _counted(get_event, event, file, nodes, len(frames))
