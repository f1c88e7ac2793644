"""Every dashboard panel and every alert rule, evaluated by a real Prometheus.

Two demo drills (webhook simulators) are pushed to a real Pushgateway and
scraped by a real Prometheus (``world`` fixture). Then every PromQL
expression of every dashboard (panel targets, annotations, variables) and
every alert rule must parse and return data, and may name only metrics and
labels the exporter produces.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.metrics.conftest import ALERTS, DASHBOARDS, RULES, World
from tests.metrics.promql import (
    COMPARISON_GAUGES,
    Expression,
    dashboard_expressions,
    dashboard_variables,
    has_data,
    panel_values,
    rule_expressions,
    substitute,
)
from tests.metrics.support import labels_of, names_in

pytestmark = [pytest.mark.servers, pytest.mark.slow]

BOARDS = sorted((DASHBOARDS / "grafana").glob("*.json"))
# Those naming the comparison gauges: test_comparison_panels.py, on a drill of 13 wards.
PANEL_EXPRESSIONS = [
    e for b in BOARDS for e in dashboard_expressions(b) if not e.needs_comparison()
]
RULE_EXPRESSIONS = rule_expressions(RULES)
VARIABLES = [v for b in BOARDS for v in dashboard_variables(b)]

# The municipality the detail dashboard is evaluated for: in the test world it
# has every kind of data (rejected and healthy chats, TLS, roll call, fallback).
DETAIL_MUNICIPALITY = "小笠原村"


def _values(world: World) -> dict[str, str]:
    return panel_values(world.t0, DETAIL_MUNICIPALITY)


def test_the_world_covers_every_exported_metric(world: World) -> None:
    from drills.metrics.catalogue import CATALOGUE, CHECKS

    exported = names_in(world.exposition)
    # The comparison among participants needs 10 municipalities in one drill; the world
    # drills 3, so these have no series here (test_comparison_panels.py has them).
    missing = [
        name
        for name, spec in CATALOGUE.items()
        if (name + "_bucket" if spec.type == "histogram" else name) not in exported
        and name not in COMPARISON_GAUGES
    ]
    assert not missing, f"the integration drill does not produce: {missing}"
    checked = set().union(*(names_in(text) for text in world.checks.values()))
    assert set(CHECKS) <= checked, f"/probe does not produce: {sorted(set(CHECKS) - checked)}"


@pytest.mark.parametrize("expression", PANEL_EXPRESSIONS, ids=lambda e: e.where)
def test_dashboard_expression_returns_data(world: World, expression: Expression) -> None:
    prom = world.stack.prometheus
    expr = substitute(expression.expr, _values(world))
    if expression.instant:
        result = prom.query(expr)
    else:
        result = prom.query_range(expr, world.t0, time.time(), step=1.0)
    assert has_data(result), f"{expression.where}: no data for\n{expr}"
    for label in expression.output_labels():
        for series in result:
            assert label in series["metric"], (
                f"{expression.where}: legend uses {{{{{label}}}}}, absent in {series['metric']}"
            )


@pytest.mark.parametrize("variable", VARIABLES, ids=lambda v: v[0])
def test_dashboard_variable_has_values(world: World, variable: tuple[str, str, str]) -> None:
    where, selector, label = variable
    series = world.stack.prometheus.series(substitute(selector, _values(world)), start=world.t0)
    values = {s.get(label) for s in series} - {None}
    assert values, f"{where}: label_values({selector}, {label}) is empty"


@pytest.mark.parametrize("expression", RULE_EXPRESSIONS, ids=lambda e: e.where)
def test_alert_expression_returns_data(world: World, expression: Expression) -> None:
    result = world.stack.prometheus.query(expression.expr)
    assert has_data(result), f"{expression.where}: no data for\n{expression.expr}"
    for label in expression.output_labels():
        for series in result:
            assert label in series["metric"], (
                f"{expression.where}: template uses $labels.{label}, absent in {series['metric']}"
            )


def test_prometheus_loaded_and_evaluates_every_rule(world: World) -> None:
    prom = world.stack.prometheus
    rules = {r["name"]: r for r in prom.rules()}
    assert set(ALERTS) == set(rules)
    assert all(r["health"] == "ok" for r in rules.values()), [
        r.get("lastError") for r in rules.values()
    ]
    active = {
        (a["labels"]["alertname"], a["labels"].get("municipality_code")) for a in prom.alerts()
    }
    # Each alert is active for the municipality the world was built to trip it.
    assert {
        # 奥多摩町: backup down and fallback lost → 50.0 (README, "Scoring model"); 小笠原村's
        # working chat2 and mail give it redundancy, so it stays above 75
        ("TsunagariReadinessLow", "133086"),
        ("TsunagariChannelUnreachableTwice", "133086"),
        ("TsunagariDrillOverdue", "134210"),
        ("TsunagariDrillOverdue", "131016"),  # registered, never drilled
        ("TsunagariTLSCertificateExpiring", "134210"),
        ("TsunagariTLSCertificateExpiring", "131016"),  # a check's certificate (/probe)
        ("TsunagariPreflightFailing", "133086"),  # its Slack token is refused
        ("TsunagariRollCallIncomplete", "131211"),
    } <= active
    # …and not for those that are fine.
    assert ("TsunagariChannelUnreachableTwice", "131211") not in active  # chat2 failed once only
    assert ("TsunagariDrillOverdue", "131211") not in active  # drilled, interval 30 days
    assert ("TsunagariRollCallIncomplete", "134210") not in active  # 5 of 5 answered
    assert ("TsunagariPreflightFailing", "131211") not in active  # its chat and SMS check fine


@pytest.mark.parametrize("expression", PANEL_EXPRESSIONS + RULE_EXPRESSIONS, ids=lambda e: e.where)
def test_expression_names_only_exported_metrics_and_labels(
    world: World, expression: Expression
) -> None:
    exported = world.exported()
    metrics = expression.metrics()
    assert metrics, f"{expression.where}: refers to no tsunagari metric"
    unknown = metrics - set(exported)
    assert not unknown, f"{expression.where}: the exporter produces no {sorted(unknown)}"
    known_labels = set().union(*(exported[m] for m in metrics))
    used = expression.labels() | expression.output_labels()
    assert used <= known_labels, f"{expression.where}: unknown labels {sorted(used - known_labels)}"


def test_scanner_catches_an_unknown_label(world: World) -> None:
    # The check above must be able to fail: a typo in a label is caught.
    bad = Expression("typo", 'sum by (municipality) (tsunagari_readiness_score{scenario=~".*"})')
    exported = labels_of(world.exposition)
    assert not bad.labels() <= exported["tsunagari_readiness_score"]


def test_every_dashboard_and_rule_was_checked() -> None:
    assert len(BOARDS) == 3
    assert len(RULE_EXPRESSIONS) == len(ALERTS)
    assert {Path(e.where.split(":")[0]).name for e in PANEL_EXPRESSIONS} == {b.stem for b in BOARDS}
