"""A commented starter registry for the kinds asked for (``tsunagari registry init``).

Written from the registry's JSON Schema (:mod:`drills.core.schema`): every
required key with its explanation (Japanese, then English), a placeholder
``<<path>>`` where a value must go, secrets as ``env:`` references to fill in
the environment, and the optional keys commented out with their defaults::

    text = starter_registry(["matrix", "mail"])

A placeholder left in place fails ``tsunagari registry check`` (the loader looks
for them: :mod:`drills.core.placeholders`), so a half-filled file is never drilled.

>>> placeholder("mail.smtp.host")
'<<mail.smtp.host>>'
>>> secret_variable("matrix.sender.token")
'MATRIX_SENDER_TOKEN'
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from drills.core.placeholders import PLACEHOLDER_RE, placeholder
from drills.core.registry import known_kinds
from drills.core.schema import registry_schema

__all__ = [
    "MODELINE",
    "PLACEHOLDER_RE",
    "UnknownKinds",
    "placeholder",
    "secret_variable",
    "starter_registry",
]

MODELINE = "# yaml-language-server: $schema=registry.schema.json"
_REF = "#/$defs/"
# Optional keys written out (not commented) because without them a channel is
# *accepted only*: the observer that confirms arrival at the far end.
_OBSERVERS: dict[str, tuple[str, ...]] = {
    "mail": ("imap",),
    "matrix": ("observer",),
    "mattermost": ("observer",),
    "slack": ("observer_token",),
    "teams": ("team_id", "channel_id", "observer"),
    "lineworks": ("observer",),
    "webhook": ("observer",),
}
# One channel of a kind that has a sender choice: which one the starter shows.
_CHOSEN: dict[str, tuple[str, ...]] = {"teams": ("workflow_url",)}


class UnknownKinds(ValueError):
    """``--kinds`` named kinds that are not registered."""

    def __init__(self, unknown: Sequence[str], known: Sequence[str]) -> None:
        super().__init__(", ".join(unknown))
        self.unknown = tuple(unknown)
        self.known = tuple(known)


def secret_variable(path: str) -> str:
    """The environment variable a starter's secret at *path* refers to."""
    return re.sub(r"[^A-Z0-9]+", "_", path.upper()).strip("_")


def _split(text: str) -> tuple[str, str]:
    ja, sep, en = text.partition(" / ")
    return (ja, en) if sep else ("", text)


def _scalar(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


class _Writer:
    def __init__(self, defs: dict[str, Any]) -> None:
        self.defs = defs
        self.lines: list[str] = []

    def resolve(self, node: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        """The node without its null branch, and the def name it points to."""
        if "anyOf" in node:
            branches = [n for n in node["anyOf"] if n.get("type") != "null"]
            secret = [n for n in branches if n.get("$ref") == _REF + "SecretRef"]
            node = secret[0] if secret else branches[0]
        ref = node.get("$ref", "").removeprefix(_REF) or None
        return node, ref

    def explain(self, indent: str, node: dict[str, Any], ref: str | None) -> None:
        text = node.get("description") or (self.defs.get(ref or "", {}).get("description", ""))
        ja, en = _split(text.split("\n\n", 1)[0].replace("\n", " "))
        for line in (ja, en):
            if line:
                self.lines.append(f"{indent}# {line}")

    def value(self, path: str, node: dict[str, Any]) -> str:
        node, ref = self.resolve(node)
        if ref == "SecretRef":
            return f"env:{secret_variable(path)}"
        if node.get("type") == "array" or "anyOf" in node:
            return f"[{_scalar(placeholder(path))}]"
        return _scalar(placeholder(path))

    def mapping(
        self,
        indent: str,
        path: str,
        schema: dict[str, Any],
        *,
        keep: Sequence[str] = (),
        skip: Sequence[str] = (),
        first: str = "",
    ) -> None:
        """The keys of *schema*: required (and *keep*) written out, the rest commented."""
        required = set(schema.get("required", [])) | set(keep)
        for key, raw in schema.get("properties", {}).items():
            if key in skip:
                continue
            _, ref = self.resolve(raw)
            lead = first or indent
            first = ""
            here = f"{path}.{key}"
            if key not in required:
                shown = raw.get("default")
                text = raw.get("description") or self.defs.get(ref or "", {}).get("description")
                ja, en = _split((text or "").split("\n\n", 1)[0].replace("\n", " "))
                note = " / ".join(p for p in (ja, en) if p)
                if shown is None:
                    default = "…"
                elif ref == "Duration" and isinstance(shown, int | float):
                    default = f"{shown:g}s"
                else:
                    default = _scalar(shown)
                self.lines.append(f"{lead}# {key}: {default}" + (f"   # {note}" if note else ""))
                continue
            self.explain(indent, raw, ref)
            if (
                ref is not None
                and ref not in ("SecretRef", "Duration")
                and "properties" in (target := self.defs[ref])
            ):
                self.lines.append(f"{lead}{key}:")
                self.mapping(indent + "  ", here, target)
            else:
                self.lines.append(f"{lead}{key}: {self.value(here, raw)}")


def starter_registry(kinds: Sequence[str]) -> str:
    """A commented registry with one municipality and one live channel per kind in *kinds*.

    Raises :class:`UnknownKinds` when a kind is not registered.
    """
    known = sorted(known_kinds())
    unknown = [k for k in kinds if k not in known]
    if unknown or not kinds:
        raise UnknownKinds(unknown, known)
    schema = registry_schema()
    defs = schema["$defs"]
    out = _Writer(defs)
    out.lines += [
        MODELINE,
        "# 繋がり（Tsunagari）のレジストリ — tsunagari registry init で作成",
        "# Tsunagari registry — written by tsunagari registry init",
        "#",
        "# <<…>> を実際の値に置き換え、env: の環境変数を設定してから確かめてください:",
        "# Replace every <<…>> with the real value, set the env: variables, then check:",
        "#     tsunagari registry check registry.yaml",
        "# 全キーの説明 / every key explained: docs/registry.md (tsunagari registry docs)",
        "# 補完用スキーマ / schema for editors: tsunagari registry schema -o registry.schema.json",
        "",
        "defaults:",
    ]
    out.explain("  ", defs["Defaults"]["properties"]["slo"], "SLO")
    slo = defs["SLO"]["properties"]
    out.lines += [
        f"  slo: {{latency: {slo['latency']['default']:g}s, "
        f"reachability: {slo['reachability']['default']}}}",
        "",
        "municipalities:",
    ]
    municipality = defs["Municipality"]
    out.mapping("    ", "municipality", municipality, skip=("channels",), first="  - ")
    out.explain("    ", municipality["properties"]["channels"], None)
    out.lines.append("    channels:")
    for kind in kinds:
        live = defs[f"channel.{kind}.live"]
        out.lines.append("")
        out.lines += [
            f"      # {kind} — docs/registry.md#kind-{kind}",
            f"      - id: {kind}",
            f"        kind: {kind}",
        ]
        out.mapping(
            "        ",
            kind,
            live,
            keep=(*_OBSERVERS.get(kind, ()), *_CHOSEN.get(kind, ())),
            skip=("id", "kind", "label", "slo", "surge", "sim"),
        )
    return "\n".join(out.lines) + "\n"
