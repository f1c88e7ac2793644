"""The comparison panels, evaluated by a real Prometheus on a drill of 13 wards.

Rank, percentile and 偏差値 exist only when 10 or more municipalities are compared; the
metrics world drills 3, so the panel expressions naming those gauges are evaluated here,
as ``test_prometheus_integration`` evaluates the others: the hand-written 13-ward drill
of the scorecard tests (:mod:`tests.scorecard.standing_sample`) is pushed with
:func:`push_run` to its own real Pushgateway, scraped by its own real Prometheus; every
such expression must parse, return data and name only metrics and labels the exporter
produces, and the tables show the scorecard's figures, one row per series.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from drills.core.journal import Journal
from drills.metrics.collector import exposition
from drills.metrics.push import push_run
from drills.reporting.scorecard import build_scorecard
from tests.metrics.conftest import DASHBOARDS
from tests.metrics.promql import (
    COMPARISON_GAUGES,
    Expression,
    dashboard_expressions,
    has_data,
    panel_values,
    substitute,
)
from tests.metrics.support import labels_of
from tests.scorecard.standing_sample import fill_standing_drill
from tests.servers.prometheus import PROMTOOL, Prometheus, Pushgateway

pytestmark = [pytest.mark.servers, pytest.mark.slow]

BOARDS = sorted((DASHBOARDS / "grafana").glob("*.json"))
EXPRESSIONS = [e for b in BOARDS for e in dashboard_expressions(b) if e.needs_comparison()]
WARD = "中央区"  # the detail board's $municipality here: fastest p95 by mail
STANDING = ("rank", "percentile", "deviation_score")  # the gauges, in the tables' order
GAUGES = ("rank", "percentile", "deviation")  # the scorecard's keys for them


@dataclass
class Compared:
    prometheus: Prometheus
    exposition: str
    card: dict[str, Any]
    t0: float  # before the push


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Compared]:
    base = tmp_path_factory.mktemp("comparison")
    gateway = Pushgateway(base / "pushgateway")
    prometheus = Prometheus(base / "prometheus", {"pushgateway": "127.0.0.1:0"})
    try:
        gateway.start()
        prometheus.targets = {"pushgateway": gateway.address}
        prometheus.start()
        with Journal(base / "journal.sqlite") as journal:
            run_id = fill_standing_drill(journal)
            card = build_scorecard(journal, run_id)
            text = exposition(journal).decode()
            t0 = time.time()
            push_run(journal, run_id, gateway.url)
        for gauge in sorted(COMPARISON_GAUGES):  # every series of the drill scraped
            want = sum(1 for line in text.splitlines() if line.startswith(gauge + "{"))
            assert want, f"the 13-ward drill has no {gauge}"
            prometheus.wait_for(
                f"count({gauge})", lambda r, n=want: bool(r) and float(r[0]["value"][1]) == n
            )
        yield Compared(prometheus, text, card, t0)
    finally:
        prometheus.stop()
        gateway.stop()


def _run(compared: Compared, expression: Expression) -> list[dict[str, Any]]:
    expr = substitute(expression.expr, panel_values(compared.t0, WARD))
    if expression.instant:
        return compared.prometheus.query(expr)
    return compared.prometheus.query_range(expr, compared.t0, time.time(), step=1.0)


def test_every_comparison_panel_is_evaluated_here() -> None:
    panels: dict[str, set[str]] = {}
    for e in EXPRESSIONS:
        panels.setdefault(e.where.rsplit(" [", 1)[0], set()).update(e.metrics())
    figures = {"readiness", "latency_standing"}
    assert set().union(*panels.values()) == COMPARISON_GAUGES
    for where, metrics in panels.items():  # each table has all three gauges of one figure
        assert any(metrics == {f"tsunagari_{f}_{g}" for g in STANDING} for f in figures), where
    boards = {where.split(":")[0] for where in panels}
    assert boards == {"cio-overview", "municipality-detail"}


@pytest.mark.parametrize("expression", EXPRESSIONS, ids=lambda e: e.where)
def test_comparison_expression_returns_data(compared: Compared, expression: Expression) -> None:
    result = _run(compared, expression)
    assert has_data(result), f"{expression.where}: no data"
    for label in expression.output_labels():
        for series in result:
            assert label in series["metric"], f"{expression.where}: {{{{{label}}}}} absent"


@pytest.mark.parametrize("expression", EXPRESSIONS, ids=lambda e: e.where)
def test_comparison_expression_names_only_exported_metrics_and_labels(
    compared: Compared, expression: Expression
) -> None:
    exported = labels_of(compared.exposition)
    unknown = expression.metrics() - set(exported)
    assert not unknown, f"{expression.where}: the exporter produces no {sorted(unknown)}"
    known = set().union(*(exported[m] for m in expression.metrics()))
    used = expression.labels() | expression.output_labels()
    assert used <= known, f"{expression.where}: unknown labels {sorted(used - known)}"


def _table(compared: Compared, title: str) -> dict[tuple[str, ...], tuple[float, ...]]:
    """A standing table as Grafana's merge makes it: the three queries' series joined on
    their labels, one row each (a row only one query has would be a broken table)."""
    queries = sorted((e for e in EXPRESSIONS if title in e.where), key=lambda e: e.where)
    assert len(queries) == 3, title
    columns = []
    for e in queries:
        result = _run(compared, e)
        rows = {tuple(sorted(s["metric"].items())): float(s["value"][1]) for s in result}
        assert len(rows) == len(result)  # no two series with the same labels
        columns.append(rows)
    assert columns[0].keys() == columns[1].keys() == columns[2].keys()
    out = {}
    for labels in columns[0]:
        d = dict(labels)
        key = (d["municipality_code"], d.get("channel_kind", ""), d.get("stat", ""))
        out[key] = tuple(c[labels] for c in columns)
    return out


def test_the_latency_table_shows_the_scorecards_standing(compared: Compared) -> None:
    expected = {
        (m["code"], kind, quantile): tuple(float(s[g]) for g in GAUGES)
        for m in compared.card["municipalities"]
        for kind, by_quantile in m["standing"]["latency"].items()
        for quantile, s in by_quantile.items()
        if s is not None and s["rank"] is not None
    }
    assert len(expected) == 2 * (10 + 11)  # mail and webhook, p50 and p95 (SMS: 3, too few)
    assert _table(compared, "cio-overview: 遅延の比較") == expected
    mine = _table(compared, "municipality-detail: この団体の遅延の比較")
    assert mine == {k: v for k, v in expected.items() if k[0] == "131024"}  # $municipality
    assert mine[("131024", "mail", "p95")][0] == 1.0  # the fastest p95 by mail


def test_the_readiness_table_shows_the_scorecards_standing(compared: Compared) -> None:
    expected = {
        (m["code"], "", ""): tuple(float(m["standing"]["score"][g]) for g in GAUGES)
        for m in compared.card["municipalities"]
        if m["score"] is not None
    }
    assert len(expected) == 12  # the untested ward has no score, so no standing
    assert _table(compared, "cio-overview: 即応性スコアの比較") == expected


def test_promtool_accepts_the_comparison_gauges(compared: Compared) -> None:
    done = subprocess.run(
        [PROMTOOL, "check", "metrics"],
        input=compared.exposition,
        capture_output=True,
        text=True,
        timeout=60,
    )
    said = (done.stdout + done.stderr).strip()
    assert done.returncode == 0 and not said, said[:300]
