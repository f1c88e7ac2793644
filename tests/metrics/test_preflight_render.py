"""``/probe``'s text answer written straight from the report (``render_check``) is,
byte for byte, what prometheus_client writes for the same families."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from drills.core.preflight import Checked
from drills.core.registry import parse_registry
from drills.metrics.probe import _Families, check_families, render_check, target_labels
from probes.preflight import CertificateFact, PhaseResult, PreflightReport, Reason

REGISTRY = """\
municipalities:
  - code: "131211"
    name: 'say "足立区" \\ here'
    channels:
      - {id: 'we"ird', kind: webhook, sim: {latency: 10ms}}
      - {id: sms, kind: twilio, sim: {}}
"""
TARGETS = parse_registry(REGISTRY, "registry.yaml").targets()

FULL = PreflightReport(
    "131211/sms",
    "twilio",
    (
        PhaseResult("api.dns", "dns", True, 1.5e-05),
        PhaseResult("api.tls", "tls", True, 0.02),
        PhaseResult("account.auth", "auth", True, 0.031),
        PhaseResult('odd "stage"\\x', "account", False, 1e-9, Reason("不可", "no")),
    ),
    (
        CertificateFact("https", "a", 443, 2_000_000.0),
        CertificateFact("https", "b", 443, 1_000_000.5),
        CertificateFact("callback", "c", 443, 3e9),
    ),
    {"twilio_balance": 12.5, "cost_cap": 20.0},
    elapsed_s=0.123456789,
)
REFUSED = PreflightReport(
    "131211/sms",
    "webhook",
    (
        PhaseResult("api.connect", "connect", True, 0.01),
        PhaseResult("observer.auth", "auth", False, 0.01, Reason("拒否", "refused")),
    ),
)
UNREACHABLE = PreflightReport("k", "webhook", (PhaseResult("api.connect", "connect", False, 0.5),))
SKIPPED = PreflightReport("k", "webhook", (), skipped=Reason("対象外", "n/a"))
OK = PreflightReport("k", "mail", (PhaseResult("smtp.connect", "connect", True, 0.25),))
BROKE = PreflightReport(
    "k", "twilio", (), facts={"twilio_balance": -0.0, "cost_cap": 1.0}, elapsed_s=0.0
)


def _library(checked: Checked, target_index: int) -> bytes:
    prom = CollectorRegistry(auto_describe=False)
    prom.register(_Families(check_families(TARGETS[target_index], checked)))
    return generate_latest(prom)


@pytest.mark.parametrize("report", [FULL, REFUSED, UNREACHABLE, SKIPPED, OK, BROKE])
@pytest.mark.parametrize(("age", "cached"), [(0.0, False), (12.25, True), (-0.5, True)])
@pytest.mark.parametrize("index", [0, 1])
def test_render_check_is_the_library_text(
    report: PreflightReport, age: float, cached: bool, index: int
) -> None:
    checked = Checked(report, age, cached=cached)
    target = TARGETS[index]
    expected = _library(checked, index)
    assert render_check(target, checked) == expected
    assert render_check(target, checked, target_labels(target)) == expected
    assert b'we\\"ird' in expected or index == 1  # the escaping was exercised
