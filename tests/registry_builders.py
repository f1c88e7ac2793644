"""Hypothesis builders of registry-shaped data, for more than one test folder.

:func:`yaml_trees` — trees of scalars in lists and mappings; :func:`demo_mutants` — the
demo registry with a few structure-aware edits; :func:`demo_line_edits` — the demo
registry's text with a few lines edited (anchors, tags, merges, broken indentation).
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import yaml
from hypothesis import strategies as st

from drills.operator.demo import demo_registry_path

__all__ = ["demo_line_edits", "demo_mutants", "demo_text", "yaml_trees"]


def yaml_trees(
    scalars: st.SearchStrategy[Any], *, key_size: int, max_leaves: int
) -> st.SearchStrategy[Any]:
    """Trees of *scalars* in lists and mappings of up to 4 items (keys up to *key_size*
    characters), up to *max_leaves* leaves: what ``yaml.safe_dump`` can write."""
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(st.text(max_size=key_size), inner, max_size=4),
        ),
        max_leaves=max_leaves,
    )


@functools.cache
def demo_text() -> str:
    """The demo registry's YAML text."""
    return demo_registry_path().read_text(encoding="utf-8")


@functools.cache
def _demo() -> Any:
    return yaml.safe_load(demo_text())


# Values a registry's fields might be given by mistake: bounds, durations, kinds, secrets.
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([10**400, -(10**400), 0, -1, 2**63]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "0", "0s", "-1s", "1e400", "1" + "0" * 400 + "s", "nan", ".inf",
                     "500ms", "60s", "2m", "1h", "30d", "36501d", "lognormal", "uniform",
                     "fixed", "auth", "webhook", "mail", "twilio", "matrix", "env:X", "file:/",
                     "env:", "131211", "131212", "2001-02-30", "【訓練】", "DRILL", "~", "*a"]),
    st.text(max_size=30),
)  # fmt: skip
_KEYS = sorted(
    {"code", "name", "name_en", "tags", "slo", "latency", "reachability", "channels", "id",
     "kind", "sim", "loss", "outage", "rate_limit", "capacity", "reject", "dist", "low",
     "high", "median", "sigma", "value", "to", "url", "label", "surge", "rate", "duration",
     "defaults", "marker", "municipalities", "drill_interval", "status_callback", "auth"}
)  # fmt: skip


def _paths(node: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [here]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*here, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*here, i))
    return out


def demo_mutants() -> st.SearchStrategy[Any]:
    """The demo registry's data with 1–4 edits: a value replaced, a key dropped or renamed,
    an item duplicated or a container emptied."""
    demo = _demo()
    where = _paths(demo)[1:]
    values = yaml_trees(_SCALARS, key_size=8, max_leaves=12)

    @st.composite
    def mutants(draw: st.DrawFn) -> Any:
        data = copy.deepcopy(demo)
        for _ in range(draw(st.integers(1, 4))):
            path = draw(st.sampled_from(where))
            parent: Any = data
            try:
                for part in path[:-1]:
                    parent = parent[part]
                last = path[-1]
                parent[last]
            except (KeyError, IndexError, TypeError):
                continue
            op = draw(st.sampled_from(["replace", "drop", "rename", "duplicate", "empty"]))
            if op == "replace":
                parent[last] = draw(values)
            elif op == "drop":
                del parent[last]
            elif op == "rename" and isinstance(parent, dict):
                parent[draw(st.sampled_from(_KEYS) | st.text(max_size=8))] = parent.pop(last)
            elif op == "duplicate" and isinstance(parent, list):
                parent.append(copy.deepcopy(parent[last]))
            elif op == "empty":
                was = parent[last]
                parent[last] = type(was)() if isinstance(was, list | dict) else None
        return data

    return mutants()


# What a person might type over a line's value: the YAML a dumper never writes included.
_LINE_VALUES = [
    "1", "-1", "x", "[]", "{}", "[1, 2]", "{a: 1}", "~", "300ms", "0", ".nan", "webhook",
    "nope", '"131211"', "131212", "&a 1", "*a", "!!str 3", "<<x.y>>", "2001-02-30", "'q'",
    "yes", "- a", "a: b", "{id: c, kind: webhook}", "file:/nonexist", "env:NOPE_X", "=",
    "<<: {a: 1}", "&b {id: c2, kind: webhook}", "*b", "{", "'", "\t1",
]  # fmt: skip


def demo_line_edits() -> st.SearchStrategy[str]:
    """The demo registry's text with 1–4 line edits: a line deleted, copied elsewhere,
    its value replaced (or something appended), or cut short."""
    base = demo_text().splitlines()

    @st.composite
    def edited(draw: st.DrawFn) -> str:
        lines = list(base)
        for _ in range(draw(st.integers(1, 4))):
            if not lines:
                break
            at = draw(st.integers(0, len(lines) - 1))
            op = draw(st.sampled_from(["delete", "copy", "value", "value", "cut"]))
            if op == "delete":
                del lines[at]
            elif op == "copy":
                lines.insert(at, lines[draw(st.integers(0, len(lines) - 1))])
            elif op == "value":
                line, value = lines[at], draw(st.sampled_from(_LINE_VALUES))
                key, colon, _ = line.partition(":")
                lines[at] = f"{key}: {value}" if colon else f"{line} {value}"
            else:
                lines[at] = lines[at][: draw(st.integers(0, len(lines[at])))]
        return "\n".join(lines) + "\n"

    return edited()
