"""Vantage points: the same scenario run from several places, combined into one view.

A run started with ``--vantage 庁内LAN`` (or LGWAN, テレワーク, モバイル …)
carries that label on its journal run, every delivery and every step event.
:func:`vantage_view` takes the latest run of each (scenario, vantage) from one
or more journals — runs made on different machines can be combined by passing
each machine's journal — and lines them up per municipality × channel::

    {"scenarios": [{"scenario": "首都直下地震 初動参集",
        "vantages": ["LGWAN", "テレワーク"],
        "runs": {"LGWAN": "20261127T…", "テレワーク": "20261127T…"},
        "announced": {"LGWAN": true, "テレワーク": false},
        "municipalities": [{"code": "131211", "name": "足立区",
           "channels": [{"id": "chat", "kind": "webhook",
              "by_vantage": {"LGWAN": {"sent": 1, "counted": 1, "reached": 1,
                                       "drill_outage": 0, "reachability": 1.0,
                                       "latency_p50_s": 0.25, "latency_p95_s": 0.25},
                             "テレワーク": {…}}}],
           "by_vantage": {"LGWAN": {"fallback": {"passed": 1, "total": 1},
                                    "roll_call": {"responded": 1, "expected": 1}}}}],
        "steps": {"LGWAN": {"roll_call": [{"step", "all_answered_s", "never"}],
                            "acknowledgement": [{"step", "t50_s", "answered", "expected"}],
                            "fallback": [{"step", "reached", "municipalities"}]}}}]}

Every figure is read from the run's digest (:func:`drills.metrics.digest.run_digest`,
stored in the journal) — the same numbers the scorecard and the metrics show:
``reachability`` is :func:`drills.core.scoring.reachability` ((delivered + late) /
counted, leaving out harness errors and messages sent into the drill's own
outage), ``latency_p50_s`` / ``latency_p95_s`` the digest's quantiles of the
messages that arrived with a measured latency, the step lines its step
summaries (read through :mod:`drills.core.events`), and a municipality's
``fallback`` / ``roll_call`` its results in the digest (null when the run had
no such step for it). ``announced`` is false for an unannounced run (抜き打ち訓練,
:mod:`drills.core.unannounced`): its acknowledgement and roll-call times were
measured without notice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from drills.core.journal import Journal
from drills.core.unannounced import is_announced
from drills.metrics.digest import ChannelDigest, MuniDigest, RunDigest, run_digest

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


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _cell(ch: ChannelDigest) -> dict[str, Any]:
    return {
        "sent": ch.sent,
        "reached": ch.reached,
        "counted": ch.counted,
        "drill_outage": ch.outcomes.get("drill_outage", 0),
        "reachability": round(ch.reachability, 4),
        "latency_p50_s": _r(ch.quantiles.get("p50")),
        "latency_p95_s": _r(ch.quantiles.get("p95")),
    }


def _results(muni: MuniDigest) -> dict[str, Any]:
    fb, rc = muni.fallback, muni.roll_call
    return {
        "fallback": None if fb is None else {"passed": fb.good, "total": fb.total},
        "roll_call": None if rc is None else {"responded": rc.good, "expected": rc.total},
    }


def _steps(digest: RunDigest) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for step in digest.steps:
        out.setdefault(step.kind, []).append(dict(step.figures))
    return out


def vantage_view(journals: Sequence[Journal], scenario: str | None = None) -> dict[str, Any]:
    """The latest run of every (scenario, vantage), side by side."""
    scenarios = []
    for name, by_vantage in sorted(_latest_runs(journals, scenario).items()):
        vantages = sorted(by_vantage)
        cells: dict[tuple[str, str], dict[str, Any]] = {}
        munis: dict[str, dict[str, Any]] = {}
        steps = {}
        for vantage in vantages:
            journal, run = by_vantage[vantage]
            digest = run_digest(journal, run)
            steps[vantage] = _steps(digest)
            for key, ch in digest.channels.items():
                muni = munis.setdefault(
                    ch.code, {"code": ch.code, "name": ch.name, "channels": [], "by_vantage": {}}
                )
                if key not in cells:
                    cells[key] = {"id": ch.channel_id, "kind": ch.kind, "by_vantage": {}}
                    muni["channels"].append(cells[key])
                cells[key]["by_vantage"][vantage] = _cell(ch)
            for code, md in digest.municipalities.items():
                if code in munis:
                    munis[code]["by_vantage"][vantage] = _results(md)
        scenarios.append(
            {
                "scenario": name,
                "vantages": vantages,
                "runs": {v: by_vantage[v][1]["run_id"] for v in vantages},
                # false: a 抜き打ち訓練, its answer times measured without notice
                "announced": {v: is_announced(by_vantage[v][1]["meta"]) for v in vantages},
                "municipalities": [munis[code] for code in sorted(munis)],
                "steps": steps,
            }
        )
    return {"scenarios": scenarios}
