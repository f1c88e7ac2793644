"""The registry's JSON Schema: generated from the models, shipped, and it agrees with the loader.

Every registry in the repository the loader accepts — the demo, every YAML file,
every registry written into a test, the oracle generator's for several seeds —
validates against the schema; known-bad registries fail both.
"""

from __future__ import annotations

import ast
import json
import random
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from drills.cli import main
from drills.core.errors import RegistryError
from drills.core.reference import reference_text
from drills.core.registry import check_digit_ok, known_kinds, load_kind, parse_registry
from drills.core.schema import SCHEMA_FILE, registry_schema, schema_text
from probes.settings import SecretRef, parse_duration
from tests.oracle.generate import random_registry

ROOT = Path(__file__).resolve().parents[2]
_SCHEMA = registry_schema()


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = registry_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _loader_accepts(text: str, name: str) -> bool:
    try:
        parse_registry(text, name, check_secrets=False)
    except RegistryError:
        return False
    return True


def repository_registries() -> list[tuple[str, str]]:
    """(name, YAML text) of every registry in the repository: files and test strings."""
    found = []
    for path in sorted(ROOT.rglob("*.y*ml")):
        if ".venv" in path.parts or path.suffix not in (".yaml", ".yml"):
            continue
        text = path.read_text(encoding="utf-8")
        if "municipalities:" in text:
            found.append((str(path.relative_to(ROOT)), text))
    for path in sorted((ROOT / "tests").rglob("*.py")) + sorted((ROOT / "scenarios").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if "municipalities:" in node.value:
                    found.append((f"{path.relative_to(ROOT)}:{node.lineno}", node.value))
    for seed in range(8):
        found.append((f"oracle seed {seed}", random_registry(random.Random(seed)).yaml))
    return found


def test_the_shipped_schema_is_what_the_models_generate() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text(), (
        "drills/data/registry.schema.json is stale: "
        "run tsunagari registry schema -o drills/data/registry.schema.json"
    )


def test_registry_schema_command_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["registry", "schema"]) == 0
    assert json.loads(capsys.readouterr().out) == registry_schema()


def test_every_kind_is_in_the_schema() -> None:
    channel = registry_schema()["$defs"]["Channel"]
    assert channel["properties"]["kind"]["enum"] == sorted(known_kinds())


def test_every_registry_in_the_repository_validates(
    validator: jsonschema.Draft202012Validator,
) -> None:
    checked, problems = [], []
    for name, text in repository_registries():
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError:
            continue  # a fragment or a template (f-string braces), not a registry
        if not isinstance(data, dict) or not _loader_accepts(text, name):
            continue  # a test's deliberately broken registry
        checked.append(name)
        problems += [
            f"{name}: {'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
            for e in validator.iter_errors(data)
        ]
    assert not problems, "\n".join(problems)
    # The demo, the oracle's registries, and the tests' own: dozens, not a handful.
    assert "drills/data/demo_registry.yaml" in checked
    assert sum(n.startswith("oracle seed") for n in checked) == 8
    assert len(checked) >= 30, checked


def test_the_demo_registry_points_editors_at_the_shipped_schema() -> None:
    demo = ROOT / "drills" / "data" / "demo_registry.yaml"
    first = demo.read_text(encoding="utf-8").splitlines()[0]
    assert first == "# yaml-language-server: $schema=registry.schema.json"
    assert (demo.parent / "registry.schema.json").is_file()


GOOD = """\
municipalities:
  - code: "131211"
    name: 足立区
    channels:
      - id: chat
        kind: matrix
        homeserver: https://chat.example.lg.jp
        sender: {user: "@drill-bot:example.lg.jp", token: env:ADACHI_MATRIX_TOKEN}
        room: "!abc:example.lg.jp"
        sync_timeout: 20s
      - id: mail
        kind: mail
        smtp: {host: smtp.example.lg.jp, security: tls, password: file:/etc/pw}
        from: drill@example.lg.jp
        to: bousai@example.lg.jp
      - {id: sms, kind: twilio, to: ["+819011110001"], sim: {latency: {dist: uniform, low: 1s, high: 2s}}}
"""


def _edit(path: tuple[Any, ...], value: Any, *, delete: bool = False) -> dict[str, Any]:
    data = yaml.safe_load(GOOD)
    node = data
    for key in path[:-1]:
        node = node[key]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return data


CHAT = ("municipalities", 0, "channels", 0)
MAIL = ("municipalities", 0, "channels", 1)
SMS = ("municipalities", 0, "channels", 2)

# Registries both must accept, beside GOOD (each differs from it in one place).
ALSO_GOOD = {
    "unquoted code (YAML reads a number)": _edit(("municipalities", 0, "code"), 131211),
    # not filled in yet (registry init --prefecture 13): check warns, run refuses it
    "channels not filled in yet": _edit(("municipalities", 0, "channels"), []),
}

BAD = {
    "unknown key": _edit((*CHAT, "rooom"), "!abc:example.lg.jp"),
    "unknown kind": _edit((*CHAT, "kind"), "matrixx"),
    "the keys of another kind": _edit((*MAIL, "kind"), "matrix"),
    "literal secret": _edit((*CHAT, "sender", "token"), "syt_c2VjcmV0"),
    "unknown secret source": _edit((*MAIL, "smtp", "password"), "vault:smtp"),
    "malformed duration": _edit((*CHAT, "sync_timeout"), "20 seconds"),
    "not an allowed value": _edit((*MAIL, "smtp", "security"), "ssl"),
    "missing required key (live)": _edit((*CHAT, "room"), None, delete=True),
    "municipality code not 6 digits": _edit(("municipalities", 0, "code"), "13121"),
    "unquoted code not 6 digits": _edit(("municipalities", 0, "code"), 13121),
    "code in full-width digits": _edit(("municipalities", 0, "code"), "１３１２１１"),
    "unknown sim knob": _edit((*SMS, "sim", "lag"), "1s"),
    "unknown top-level key": _edit(("default",), {"slo": {"latency": "3s"}}),
    "no channels key": _edit(("municipalities", 0, "channels"), None, delete=True),
}


def test_a_good_registry_passes_both(validator: jsonschema.Draft202012Validator) -> None:
    assert _loader_accepts(GOOD, "good.yaml")
    assert list(validator.iter_errors(yaml.safe_load(GOOD))) == []


@pytest.mark.parametrize("case", sorted(ALSO_GOOD))
def test_a_good_variant_passes_both(case: str, validator: jsonschema.Draft202012Validator) -> None:
    data = ALSO_GOOD[case]
    assert list(validator.iter_errors(data)) == [], f"the schema refuses: {case}"
    assert _loader_accepts(yaml.safe_dump(data, allow_unicode=True), f"{case}.yaml"), case


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_known_bad_registry_fails_both(
    case: str, validator: jsonschema.Draft202012Validator
) -> None:
    data = BAD[case]
    assert list(validator.iter_errors(data)), f"the schema accepts: {case}"
    assert not _loader_accepts(yaml.safe_dump(data, allow_unicode=True), f"{case}.yaml"), case


def test_a_sim_channel_may_leave_out_what_its_simulator_fills(
    validator: jsonschema.Draft202012Validator,
) -> None:
    """The same key is required on a live channel and optional with sim: (as the loader does)."""
    without_room = _edit((*CHAT, "room"), None, delete=True)
    assert list(validator.iter_errors(without_room))
    without_room["municipalities"][0]["channels"][0]["sim"] = {"latency": "100ms"}
    assert list(validator.iter_errors(without_room)) == []
    assert _loader_accepts(yaml.safe_dump(without_room, allow_unicode=True), "sim.yaml")


def test_shared_types_are_named_and_explained() -> None:
    defs = registry_schema()["$defs"]
    assert defs["SecretRef"]["pattern"] == "^(env:[A-Za-z_][A-Za-z0-9_]*|file:.+)$"
    smtp = defs["SmtpSettings"]["properties"]
    assert smtp["password"]["anyOf"][0] == {"$ref": "#/$defs/SecretRef"}
    assert smtp["security"]["default"] == "starttls"
    assert defs["ImapSettings"]["properties"]["security"]["default"] == "tls"
    assert smtp["timeout"]["$ref"] == "#/$defs/Duration"
    for name in ("SmtpSettings", "ImapSettings", "MatrixIdentity", "SimKnobs", "Municipality"):
        for key, prop in defs[name]["properties"].items():
            assert " / " in prop.get("description", ""), f"{name}.{key} has no ja / en description"


def test_a_file_that_cannot_be_written_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "missing-folder" / "registry.schema.json"
    assert main(["--lang", "en", "registry", "schema", "-o", str(target)]) == 2
    err = capsys.readouterr().err
    assert f"cannot write {target}" in err and "Traceback" not in err


# Line breaks are left out: JSON Schema's "$" (Python's re.search in jsonschema) also
# matches before a final newline, which no one-line YAML value contains.
_TEXT = st.text(st.characters(blacklist_characters="\n\r", blacklist_categories=("Cs",)))


def _one_def(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({"$ref": f"#/$defs/{name}", "$defs": _SCHEMA["$defs"]})


DURATION, SECRET = _one_def("Duration"), _one_def("SecretRef")


@given(
    st.one_of(
        _TEXT,
        st.from_regex(r"\A\s?[0-9]{1,6}(\.[0-9]{1,3})?\s?(ms|s|min|m|h|d)?\s?\Z"),
        st.floats(allow_nan=False, allow_infinity=False),
        st.integers(min_value=-10, max_value=10**10),
    )
)
@settings(max_examples=150, deadline=None, database=None, derandomize=True)
def test_duration_schema_accepts_what_the_parser_accepts(value: Any) -> None:
    try:
        parse_duration(value)
    except ValueError:
        parsed = False
    else:
        parsed = True
    if parsed:
        assert DURATION.is_valid(value), value
    elif not isinstance(value, str):  # numbers: the schema knows the bounds too
        assert not DURATION.is_valid(value), value


@given(st.one_of(_TEXT, st.from_regex(r"\A(env|file|vault):[A-Za-z0-9_./-]{0,12}\Z")))
@settings(max_examples=150, deadline=None, database=None, derandomize=True)
def test_secret_schema_accepts_exactly_the_references_the_parser_accepts(text: str) -> None:
    try:
        SecretRef.parse(text)
    except ValueError:
        parsed = False
    else:
        parsed = True
    assert SECRET.is_valid(text) == parsed, text


MUNICIPALITY = _one_def("Municipality")


@given(
    st.one_of(
        st.integers(min_value=-10, max_value=10**7),
        st.from_regex(r"\A[0-9０-９]{5,7}\Z"),
        st.sampled_from(["131211", "131212", "011002", "100000", "999999"]),
        _TEXT,
    )
)
@settings(max_examples=150, deadline=None, database=None, derandomize=True)
def test_code_schema_accepts_what_the_loader_accepts(code: Any) -> None:
    """Quoted or a bare number: both agree, but for the check digit (the loader's alone)."""
    data = _edit(("municipalities", 0, "code"), code)
    loader = _loader_accepts(yaml.safe_dump(data, allow_unicode=True), "code.yaml")
    schema = MUNICIPALITY.is_valid(data["municipalities"][0])
    assert loader == (schema and check_digit_ok(str(code))), (code, loader, schema)


def test_every_kind_has_a_one_line_summary_in_japanese_and_english() -> None:
    """The probe's ``summary`` is the one source: the schema's kind and the reference show it."""
    reference = reference_text()
    for kind in sorted(known_kinds()):
        ja, en = load_kind(kind).summary or ("", "")
        assert any("\u3040" <= c <= "\u9fff" for c in ja) and en and "\n" not in ja + en, kind
        assert _SCHEMA["$defs"][f"channel.{kind}"]["description"] == f"{ja} / {en}"
        assert f"## `kind: {kind}`\n\n{ja}<br>\n{en}\n" in reference, kind
