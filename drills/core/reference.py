"""The registry reference (``docs/registry.md``), rendered from the registry's JSON Schema.

One reader per fact: every key, type, default, allowed value and explanation
comes from :func:`drills.core.schema.registry_schema` (itself generated from the
pydantic models); the live example of each kind is the ``Registry example::``
block of the kind's module docstring. Japanese first, then English::

    tsunagari registry docs -o docs/registry.md

>>> type_text({"enum": ["tls", "plain"]}, {})
('`tls` | `plain`', None)
"""

from __future__ import annotations

import inspect
import json
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from drills.core.registry import known_kinds, load_kind
from drills.core.schema import registry_schema, sim_optional

__all__ = [
    "DOCS_FILE",
    "Key",
    "KindDoc",
    "Table",
    "kind_example",
    "reference_text",
    "type_text",
]

DOCS_FILE = Path("docs") / "registry.md"
_REF = "#/$defs/"
# Shared tables, documented once (in this order) and linked from wherever they are used.
_SHARED = ("Municipality", "Defaults", "SLO", "SurgeAllowance", "SimKnobs", "LatencySpec")
_COMMON_KEYS = ("id", "kind", "label", "slo", "surge", "sim")


@dataclass(frozen=True)
class Key:
    """One row of a reference table."""

    name: str
    type: str
    default: str
    required: str
    ja: str
    en: str


@dataclass
class Table:
    """The keys of one mapping (a def of the schema)."""

    anchor: str
    title: str
    keys: list[Key]
    ja: str = ""
    en: str = ""


@dataclass
class KindDoc:
    """Everything the reference says about one channel kind."""

    kind: str
    summary_ja: str  # one line each, from the probe's ``summary`` (through the schema)
    summary_en: str
    tables: list[Table] = field(default_factory=list)
    sim_optional: list[str] = field(default_factory=list)
    example: str = ""


def _split(text: str) -> tuple[str, str]:
    ja, sep, en = text.partition(" / ")
    return (ja, en) if sep else ("", text)


def _name(ref: str) -> str:
    return ref.removeprefix(_REF)


def _anchor(name: str) -> str:
    return "def-" + name.lower().replace(".", "-").replace("_", "-")


def type_text(node: dict[str, Any], defs: dict[str, Any]) -> tuple[str, str | None]:
    """How a schema node reads in the reference, and the def it points into (if a mapping)."""
    if "$ref" in node:
        name = _name(node["$ref"])
        if name == "Duration":
            return "[duration](#duration)", None
        if name == "SecretRef":
            return "**[secret](#secret)** (`env:`/`file:`)", None
        return f"[mapping](#{_anchor(name)})", name
    if "anyOf" in node:
        parts = [type_text(n, defs) for n in node["anyOf"] if n.get("type") != "null"]
        inner = next((p[1] for p in parts if p[1]), None)
        return " or ".join(p[0] for p in parts), inner
    if "enum" in node:
        return " | ".join(f"`{v}`" for v in node["enum"]), None
    if "const" in node:
        return f"`{node['const']}`", None
    kind = node.get("type", "any")
    if kind == "array":
        text, inner = type_text(node.get("items", {}), defs)
        extra = f", ≥ {node['minItems']}" if "minItems" in node else ""
        return f"list of {text}{extra}", inner
    bounds = []
    for key, sign in (
        ("minimum", "≥"),
        ("exclusiveMinimum", ">"),
        ("maximum", "≤"),
        ("exclusiveMaximum", "<"),
    ):
        if key in node:
            bounds.append(f"{sign} {node[key]}")
    if "minLength" in node:
        bounds.append("not empty")
    if "pattern" in node:
        bounds.append(f"pattern `{node['pattern']}`")
    return kind + (f" ({', '.join(bounds)})" if bounds else ""), None


def _default(node: dict[str, Any]) -> str:
    if "default" not in node:
        return ""
    value = node["default"]
    branches = [node, *node.get("anyOf", [])]
    is_duration = any(b.get("$ref") == _REF + "Duration" for b in branches)
    if is_duration and isinstance(value, int | float):
        return f"`{value:g}s`"
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f"`{value}`"
    return f"`{json.dumps(value, ensure_ascii=False)}`"


def _table(
    name: str,
    title: str,
    schema: dict[str, Any],
    defs: dict[str, Any],
    skip: tuple[str, ...] = (),
    relaxed: frozenset[str] = frozenset(),
) -> tuple[Table, list[tuple[str, str]]]:
    """The table of one mapping, and (key, def) for the mappings its keys point into."""
    required = set(schema.get("required", []))
    keys: list[Key] = []
    inner: list[tuple[str, str]] = []
    for key, node in schema.get("properties", {}).items():
        if key in skip:
            continue
        text, ref = type_text(node, defs)
        if ref is not None:
            inner.append((key, ref))
        if key not in required:
            need = ""
        elif key in relaxed:
            need = "必須（sim: では省略可） / required (optional with sim:)"
        else:
            need = "必須 / required"
        ja, en = _split(node.get("description") or defs.get(ref or "", {}).get("description", ""))
        keys.append(Key(key, text, _default(node), need, ja, en))
    # The first paragraph of the model's docstring, in Markdown's backticks.
    about = schema.get("description", "").split("\n\n", 1)[0].replace("``", "`")
    ja, en = _split(about.replace("\n", " "))
    return Table(_anchor(name), title, keys, ja, en), inner


def _nested(
    start: list[tuple[str, str]], prefix: str, defs: dict[str, Any], seen: set[str]
) -> list[Table]:
    """Tables of the mappings reachable from *start* (key, def), each once, titled by key path."""
    out: list[Table] = []
    queue = [(f"{prefix}.{key}", name) for key, name in start]
    while queue:
        path, name = queue.pop(0)
        if name in seen:
            continue
        seen.add(name)
        table, inner = _table(name, f"`{path}`", defs[name], defs)
        out.append(table)
        queue.extend((f"{path}.{key}", ref) for key, ref in inner)
    return out


def kind_example(kind: str) -> str:
    """The ``Registry example::`` block of *kind*'s module docstring (dedented), or ''."""
    module = sys.modules[load_kind(kind).__module__]
    doc = inspect.cleandoc(module.__doc__ or "")
    at = doc.find("Registry example")
    start = doc.find("::\n", at) if at >= 0 else -1
    if start < 0:
        return ""
    block: list[str] = []
    for line in doc[start + 3 :].splitlines():
        if line.strip() and not line.startswith(" "):
            break
        block.append(line)
    return textwrap.dedent("\n".join(block)).strip("\n")


def reference_text() -> str:
    """``docs/registry.md`` as the models say it today."""
    schema = registry_schema()
    defs = schema["$defs"]
    seen: set[str] = set(_SHARED) | {"Channel", "Duration", "SecretRef"}
    top, _ = _table("Registry", "(top level)", schema, defs)
    shared = {name: _table(name, name, defs[name], defs)[0] for name in _SHARED}
    common_props = {
        **defs[f"channel.{sorted(known_kinds())[0]}.sim"]["properties"],
        "kind": defs["Channel"]["properties"]["kind"],
    }
    common, _ = _table(
        "channel",
        "channel",
        {"properties": {k: common_props[k] for k in _COMMON_KEYS}, "required": ["id", "kind"]},
        defs,
    )
    kinds = []
    for kind in sorted(known_kinds()):
        live = defs[f"channel.{kind}.live"]
        optional = sim_optional(kind)
        relaxed = frozenset(k for k in live.get("required", []) if k in optional)
        main, inner = _table(
            f"channel.{kind}", kind, live, defs, skip=_COMMON_KEYS, relaxed=relaxed
        )
        ja, en = _split(defs[f"channel.{kind}"]["description"].replace("``", "`"))
        doc = KindDoc(kind, ja, en, [main], sorted(relaxed), kind_example(kind))
        doc.tables += _nested(inner, kind, defs, seen)
        kinds.append(doc)
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("drills.core", "templates"),
        autoescape=False,  # Markdown, not HTML
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["cell"] = lambda text: str(text).replace("|", "\\|").replace("\n", " ")
    template = env.get_template("registry.md.j2")
    return template.render(
        top=top,
        shared=shared,
        common=common,
        kinds=kinds,
        kind_names=sorted(known_kinds()),
        duration=_split(defs["Duration"]["description"]),
        secret=_split(defs["SecretRef"]["description"]),
    )
