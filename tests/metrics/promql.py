"""Reading dashboards and rules for the tests: every PromQL expression, and the names in it.

A deliberately small PromQL scanner: it finds metric names (``tsunagari_*``)
and label names (matchers, ``by``/``without``/``on``/``ignoring``/
``group_left``/``group_right`` lists, legends ``{{label}}``, rule templates
``$labels.x``). Prometheus itself parses the expressions in the integration
test; this only checks that the names exist in what the exporter produces.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

METRIC_RE = re.compile(r"\btsunagari_[a-z0-9_]+\b")
MATCHER_RE = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*\"")
GROUPING_RE = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
LEGEND_RE = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")
TEMPLATE_LABEL_RE = re.compile(r"\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)")
VARIABLE_RE = re.compile(r"\$\{?(__[a-z_]+|[a-zA-Z_][a-zA-Z0-9_]*)\}?")
LABEL_VALUES_RE = re.compile(r"^label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$")


# The comparison among participants (drills.core.standing): only a drill of 10 or more
# municipalities has these gauges, so the expressions naming them are evaluated on a 13-ward
# drill (test_comparison_panels.py); the metrics world drills 3 and evaluates the rest.
COMPARISON_GAUGES = frozenset(
    f"tsunagari_{figure}_{gauge}"
    for figure in ("readiness", "latency_standing")
    for gauge in ("rank", "percentile", "deviation_score")
)


@dataclass(frozen=True)
class Expression:
    where: str  # "dashboard: panel title [refId]" or "rule: AlertName"
    expr: str
    instant: bool = False
    legend: str = ""
    templates: str = ""  # rule annotations (for $labels.x)

    def metrics(self) -> set[str]:
        return set(METRIC_RE.findall(self.expr))

    def labels(self) -> set[str]:
        inside = {m.group(1) for m in MATCHER_RE.finditer(self.expr)}
        for group in GROUPING_RE.finditer(self.expr):
            inside.update(x.strip() for x in group.group(1).split(",") if x.strip())
        return inside

    def output_labels(self) -> set[str]:
        return set(LEGEND_RE.findall(self.legend)) | set(TEMPLATE_LABEL_RE.findall(self.templates))

    def needs_comparison(self) -> bool:
        """Whether it names a gauge only a drill of 10 or more municipalities has."""
        return bool(self.metrics() & COMPARISON_GAUGES)


def _panels(panels: list[dict]) -> Iterator[dict]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels") or [])


def dashboard_expressions(path: Path) -> list[Expression]:
    board = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for panel in _panels(board.get("panels") or []):
        for target in panel.get("targets") or []:
            if "expr" in target:
                out.append(
                    Expression(
                        f"{path.stem}: {panel['title']} [{target.get('refId', '')}]",
                        target["expr"],
                        bool(target.get("instant")),
                        target.get("legendFormat", ""),
                    )
                )
    for annotation in (board.get("annotations") or {}).get("list") or []:
        if annotation.get("expr"):
            out.append(
                Expression(f"{path.stem}: annotation {annotation['name']}", annotation["expr"])
            )
    return out


def dashboard_variables(path: Path) -> list[tuple[str, str, str]]:
    """(where, metric selector, label) of each ``label_values(selector, label)`` variable."""
    board = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for var in (board.get("templating") or {}).get("list") or []:
        query = var.get("query")
        text = query.get("query") if isinstance(query, dict) else None
        if var.get("type") == "query" and isinstance(text, str):
            match = LABEL_VALUES_RE.match(text)
            assert match, f"{path.stem}: variable {var['name']}: not label_values(): {text}"
            out.append((f"{path.stem}: ${var['name']}", match.group(1), match.group(2)))
    return out


def rule_expressions(path: Path) -> list[Expression]:
    rules = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [
        Expression(
            f"rule: {rule['alert']}",
            rule["expr"],
            True,
            templates=json.dumps(rule.get("annotations") or {}, ensure_ascii=False),
        )
        for group in rules["groups"]
        for rule in group["rules"]
    ]


def substitute(expr: str, values: dict[str, str]) -> str:
    """Replace Grafana variables (``$name``, ``${name}``) with *values*."""

    def repl(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise KeyError(f"no test value for ${name} in {expr}")
        return values[name]

    return VARIABLE_RE.sub(repl, expr)


def panel_values(t0: float, municipality: str) -> dict[str, str]:
    """Grafana's variables for evaluating panels on data pushed since *t0*: every scenario
    and vantage, the detail board's *municipality*, ranges that reach back past *t0*."""
    window = max(60, int(time.time() - t0) + 5)
    return {
        "scenario": ".*",
        "vantage": ".*",
        "municipality": municipality,
        "channel": ".*",
        "__rate_interval": "10s",
        "__interval": "2s",
        "__range": f"{window}s",
    }


def has_data(result: list[dict[str, Any]]) -> bool:
    """Whether a query's result has a sample that is a number (not NaN)."""
    for series in result:
        points = series.get("values") or [series.get("value")]
        if any(p is not None and not math.isnan(float(p[1])) for p in points):
            return True
    return False
