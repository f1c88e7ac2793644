"""The ``/probe`` answer from a check's report: families, labels and values (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from drills.core.preflight import Checked
from drills.core.registry import parse_registry
from drills.metrics.catalogue import CHECKS, checks_markdown
from drills.metrics.probe import _Families, check_families, check_timeout
from probes.preflight import CertificateFact, PhaseResult, PreflightReport, Reason
from tests.metrics.support import sample_set

REGISTRY = """\
municipalities:
  - code: "131211"
    name: 足立区
    channels:
      - {id: sms, kind: webhook, sim: {latency: 10ms}}
"""
TARGET = parse_registry(REGISTRY, "registry.yaml").targets()[0]
BASE = (
    ("channel_id", "sms"),
    ("channel_kind", "webhook"),
    ("municipality_code", "131211"),
    ("municipality_name", "足立区"),
)


def _text(report: PreflightReport, age: float = 0.0) -> dict:
    prom = CollectorRegistry(auto_describe=False)
    prom.register(_Families(check_families(TARGET, Checked(report, age, cached=age > 0))))
    return sample_set(generate_latest(prom).decode())


def _get(samples: dict, name: str, **extra: str) -> float:
    return samples[(name, tuple(sorted((*BASE, *extra.items()))))]


def test_a_failing_check_with_certificates_and_balance() -> None:
    phases = (
        PhaseResult("api.connect", "connect", True, 0.010),
        PhaseResult("api.tls", "tls", True, 0.020),
        PhaseResult("account.auth", "auth", True, 0.030),
        PhaseResult("number.read", "account", False, 0.040, Reason("SMS 不可", "no SMS")),
    )
    certs = (
        CertificateFact("https", "api.twilio.com", 443, 2_000_000.0),
        CertificateFact("https", "api2.twilio.com", 443, 1_000_000.0),  # the earlier one counts
        CertificateFact("callback", "cb.example.lg.jp", 443, 3_000_000.0),
    )
    report = PreflightReport(
        "131211/sms",
        "twilio",
        phases,
        certs,
        {"twilio_balance": 12.5, "cost_cap": 20.0},
        elapsed_s=0.1,
    )
    s = _text(report, age=12.0)
    assert _get(s, "tsunagari_check_up") == 0.0
    assert _get(s, "tsunagari_check_skipped") == 0.0
    assert _get(s, "tsunagari_check_auth_ok") == 1.0
    assert _get(s, "tsunagari_check_phase_ok", phase="account", stage="number.read") == 0.0
    assert _get(s, "tsunagari_check_phase_duration_seconds", phase="tls", stage="api.tls") == 0.02
    assert (
        _get(s, "tsunagari_check_tls_cert_expiry_timestamp_seconds", endpoint="https") == 1_000_000
    )
    assert (
        _get(s, "tsunagari_check_tls_cert_expiry_timestamp_seconds", endpoint="callback")
        == 3_000_000
    )
    assert _get(s, "tsunagari_check_twilio_balance") == 12.5
    assert _get(s, "tsunagari_check_twilio_cost_cap") == 20.0
    assert _get(s, "tsunagari_check_cache_age_seconds") == 12.0
    assert _get(s, "tsunagari_check_duration_seconds") == 0.1
    names = {name for name, _ in s}
    assert names == set(CHECKS)  # every catalogued family, nothing else
    for name, labels in s:
        assert {k for k, _ in labels} == set(CHECKS[name].labels)


def test_a_refused_login_and_a_skipped_target() -> None:
    refused = PreflightReport(
        "131211/sms",
        "webhook",
        (
            PhaseResult("api.connect", "connect", True, 0.01),
            PhaseResult("observer.auth", "auth", False, 0.01, Reason("拒否", "refused")),
        ),
    )
    s = _text(refused)
    assert _get(s, "tsunagari_check_up") == 0.0
    assert _get(s, "tsunagari_check_auth_ok") == 0.0
    assert not any(n == "tsunagari_check_twilio_balance" for n, _ in s)
    # no auth phase ran (the check stopped at connect): auth_ok is absent, not 0
    unreachable = PreflightReport(
        "131211/sms", "webhook", (PhaseResult("api.connect", "connect", False, 0.5),)
    )
    assert not any(n == "tsunagari_check_auth_ok" for n, _ in _text(unreachable))
    skipped = PreflightReport("131211/sms", "webhook", (), skipped=Reason("対象外", "n/a"))
    s = _text(skipped)
    assert _get(s, "tsunagari_check_skipped") == 1.0
    assert not any(n == "tsunagari_check_up" for n, _ in s)


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, 10.0), ("15", 14.5), ("10.000000", 9.5), ("0.4", 0.2), ("9999", 299.5)],
)
def test_check_timeout_from_the_scrape_timeout(header: str | None, expected: float) -> None:
    assert check_timeout(header) == expected


@pytest.mark.parametrize("header", ["", "abc", "0", "-3", "nan", "inf"])
def test_check_timeout_refuses_nonsense(header: str) -> None:
    with pytest.raises(ValueError):
        check_timeout(header)


def test_the_probe_metrics_table_lists_every_family() -> None:
    table = checks_markdown()
    for name, spec in CHECKS.items():
        assert f"`{name}`" in table
        assert spec.name.startswith("tsunagari_check_") and spec.type == "gauge"


@pytest.mark.parametrize("value", ["-1", "nan"])
def test_serve_refuses_a_negative_check_interval(
    value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from drills.cli import main
    from drills.core.journal import Journal

    Journal(tmp_path / "journal.sqlite").close()
    argv = ["--lang", "en", "serve", "--journal", str(tmp_path / "journal.sqlite")]
    assert main([*argv, "--check-interval", value]) == 2
    assert "--check-interval must be 0 or more seconds" in capsys.readouterr().err
