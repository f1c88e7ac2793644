"""Vantage points: the same scenario run from several places, combined into one view.

A run started with ``--vantage 庁内LAN`` (or LGWAN, テレワーク, モバイル …)
carries that label on its journal run, every delivery and every step event.
:func:`vantage_view` takes the latest run of each (scenario, vantage) from one
or more journals — runs made on different machines can be combined by passing
each machine's journal — and lines them up per municipality × channel::

    {"scenarios": [{"scenario": "首都直下地震 初動参集",
        "vantages": ["LGWAN", "テレワーク"],
        "runs": {"LGWAN": "20261127T…", "テレワーク": "20261127T…"},
        "municipalities": [{"code": "131211", "name": "足立区",
           "channels": [{"id": "chat", "kind": "webhook",
              "by_vantage": {"LGWAN": {"sent": 1, "counted": 1, "reached": 1,
                                       "drill_outage": 0, "reachability": 1.0,
                                       "latency_p50_s": 0.25}, "テレワーク": {…}}}]}],
        "steps": {"LGWAN": {"roll_call": [{"step", "all_answered_s", "never"}],
                            "acknowledgement": [{"step", "t50_s", "answered", "expected"}],
                            "fallback": [{"step", "reached", "municipalities"}]}}}]}

``reachability`` is the scorecard's (:func:`drills.scoring.reachability`):
(delivered + late) / counted, leaving out harness errors and messages sent
into the drill's own outage.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from drills.delivery import Outcome
from drills.journal import Journal
from drills.scoring import percentile, reachability

__all__ = ["vantage_view"]


def _latest_runs(
    journals: Sequence[Journal], scenario: str | None
) -> dict[str, dict[str, tuple[Journal, dict[str, Any]]]]:
    """scenario → vantage → (journal, run), the latest run of each."""
    out: dict[str, dict[str, tuple[Journal, dict[str, Any]]]] = {}
    for journal in journals:
        for run in journal.runs(scenario=scenario):
            slot = out.setdefault(run["scenario"], {})
            prior = slot.get(run["vantage"])
            if prior is None or run["started_at"] >= prior[1]["started_at"]:
                slot[run["vantage"]] = (journal, run)
    return out


def _step_summaries(journal: Journal, run_id: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for ev in journal.events(run_id):
        data, kind = ev["data"], ev["kind"]
        if kind == "roll_call":
            item = {
                "step": data.get("step"),
                "all_answered_s": data.get("all_answered_s"),
                "never": data.get("never"),
            }
        elif kind == "acknowledgement":
            overall = data.get("overall", {})
            item = {
                "step": data.get("step"),
                "t50_s": overall.get("t50_s"),
                "answered": overall.get("answered"),
                "expected": overall.get("expected"),
            }
        elif kind == "fallback":
            munis = data.get("municipalities", [])
            item = {
                "step": data.get("step"),
                "municipalities": len(munis),
                "reached": sum(1 for m in munis if m.get("reached_via")),
            }
        else:
            continue
        out.setdefault(kind, []).append(item)
    return out


def vantage_view(journals: Sequence[Journal], scenario: str | None = None) -> dict[str, Any]:
    """The latest run of every (scenario, vantage), side by side."""
    scenarios = []
    for name, by_vantage in sorted(_latest_runs(journals, scenario).items()):
        vantages = sorted(by_vantage)
        cells: dict[tuple[str, str], dict[str, Any]] = {}
        order: list[tuple[str, str]] = []
        names: dict[str, str] = {}
        steps = {}
        for vantage in vantages:
            journal, run = by_vantage[vantage]
            steps[vantage] = _step_summaries(journal, run["run_id"])
            for d in journal.deliveries(run["run_id"]):
                key = (d.municipality_code, d.channel_id)
                if key not in cells:
                    cells[key] = {"id": d.channel_id, "kind": d.kind, "by_vantage": {}}
                    order.append(key)
                names[d.municipality_code] = d.municipality_name
                slot = cells[key]["by_vantage"].setdefault(
                    vantage, {"sent": 0, "reached": 0, "_lat": [], "_outcomes": Counter()}
                )
                slot["sent"] += 1
                slot["_outcomes"][d.outcome.value] += 1
                if d.outcome.reached:
                    slot["reached"] += 1
                    slot["_lat"].append(d.latency_s or 0.0)
        munis: dict[str, dict[str, Any]] = {}
        for code, cid in order:
            cell = cells[(code, cid)]
            for slot in cell["by_vantage"].values():
                lat = slot.pop("_lat")
                outcomes = slot.pop("_outcomes")
                slot["counted"] = sum(n for o, n in outcomes.items() if Outcome(o).counted)
                slot["drill_outage"] = outcomes[Outcome.DRILL_OUTAGE.value]
                slot["reachability"] = round(reachability(outcomes), 4)
                p50 = percentile(lat, 50)
                slot["latency_p50_s"] = None if p50 is None else round(p50, 4)
            munis.setdefault(code, {"code": code, "name": names[code], "channels": []})[
                "channels"
            ].append(cell)
        scenarios.append(
            {
                "scenario": name,
                "vantages": vantages,
                "runs": {v: by_vantage[v][1]["run_id"] for v in vantages},
                "municipalities": [munis[code] for code in sorted(munis)],
                "steps": steps,
            }
        )
    return {"scenarios": scenarios}
