"""The scorecard: one run of the journal, scored per municipality and channel.

One model (a JSON-ready dict) feeds every output — terminal table, HTML,
Markdown, CSV and ``scorecard.json``. The contract (README, "scorecard.json")::

    {"run_id", "scenario", "vantage", "status", "started_at", "finished_at",
     "municipalities": [{"code", "name", "score", "grade",
        "channels": [{"id", "kind", "sent", "delivered", "late", "lost",
                      "rejected", "error", "accepted_only", "reachability",
                      "latency_p50_s", "latency_p95_s", "slo_met", "score"}]}]}

``reachability`` = (delivered + late) / counted, where counted leaves out
``error`` (the harness's) and ``drill_outage`` (sent into an outage the drill
itself made) — :func:`drills.scoring.reachability`. Each channel also has
``drill_outage`` (shown, never scored) and ``evidence``: how its delivered,
late and accepted messages are known — ``{"seen", "receipt", "accepted"}``
(a carrier receipt is never counted as seen).

extended (README, "Scoring model") with ``as_of``, ``model``, ``summary``,
``comparison`` (what got worse since the previous drill of the same scenario),
``trend``, ``latency_by_kind``, ``not_drilled`` and ``surge`` (the run's surges:
each one's ramp table and breaking point), and per municipality and
channel with ``status``, ``parts``, ``freshness``, ``change`` and more.
Times are ISO 8601 in Asia/Tokyo. Keys may be added; none is removed.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from drills.comparison import compare_cards
from drills.delivery import Delivery
from drills.journal import Journal
from drills.registry import Registry
from drills.scenario_events import read_ratios
from drills.scoring import (
    DAY_S,
    GRADES,
    WEIGHTS,
    Weights,
    freshness,
    grade,
    percentile,
    round_score,
    score_channel,
    score_municipality,
)
from drills.surge.summary import read_surges

__all__ = ["TOKYO", "build_scorecard", "iso_tokyo", "write_json"]

TOKYO = ZoneInfo("Asia/Tokyo")
TREND_RUNS = 12
_DEFAULT_REACH = 0.99


def iso_tokyo(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, TOKYO).isoformat(timespec="seconds")


@dataclass
class _Registered:
    """What the registry says (names, order, SLOs, intervals); empty without one."""

    order: list[tuple[str, list[str]]] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)
    names_en: dict[str, str | None] = field(default_factory=dict)
    labels: dict[tuple[str, str], str | None] = field(default_factory=dict)
    slo: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)
    interval: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, registry: Registry | None) -> _Registered:
        reg = cls()
        for m in registry.municipalities if registry is not None else ():
            reg.order.append((m.code, [c.id for c in m.channels]))
            reg.names[m.code] = m.name
            reg.names_en[m.code] = m.name_en
            if m.drill_interval_s:
                reg.interval[m.code] = m.drill_interval_s
            for c in m.channels:
                reg.slo[(m.code, c.id)] = (c.slo.reachability, c.slo.latency)
                reg.labels[(m.code, c.id)] = c.label
        return reg


def _last_drilled(journal: Journal, until: float) -> dict[str, float]:
    """Start time of each municipality's most recent drill at or before *until*."""
    # One aggregate query instead of reading every delivery of every run.
    rows = journal.db.execute(
        "SELECT d.municipality_code, MAX(r.started_at) FROM deliveries d "
        "JOIN runs r ON r.run_id = d.run_id WHERE r.started_at <= ? "
        "GROUP BY d.municipality_code",
        (until,),
    ).fetchall()
    return {code: float(at) for code, at in rows}


def _r(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def _freshness_info(
    code: str, last: dict[str, float], as_of: float, reg: _Registered, weights: Weights
) -> dict[str, Any]:
    interval = reg.interval.get(code, weights.default_drill_interval_s)
    at = last.get(code)
    age = None if at is None else max(0.0, as_of - at)
    value = freshness(age, interval)
    status = "never" if at is None else ("within_interval" if value >= 1.0 else "overdue")
    return {
        "last_drilled_at": iso_tokyo(at),
        "age_days": _r(None if age is None else age / DAY_S, 1),
        "drill_interval_days": _r(interval / DAY_S, 1),
        "value": round(value, 4),
        "status": status,
    }


def _channel_dict(
    cid: str, kind: str, items: list[Delivery], key: tuple[str, str], reg: _Registered, w: Weights
) -> tuple[dict[str, Any], Any]:
    slo_reach, slo_lat = reg.slo.get(
        key, (_DEFAULT_REACH, max((d.slo_latency_s or 60.0) for d in items))
    )
    cs = score_channel(items, slo_reach, slo_lat, w)
    out = {
        "id": cid,
        "kind": kind,
        "sent": cs.sent,
        **{k: cs.counts[k] for k in ("delivered", "late", "lost", "rejected", "error")},
        "accepted_only": cs.counts["accepted"],
        "reachability": round(cs.reachability, 4),
        "latency_p50_s": _r(cs.latency_p50_s),
        "latency_p95_s": _r(cs.latency_p95_s),
        "slo_met": cs.slo_met,
        "score": cs.score,
        # additions
        "label": reg.labels.get(key),
        "status": cs.status,
        "counted": cs.counted,
        "confirmed": cs.confirmed,
        "latency_max_s": _r(cs.latency_max_s),
        "slo_latency_s": slo_lat,
        "slo_reachability": slo_reach,
        "parts": {k: round(v, 4) for k, v in cs.parts.items()},
        "drill_outage": cs.counts["drill_outage"],
        "evidence": dict(cs.evidence),
    }
    return out, cs


def _score_run(
    journal: Journal, run_id: str, reg: _Registered, as_of: float | None, w: Weights
) -> dict[str, Any]:
    """The scorecard of one run without comparison or trend."""
    run = journal.run(run_id)
    as_of = as_of if as_of is not None else (run["finished_at"] or run["started_at"])
    grouped: dict[tuple[str, str], list[Delivery]] = defaultdict(list)
    names: dict[str, str] = {}
    kinds: dict[tuple[str, str], str] = {}
    for d in journal.deliveries(run_id):
        grouped[(d.municipality_code, d.channel_id)].append(d)
        names[d.municipality_code] = d.municipality_name
        kinds[(d.municipality_code, d.channel_id)] = d.kind
    order = list(reg.order)
    known = {code for code, _ in order}
    for code, _cid in grouped:
        if code not in known:
            order.append((code, []))
            known.add(code)
    fallbacks, bad_fb = read_ratios(journal.events(run_id, "fallback"))
    roll_calls, bad_rc = read_ratios(journal.events(run_id, "roll_call"))
    last = _last_drilled(journal, as_of)
    municipalities: list[dict[str, Any]] = []
    not_drilled: list[dict[str, Any]] = []
    for code, registered in order:
        name = reg.names.get(code) or names.get(code, code)
        fresh = _freshness_info(code, last, as_of, reg, w)
        ids = [c for c in registered if (code, c) in grouped] + sorted(
            c for (mc, c) in grouped if mc == code and c not in registered
        )
        if not ids:
            not_drilled.append(
                {"code": code, "name": name, "name_en": reg.names_en.get(code), **fresh}
            )
            continue
        channels, scores = [], []
        for cid in ids:
            ch, cs = _channel_dict(
                cid, kinds[(code, cid)], grouped[(code, cid)], (code, cid), reg, w
            )
            channels.append(ch)
            scores.append((ch["kind"], cs))
        fb, rc = fallbacks.get(code), roll_calls.get(code)
        ms = score_municipality(
            scores, freshness_value=fresh["value"], fallback=fb, roll_call=rc, weights=w
        )
        municipalities.append(
            {
                "code": code,
                "name": name,
                "score": ms.score,
                "grade": grade(ms.score),
                "channels": channels,
                # additions
                "name_en": reg.names_en.get(code),
                "parts": {k: round(v, 4) for k, v in ms.parts.items()},
                "redundancy": {
                    "confirmed_kinds": list(ms.confirmed_kinds),
                    "count": len(ms.confirmed_kinds),
                    "target": w.redundancy_target,
                },
                "fallback": None if fb is None else {"passed": fb.good, "total": fb.total},
                "roll_call": None if rc is None else {"responded": rc.good, "expected": rc.total},
                "freshness": fresh,
                "untested_channels": [c for c in registered if (code, c) not in grouped],
            }
        )
    scored = [m["score"] for m in municipalities if m["score"] is not None]
    overall = round_score(sum(scored) / len(scored)) if scored else None
    all_channels = [c for m in municipalities for c in m["channels"]]
    return {
        "run_id": run_id,
        "scenario": run["scenario"],
        "vantage": run["vantage"],
        "status": run["status"],
        "started_at": iso_tokyo(run["started_at"]),
        "finished_at": iso_tokyo(run["finished_at"]),
        "municipalities": municipalities,
        # additions
        "as_of": iso_tokyo(as_of),
        "summary": {
            "score": overall,
            "grade": grade(overall),
            "municipalities": len(municipalities),
            "not_drilled": len(not_drilled),
            "grades": {g: sum(m["grade"] == g for m in municipalities) for _b, g, _j, _e in GRADES},
            "channels": {
                s: sum(c["status"] == s for c in all_channels)
                for s in ("ok", "partial", "unconfirmed", "down", "untested")
            },
            "unreadable_events": bad_fb + bad_rc,
            "drill_outage": sum(c["drill_outage"] for c in all_channels),
            "evidence": {
                e: sum(c["evidence"][e] for c in all_channels)
                for e in ("seen", "receipt", "accepted")
            },
        },
        "not_drilled": not_drilled,
        "_deliveries": grouped,  # removed before the card leaves this module
    }


def _latency_by_kind(
    grouped: dict[tuple[str, str], list[Delivery]], card: dict[str, Any]
) -> dict[str, Any]:
    samples: dict[str, list[float]] = defaultdict(list)
    slos: dict[str, set[float]] = defaultdict(set)
    for m in card["municipalities"]:
        for ch in m["channels"]:
            slos[ch["kind"]].add(ch["slo_latency_s"])
            samples[ch["kind"]].extend(
                d.latency_s
                for d in grouped[(m["code"], ch["id"])]
                if d.outcome.reached and d.latency_s is not None
            )
    out: dict[str, Any] = {}
    for kind in sorted(slos):
        values = samples[kind]
        out[kind] = {
            "count": len(values),
            **{f"p{q}_s": _r(percentile(values, q)) for q in (0, 5, 25, 50, 75, 95, 100)},
            "slo_latency_s": sorted(slos[kind]),
        }
    return out


def _trend(
    journal: Journal,
    run: dict[str, Any],
    card: dict[str, Any],
    reg: _Registered,
    w: Weights,
    runs: Sequence[dict[str, Any]] | None,
    limit: int,
    scored: dict[str, dict[str, Any]],
) -> list[dict[str, Any]]:
    """Trend points of the last *limit* runs, this one last (*scored*: cards already made)."""
    if runs is None:
        runs = [
            r
            for r in journal.runs(scenario=run["scenario"], until=run["started_at"])
            if r["vantage"] == run["vantage"]
        ]
    earlier = (
        [r for r in runs if r["run_id"] != card["run_id"]][-(limit - 1) :] if limit > 1 else []
    )
    points = []
    for r in earlier:
        past = scored.get(r["run_id"]) or _score_run(journal, r["run_id"], reg, None, w)
        points.append(_trend_point(past))
    return [*points, _trend_point(card)]


def _trend_point(card: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_id": card["run_id"],
        "started_at": card["started_at"],
        "score": card["summary"]["score"],
        "grade": card["summary"]["grade"],
        "municipalities": {m["code"]: m["score"] for m in card["municipalities"]},
    }


def build_scorecard(
    journal: Journal,
    run_id: str,
    registry: Registry | None = None,
    *,
    as_of: float | None = None,
    weights: Weights = WEIGHTS,
    trend_runs: Sequence[dict[str, Any]] | None = None,
    trend_limit: int = TREND_RUNS,
) -> dict[str, Any]:
    """Score run *run_id* from the journal (the registry supplies SLOs, order, intervals).

    *as_of* (epoch seconds) is the moment freshness is judged at; by default
    the run's end, so the same journal always gives the same card. The previous
    drill of the same scenario and vantage is scored the same way and compared.
    *trend_runs* (journal run rows) replaces the default trend: the last
    *trend_limit* runs of the same scenario up to this one.
    """
    reg = _Registered.of(registry)
    run = journal.run(run_id)
    card = _score_run(journal, run_id, reg, as_of, weights)
    grouped = card.pop("_deliveries")
    card["model"] = {
        "weights": weights.as_dict(),
        "grades": [{"min": b, "grade": g, "ja": ja, "en": en} for b, g, ja, en in GRADES],
    }
    card["latency_by_kind"] = _latency_by_kind(grouped, card)
    surges, unreadable = read_surges(journal.events(run_id, "surge"))
    card["surge"] = [
        {**s.to_dict(), "started_at": iso_tokyo(s.started_at), "label": reg.labels.get(s.key)}
        for s in surges
    ]
    card["summary"]["unreadable_events"] += unreadable
    previous = journal.previous_run(run_id)
    prev_card = None
    if previous is not None:
        prev_card = _score_run(journal, previous["run_id"], reg, None, weights)
        prev_card.pop("_deliveries")
    card["comparison"] = compare_cards(card, prev_card, weights)
    card["summary"]["worsened"] = len(card["comparison"]["worsened"]) if prev_card else 0
    card["summary"]["improved"] = len(card["comparison"]["improved"]) if prev_card else 0
    scored = {prev_card["run_id"]: prev_card} if prev_card else {}
    card["trend"] = _trend(journal, run, card, reg, weights, trend_runs, trend_limit, scored)
    return card


def write_json(card: dict[str, Any], path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(card, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
