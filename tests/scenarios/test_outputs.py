"""After a drill session: scorecards, vantages.json, metrics pushed to a real Pushgateway and
written for node_exporter — and the step events read by the scorecard and the metrics."""

from __future__ import annotations

import json

import pytest

from drills.operator.session import DrillSettings, SettingsError
from tests.servers.prometheus import Pushgateway

STEPS = '''\
"""点呼と代替連絡（試験用）"""
import pytest

pytestmark = [pytest.mark.scenario("点呼と代替"), pytest.mark.deadline("3s")]


def test_点呼(drill):
    drill.roll_call("点呼", room="東京都/chat", simulated={"delay": "100ms"}).expect()


def test_代替(drill):
    drill.fallback("代替", order=["chat", "mail"], escalate_after="1s").expect()
'''


@pytest.fixture
def gateway(tmp_path):
    gw = Pushgateway(tmp_path / "pushgateway").start()
    yield gw
    gw.stop()


@pytest.mark.servers  # Pushgateway
def test_outputs_and_metrics_of_a_session(operator, gateway):
    operator.makepyfile(test_steps=STEPS)
    result = operator.runpytest(
        "--registry=registry.yaml",
        "--out=out",
        "--vantage=LGWAN",
        f"--push-gateway={gateway.url}",
        "--textfile=prom",
        "--seed=3",
        "--lang=en",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # 小笠原村 cannot answer the roll call
    out = operator.path / "out"
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    (run_id,) = summary["runs"]
    assert summary["problems"] == [] and summary["vantage"] == "LGWAN"
    card = json.loads((out / "runs" / run_id / "scorecard.json").read_text(encoding="utf-8"))
    by = {m["code"]: m for m in card["municipalities"]}
    assert card["summary"]["unreadable_events"] == 0  # the scorecard reads our step events
    assert by["134210"]["roll_call"] == {"responded": 0.0, "expected": 1.0}
    assert by["131211"]["roll_call"] == {"responded": 1.0, "expected": 1.0}
    assert by["134210"]["fallback"] == {
        "passed": 1.0,
        "total": 1.0,
    }  # chat refused, mail reached it
    assert (out / "runs" / run_id / "metrics.prom").exists()  # the registered output writers ran
    view = json.loads((out / "vantages.json").read_text(encoding="utf-8"))
    assert view["scenarios"][0]["vantages"] == ["LGWAN"]
    (prom,) = (operator.path / "prom").glob("*.prom")
    text = prom.read_text(encoding="utf-8")
    assert prom.name == "tsunagari-test_steps-LGWAN.prom"
    answered = [ln for ln in text.splitlines() if ln.startswith("tsunagari_roll_call_answered{")]
    assert any('municipality_code="134210"' in ln and ln.endswith(" 0.0") for ln in answered)
    assert any('municipality_code="131211"' in ln and ln.endswith(" 1.0") for ln in answered)
    assert any(
        ln.startswith("tsunagari_fallback_reached{") and 'municipality_code="134210"' in ln
        for ln in text.splitlines()
    )
    groups = gateway.groups()
    labels = [g["labels"] for g in groups]
    assert {"job": "tsunagari", "scenario": "点呼と代替", "vantage": "LGWAN"} in [
        {k: v for k, v in lab.items() if k in ("job", "scenario", "vantage")} for lab in labels
    ]
    assert any(lab.get("municipality_code") == "134210" for lab in labels)


def test_an_unreachable_gateway_is_a_harness_problem(operator):
    operator.makepyfile(test_steps=STEPS)
    result = operator.runpytest(
        "--registry=registry.yaml", "--push-gateway=http://127.0.0.1:9", "-k", "代替"
    )
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR  # the drill passed; reporting it failed
    result.stdout.fnmatch_lines(["tsunagari: metrics (点呼と代替): *"])


def test_missing_exporters_are_named(monkeypatch):
    import drills.operator.session

    monkeypatch.setitem(
        drills.operator.session.METRICS_EXPORTS,
        "push_gateway",
        ("drills.metrics.push", "no_such_function"),
    )
    settings = DrillSettings(push_gateway="http://127.0.0.1:9091")
    with pytest.raises(
        SettingsError,
        match=r"--push-gateway is not available yet \(drills.metrics.push.no_such_function",
    ):
        settings.check_metrics()
