"""docs/registry.md: generated from the models, complete per kind, its examples valid."""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from drills.cli import main
from drills.core.reference import kind_example, reference_text
from drills.core.registry import known_kinds, load_kind, parse_registry
from drills.core.schema import registry_schema, sim_optional
from probes.settings import SecretRef

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "registry.md"
KINDS = sorted(known_kinds())
SCHEMA = registry_schema()


@pytest.fixture(scope="module")
def text() -> str:
    return reference_text()


def section(text: str, kind: str) -> str:
    start = text.index(f'<a id="kind-{kind}"></a>')
    end = text.find('<a id="kind-', start + 1)
    return text[start : end if end > 0 else len(text)]


def rows(block: str) -> dict[str, str]:
    """Table rows by key (the first table a key appears in wins)."""
    out: dict[str, str] = {}
    for line in block.splitlines():
        match = re.match(r"^\| `([^`]+)` \|", line)
        if match:
            out.setdefault(match.group(1), line)
    return out


def test_the_committed_reference_is_what_the_models_generate(text: str) -> None:
    assert DOCS.read_text(encoding="utf-8") == text, (
        "docs/registry.md is stale: run tsunagari registry docs -o docs/registry.md"
    )


def test_registry_docs_command_writes_it(tmp_path: Path, text: str) -> None:
    out = tmp_path / "registry.md"
    assert main(["registry", "docs", "-o", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == text


@pytest.mark.parametrize("kind", KINDS)
def test_every_key_of_every_kind_is_documented(text: str, kind: str) -> None:
    block = section(text, kind)
    table = rows(block)
    settings = load_kind(kind).Settings
    for name, info in settings.model_fields.items():
        key = info.alias or name
        assert key in table, f"{kind}: {key} is missing from the reference"
        row = table[key]
        _, _, kind_cell, default, required, description, _ = re.split(r"(?<!\\)\|", row)
        if info.annotation is SecretRef:
            assert "secret" in kind_cell, row
        if info.is_required():
            expected = "sim: では省略可" if key in sim_optional(kind) else "必須<br>required"
            assert expected in required and not default.strip(), row
        else:
            assert not required.strip() and default.strip(), row
        assert "<br>" in description, f"{kind}.{key} has no ja / en description: {row}"
    assert "実チャネルの例 / live example:" in block


def test_the_mail_security_defaults_are_visible(text: str) -> None:
    mail = section(text, "mail")
    smtp = mail[mail.index("### `mail.smtp`") : mail.index("### `mail.imap`")]
    imap = mail[mail.index("### `mail.imap`") :]
    assert "| `starttls` |" in rows(smtp)["security"]
    assert "| `tls` |" in rows(imap)["security"]


def test_the_sim_knobs_municipality_and_defaults_are_documented(text: str) -> None:
    for heading in ("## `defaults`", "## 団体 / Municipality", "### `sim:`", "#### `sim.latency`"):
        assert heading in text
    for key in ("latency", "loss", "outage", "rate_limit", "capacity", "reject", "dist", "sigma"):
        assert f"| `{key}` |" in text, key
    for key in ("code", "name", "name_en", "tags", "drill_interval", "marker"):
        assert f"| `{key}` |" in text, key
    assert "# yaml-language-server: $schema=registry.schema.json" in text


@pytest.mark.parametrize("kind", KINDS)
def test_each_kinds_live_example_is_a_valid_registry(kind: str) -> None:
    example = kind_example(kind)
    assert example.startswith("- id:"), example
    channels = yaml.safe_load(example)
    assert "sim" not in channels[0], "the example must be a live channel"
    registry = {"municipalities": [{"code": "131211", "name": "足立区", "channels": channels}]}
    assert not list(jsonschema.Draft202012Validator(SCHEMA).iter_errors(registry))
    parse_registry(
        yaml.safe_dump(registry, allow_unicode=True), f"{kind}.yaml", check_secrets=False
    )


def test_the_usage_examples_run() -> None:
    import doctest

    from drills.core import placeholders, reference, starter

    for module in (placeholders, reference, starter):
        assert doctest.testmod(module).failed == 0, module.__name__
