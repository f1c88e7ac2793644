"""Alert rules: ``promtool check rules`` and ``promtool test rules`` (firing and not firing)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.metrics.conftest import ALERTS, RULES
from tests.servers.prometheus import PROMTOOL

pytestmark = pytest.mark.servers  # promtool

TESTS = RULES.with_name("tsunagari.rules.test.yml")


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, cwd=cwd, timeout=60)


def test_rules_are_valid() -> None:
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in done.stdout


def test_every_rule_is_unit_tested_firing_and_not_firing() -> None:
    spec = yaml.safe_load(TESTS.read_text(encoding="utf-8"))
    cases = [case for test in spec["tests"] for case in test["alert_rule_test"]]
    for alert in ALERTS:
        mine = [c for c in cases if c["alertname"] == alert]
        assert any(c["exp_alerts"] for c in mine), f"{alert}: no firing case"
        assert any(not c["exp_alerts"] for c in mine) or any(
            # a firing case that also names a series that must NOT fire
            len(c["exp_alerts"]) < _series_count(spec, alert)
            for c in mine
        ), f"{alert}: no not-firing case"


def _series_count(spec: dict, alert: str) -> int:
    for test in spec["tests"]:
        if any(c["alertname"] == alert for c in test["alert_rule_test"]):
            return len({s["series"].split("{", 1)[1] for s in test["input_series"]})
    return 0


def test_promtool_unit_tests_pass() -> None:
    done = promtool("test", "rules", TESTS.name, cwd=TESTS.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@pytest.mark.parametrize(
    ("before", "after"),
    [
        pytest.param(
            "tsunagari_readiness_score < 75",
            "tsunagari_readiness_score < 30",
            id="TsunagariReadinessLow",
        ),
        pytest.param(
            "tsunagari_channel_unreachable_streak >= 2",
            "tsunagari_channel_unreachable_streak >= 1",
            id="TsunagariChannelUnreachableTwice",
        ),
        pytest.param(
            "unless on (municipality_code)",
            "and on (municipality_code)",
            id="TsunagariDrillOverdue",
        ),
        pytest.param("< 21 * 86400", "< 5 * 86400", id="TsunagariTLSCertificateExpiring"),
        pytest.param(  # the checks' certificates (every kind) count too
            "or tsunagari_check_tls_cert_expiry_timestamp_seconds",
            "",
            id="TsunagariTLSCertificateExpiring-checks",
        ),
        pytest.param(
            "(tsunagari_check_up) == 0",
            "(tsunagari_check_up) < 1.5",
            id="TsunagariPreflightFailing",
        ),
        pytest.param(
            "tsunagari_roll_call_answered < tsunagari_roll_call_expected",
            "tsunagari_roll_call_answered <= tsunagari_roll_call_expected",
            id="TsunagariRollCallIncomplete",
        ),
    ],
)
def test_promtool_unit_tests_catch_a_broken_rule(tmp_path: Path, before: str, after: str) -> None:
    # The unit tests have teeth: break one rule and they fail.
    text = RULES.read_text(encoding="utf-8")
    assert before in text
    (tmp_path / RULES.name).write_text(text.replace(before, after), encoding="utf-8")
    shutil.copy(TESTS, tmp_path / TESTS.name)
    done = promtool("test", "rules", TESTS.name, cwd=tmp_path)
    assert done.returncode != 0, done.stdout
