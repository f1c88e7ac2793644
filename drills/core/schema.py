"""The registry's JSON Schema, generated from the models the loader validates with.

One source: the top level (``_RegistryModel``), the municipality
(``_MunicipalityModel``), ``defaults``, ``slo``, ``surge``, the ``sim:`` knobs and
every channel kind's ``Settings`` (kinds from the ``tsunagari.channels`` entry
points). Editors that read ``# yaml-language-server: $schema=registry.schema.json``
(VS Code YAML, JetBrains) complete keys and flag mistakes while the file is typed::

    tsunagari registry schema -o registry.schema.json

A channel is chosen by ``kind``; a channel with ``sim:`` is validated as the loader
does it (the simulator fills the keys it does not need), so fewer keys are
required. Rules that span keys (``from`` not among ``to``; ``imap`` or
``maildir``, not both) stay with ``tsunagari registry check``.
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from drills.core.registry import (
    SLO,
    Defaults,
    SurgeAllowance,
    _MunicipalityModel,
    _RegistryModel,
    known_kinds,
    load_kind,
)
from probes.settings import DURATION_JSON_SCHEMA, SECRET_REF_JSON_SCHEMA
from probes.sim.base import SimKnobs

__all__ = [
    "SCHEMA_FILE",
    "common_keys",
    "kind_summary",
    "registry_schema",
    "schema_text",
    "sim_optional",
]

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "data" / "registry.schema.json"
DIALECT = "https://json-schema.org/draft/2020-12/schema"
_REF = "#/$defs/"

# The keys every channel has, whatever its kind (the loader's _COMMON_KEYS).
_COMMON: dict[str, dict[str, Any]] = {
    "id": {
        "type": "string",
        "minLength": 1,
        "description": "団体の中で一意なチャネル名（例: chat, mail） / "
        "the channel's name, unique within the municipality (e.g. chat, mail)",
    },
    "kind": {
        "type": "string",
        "description": "チャネルの種別 / the channel kind",
    },
    "label": {
        "type": "string",
        "description": "人が読む名前（スコアカードに表示） / a name for people (shown on the scorecard)",
    },
    "slo": {
        "$ref": _REF + "SLO",
        "description": "このチャネルの SLO（団体・defaults の値を上書き） / "
        "this channel's SLO (overrides the municipality's and the defaults')",
    },
    "surge": {
        "$ref": _REF + "SurgeAllowance",
        "description": "実チャネルに負荷をかける許可（上限） / "
        "permission to put surge load on this live channel (caps)",
    },
    "sim": {
        "anyOf": [{"$ref": _REF + "SimKnobs"}, {"type": "null"}],
        "description": "あればローカルのシミュレータに送る（デモ・テスト用） / "
        "present: the channel runs against a local simulator (demo, tests)",
    },
}


def common_keys() -> dict[str, dict[str, Any]]:
    """The keys every channel has (``id``, ``kind``, ``label``, ``slo``, ``surge``, ``sim``)."""
    return copy.deepcopy(_COMMON)


def sim_optional(kind: str) -> frozenset[str]:
    """Keys a ``sim:`` channel of *kind* may leave out: its simulator fills them."""
    simulator = load_kind(kind).simulator()
    if simulator is None:
        return frozenset()
    return frozenset(simulator.settings_to_validate({}))


def kind_summary(kind: str) -> tuple[str, str]:
    """What *kind* is, one line in Japanese and one in English: its probe's ``summary``.

    A kind that has none (a third party's) gets its module docstring's first paragraph
    as the English line and no Japanese one.
    """
    probe = load_kind(kind)
    if probe.summary is not None:
        return probe.summary
    doc = inspect.cleandoc(sys.modules[probe.__module__].__doc__ or "")
    return "", doc.split("\n\n", 1)[0].replace("\n", " ")


def _tidy(node: Any) -> Any:
    """Shared types as ``$ref``s, pydantic's generated titles dropped."""
    if isinstance(node, list):
        return [_tidy(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _tidy(v) for k, v in node.items() if k != "title"}
    if out.get("anyOf") == DURATION_JSON_SCHEMA["anyOf"]:
        del out["anyOf"]
        out = {"$ref": _REF + "Duration", **out}
    elif out.get("pattern") == SECRET_REF_JSON_SCHEMA["pattern"] and out.get("type") == "string":
        out = {"$ref": _REF + "SecretRef", **{k: v for k, v in out.items() if k in _NOTES}}
    for name, generic in (
        ("Duration", DURATION_JSON_SCHEMA),
        ("SecretRef", SECRET_REF_JSON_SCHEMA),
    ):
        if out.get("$ref") == _REF + name and out.get("description") == generic["description"]:
            del out["description"]
    if isinstance(node.get("properties"), dict):  # property names are not titles
        out["properties"] = {k: _tidy(v) for k, v in node["properties"].items()}
    return out


_NOTES = ("description", "default", "examples")


def _kind_defs(kind: str, settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``channel.KIND`` (live or sim by the presence of ``sim``) and its two forms."""
    props = dict(settings.get("properties", {}))
    required = list(settings.get("required", []))
    common = common_keys()
    common["kind"] = {"const": kind, "description": common["kind"]["description"]}
    live_props = {k: v for k, v in common.items() if k != "sim"} | props
    sim_props = common | props
    optional = sim_optional(kind)
    description = settings.get("description", "")
    ja, en = kind_summary(kind)
    return {
        f"channel.{kind}": {
            "description": f"{ja} / {en}" if ja else en,
            "if": {"required": ["sim"]},
            "then": {"$ref": f"{_REF}channel.{kind}.sim"},
            "else": {"$ref": f"{_REF}channel.{kind}.live"},
        },
        f"channel.{kind}.live": {
            "type": "object",
            "description": description,
            "properties": live_props,
            "required": ["id", "kind", *required],
            "additionalProperties": False,
        },
        f"channel.{kind}.sim": {
            "type": "object",
            "description": description,
            "properties": sim_props,
            "required": ["id", "kind", "sim", *(k for k in required if k not in optional)],
            "additionalProperties": False,
        },
    }


def registry_schema() -> dict[str, Any]:
    """The registry's JSON Schema (draft 2020-12) as a dict (the caller's own copy)."""
    return copy.deepcopy(_generated())


@functools.cache
def _generated() -> dict[str, Any]:
    kinds = sorted(known_kinds())
    named: dict[str, type[BaseModel]] = {
        "Registry": _RegistryModel,
        "Municipality": _MunicipalityModel,
        "Defaults": Defaults,
        "SLO": SLO,
        "SurgeAllowance": SurgeAllowance,
        "SimKnobs": SimKnobs,
        **{f"settings.{kind}": load_kind(kind).Settings for kind in kinds},
    }
    keys, generated = models_json_schema(
        [(model, "validation") for model in named.values()],
        by_alias=True,
        ref_template=_REF + "{model}",
    )
    defs: dict[str, Any] = _tidy(generated["$defs"])
    # Rename pydantic's def names to ours (a kind's settings stay inlined below).
    by_name: dict[str, Any] = {}
    for name, model in named.items():
        ref = keys[(model, "validation")]["$ref"].removeprefix(_REF)
        by_name[name] = defs.pop(ref)
    top = by_name.pop("Registry")
    top["properties"]["municipalities"]["items"] = {"$ref": _REF + "Municipality"}
    municipality = by_name["Municipality"]
    municipality["properties"]["channels"]["items"] = {"$ref": _REF + "Channel"}
    channel: dict[str, Any] = {
        "type": "object",
        "properties": {
            "id": _COMMON["id"],
            "kind": {"enum": kinds, "description": _COMMON["kind"]["description"]},
        },
        "required": ["id", "kind"],
        "allOf": [
            {
                "if": {"properties": {"kind": {"const": kind}}, "required": ["kind"]},
                "then": {"$ref": f"{_REF}channel.{kind}"},
            }
            for kind in kinds
        ],
    }
    for kind in kinds:
        defs.update(_kind_defs(kind, by_name.pop(f"settings.{kind}")))
    defs.update(by_name)
    # LatencySpec also takes a bare duration ("300ms" is fixed at 300 ms): its
    # mode="before" validator says so, which pydantic cannot show in a schema.
    latency = defs["SimKnobs"]["properties"]["latency"]
    latency["anyOf"] = [{"$ref": _REF + "Duration"}, {"$ref": latency.pop("$ref")}]
    defs["Channel"] = channel
    defs["Duration"] = copy.deepcopy(DURATION_JSON_SCHEMA)
    defs["SecretRef"] = copy.deepcopy(SECRET_REF_JSON_SCHEMA)
    return {
        "$schema": DIALECT,
        "title": "Tsunagari registry",
        "description": "繋がり（Tsunagari）のレジストリ: 団体とそのチャネル / "
        "the Tsunagari registry: municipalities and their channels",
        **top,
        "$defs": dict(sorted(defs.items())),
    }


def schema_text() -> str:
    """The schema as the shipped file holds it (stable order, UTF-8, final newline)."""
    return json.dumps(registry_schema(), ensure_ascii=False, indent=2) + "\n"
