"""Registry validation: every error names file, line and field, and says why."""

from __future__ import annotations

import textwrap

import pytest

from drills.core.errors import RegistryError
from drills.core.registry import check_digit_ok, load_registry, parse_registry

GOOD = """\
defaults:
  slo: {latency: 30s, reachability: 0.9}
municipalities:
  - code: "131211"
    name: 足立区
    tags: [23ku]
    channels:
      - id: chat
        kind: webhook
        sim: {latency: 300ms}
      - id: hook
        kind: webhook
        url: https://chat.example.lg.jp/hooks/x
        auth: env:TSG_TEST_HOOK
        slo: {latency: 2m}
"""


def problems(text: str, **kw) -> list:
    with pytest.raises(RegistryError) as info:
        parse_registry(textwrap.dedent(text), "reg.yaml", **kw)
    return info.value.problems


def test_good_registry_loads(monkeypatch):
    monkeypatch.setenv("TSG_TEST_HOOK", "x")
    reg = parse_registry(GOOD, "reg.yaml")
    (m,) = reg.municipalities
    assert (m.code, m.name, m.tags) == ("131211", "足立区", ("23ku",))
    chat, hook = m.channels
    assert chat.simulated and not hook.simulated
    assert chat.slo.latency == 30.0 and chat.slo.reachability == 0.9
    assert hook.slo.latency == 120.0 and hook.slo.reachability == 0.9  # merged over the default
    assert chat.sim.latency.value == 0.3


@pytest.mark.parametrize(
    ("code", "ok"),
    [
        ("131211", True),
        ("131016", True),
        ("131041", True),
        ("132012", True),
        ("133086", True),
        ("134210", True),
        ("130001", True),
        ("131212", False),
        ("13121", False),
        ("13121x", False),
    ],
)
def test_check_digit(code, ok):
    assert check_digit_ok(code) is ok


def test_unknown_kind_names_line_and_field_and_lists_known():
    (p,) = problems(
        GOOD.replace("kind: webhook\n        sim", "kind: slak\n        sim"), check_secrets=False
    )
    assert (p.line, p.field) == (9, "municipalities[0].channels[0].kind")
    assert "slak" in p.why_en and "webhook" in p.why_en
    assert p.render("en").startswith(
        "reg.yaml:9: municipalities[0].channels[0].kind: unknown channel kind"
    )
    assert "未知のチャネル種別" in p.render("ja")


def test_duplicate_channel_id():
    (p,) = problems(GOOD.replace("id: hook", "id: chat"), check_secrets=False)
    assert (p.line, p.field) == (11, "municipalities[0].channels[1].id")
    assert "duplicate channel id 'chat' (line 8)" in p.why_en


def test_duplicate_municipality_code():
    text = (
        GOOD
        + '  - code: "131211"\n    name: 足立区(再)\n    channels:\n      - {id: chat, kind: webhook, sim: {}}\n'
    )
    found = problems(text, check_secrets=False)
    assert [p.field for p in found] == ["municipalities[1].code"]
    assert found[0].line == 16 and "duplicate municipality code 131211" in found[0].why_en


def test_bad_check_digit():
    (p,) = problems(GOOD.replace('"131211"', '"131212"'), check_secrets=False)
    assert (p.line, p.field) == (4, "municipalities[0].code")
    assert "check digit" in p.why_en


def test_unresolvable_secret(monkeypatch):
    monkeypatch.delenv("TSG_TEST_HOOK", raising=False)
    (p,) = problems(GOOD)
    assert (p.line, p.field) == (14, "municipalities[0].channels[1].auth")
    assert "env:TSG_TEST_HOOK" in p.why_en and "not set" in p.why_en


def test_secret_from_file(tmp_path):
    secret = tmp_path / "hook.txt"
    secret.write_text("s3cret\n")
    reg = parse_registry(GOOD.replace("env:TSG_TEST_HOOK", f"file:{secret}"), "reg.yaml")
    ref = reg.municipalities[0].channels[1].settings.auth
    assert ref.reveal() == "s3cret"
    assert "s3cret" not in repr(reg.municipalities[0].channels[1].settings)
    missing = problems(GOOD.replace("env:TSG_TEST_HOOK", f"file:{tmp_path}/nope"))
    assert missing[0].field.endswith("auth") and "cannot read secret file" in missing[0].why_en


def test_literal_secret_refused():
    (p,) = problems(GOOD.replace("env:TSG_TEST_HOOK", "hunter2"), check_secrets=False)
    assert p.field == "municipalities[0].channels[1].auth"
    assert "references" in p.why_en
    assert "hunter2" not in p.render("en") and "hunter2" not in p.render("ja")


def test_malformed_duration():
    (p,) = problems(GOOD.replace("latency: 2m", "latency: 2 minutes"), check_secrets=False)
    assert (p.line, p.field) == (15, "municipalities[0].channels[1].slo.latency")
    assert "malformed duration" in p.why_en


def test_malformed_sim_duration():
    (p,) = problems(GOOD.replace("latency: 300ms", "latency: fast"), check_secrets=False)
    assert p.line == 10 and p.field.startswith("municipalities[0].channels[0].sim.latency")


@pytest.mark.parametrize(
    ("old", "new", "field", "line"),
    [
        ("    tags: [23ku]", "    tag: [23ku]", "municipalities[0].tag", 6),
        ("        url: https", "        ulr: https", "municipalities[0].channels[1].ulr", 13),
        (
            "  slo: {latency: 30s, reachability: 0.9}",
            "  slo: {latency: 30s, reachabilty: 0.9}",
            "defaults.slo.reachabilty",
            2,
        ),
        (
            "        sim: {latency: 300ms}",
            "        sim: {latency: 300ms, los: 0.1}",
            "municipalities[0].channels[0].sim.los",
            10,
        ),
    ],
)
def test_unknown_keys_are_errors(old, new, field, line):
    assert old in GOOD
    found = problems(GOOD.replace(old, new), check_secrets=False)
    assert any(
        p.field == field and p.line == line and "extra" in p.why_en.lower() for p in found
    ), found
    assert any("未知のキー" in p.why_ja for p in found)


def test_duplicate_yaml_key():
    found = problems(
        GOOD.replace("    tags: [23ku]", "    tags: [23ku]\n    name: 足立"), check_secrets=False
    )
    assert any(
        p.field == "municipalities[0].name" and p.line == 7 and "duplicate key" in p.why_en
        for p in found
    )


def test_every_problem_is_reported_at_once():
    text = GOOD.replace('"131211"', '"131219"').replace(
        "kind: webhook\n        sim", "kind: nope\n        sim"
    )
    found = problems(text, check_secrets=False)
    assert {p.field for p in found} == {
        "municipalities[0].code",
        "municipalities[0].channels[0].kind",
    }


def test_yaml_syntax_error_names_line():
    (p,) = problems("municipalities:\n  - code: [\n")
    assert p.line is not None and "YAML" in p.why_en


def test_missing_file(tmp_path):
    with pytest.raises(RegistryError) as info:
        load_registry(tmp_path / "absent.yaml")
    assert "absent.yaml" in str(info.value) and "cannot read registry" in str(info.value)


def test_target_selection():
    reg = parse_registry(GOOD, "reg.yaml", check_secrets=False)
    assert [t.key for t in reg.targets(["23ku"])] == ["131211/chat", "131211/hook"]
    assert [t.key for t in reg.targets(["足立区"], channels=["chat"])] == ["131211/chat"]
    with pytest.raises(KeyError):
        reg.targets(["渋谷区"])


def test_demo_registry_is_valid():
    from drills.operator.demo import demo_registry_path

    reg = load_registry(demo_registry_path())
    names = {m.name for m in reg.municipalities}
    assert {"足立区", "千代田区", "新宿区", "八王子市", "奥多摩町", "小笠原村"} <= names
    for m in reg.municipalities:
        assert {c.kind for c in m.channels} == {"webhook", "mail", "twilio"}
        assert all(c.simulated for c in m.channels)
