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
itself made) — :func:`drills.core.scoring.reachability`. Each channel also has
``drill_outage`` (shown, never scored) and ``evidence``: how its delivered,
late and accepted messages are known — ``{"seen", "receipt", "accepted"}``
(a carrier receipt is never counted as seen).

extended (README, "Scoring model") with ``as_of``, ``model``, ``summary``,
``comparison`` (what got worse since the previous drill of the same scenario),
``trend``, ``latency_by_kind``, ``not_drilled`` and ``surge`` (the run's surges:
each one's ramp table and breaking point), and per municipality and
channel with ``status``, ``parts``, ``freshness``, ``change`` and more.
``standing`` (top level: each compared figure's ``n``, mean and σ; per
municipality: rank, percentile and 偏差値 of its score and of its p50/p95
latency per channel kind among this drill's municipalities) is
:func:`drills.core.standing.drill_standing`.
``failures`` (top level: the municipalities no message reached, grouped by stage
and cause, those that could not be judged, and counts per stage and cause of every
record not delivered; per channel: its records not delivered by stage and cause;
``summary.unreachable``) is :func:`drills.reporting.failures.failure_summary`.
``announcement`` is ``{"announced": true}``, or for an unannounced drill (抜き打ち訓練)
``{"announced": false, "window", "zone", "drawn_by", "label", "note"}`` — its answer
times were measured without notice (:func:`drills.reporting.announcement.announcement`).
``send_wait`` (top level: ``scored`` false, ``drill`` and per step ``sent``, ``measured``,
``p50_s``, ``p95_s``, ``max_s``) is how long the harness itself held the messages before
they left — never latency, never in a score (:mod:`drills.reporting.send_wait`).
Times are ISO 8601 in Asia/Tokyo. Keys may be added; none is removed.

Every number comes from the runs' digests (:mod:`drills.metrics.digest`, stored in the
journal), never from the deliveries or step events themselves; freshness,
which depends on the moment the card is made for, is applied here.
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

from drills.core.journal import Journal
from drills.core.registry import Registry
from drills.core.scoring import (
    DAY_S,
    GRADES,
    WEIGHTS,
    Weights,
    freshness,
    grade,
    percentile,
    round_score,
)
from drills.core.standing import drill_standing, kind_latencies
from drills.metrics.digest import ChannelDigest, RunDigest, last_drilled, run_digest
from drills.reporting.announcement import announcement
from drills.reporting.comparison import compare_cards
from drills.reporting.failures import failure_order, failure_summary
from drills.reporting.send_wait import send_wait_block

__all__ = ["TOKYO", "build_scorecard", "iso_tokyo", "write_json"]

TOKYO = ZoneInfo("Asia/Tokyo")
TREND_RUNS = 12


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


def _channel_dict(ch: ChannelDigest, reg: _Registered) -> dict[str, Any]:
    cs = ch.score
    assert cs is not None and ch.slo is not None  # run_digest scores against the SLOs given
    slo_reach, slo_lat = ch.slo
    return {
        "id": ch.channel_id,
        "kind": ch.kind,
        "sent": cs.sent,
        **{k: cs.counts[k] for k in ("delivered", "late", "lost", "rejected", "error")},
        "accepted_only": cs.counts["accepted"],
        "reachability": round(cs.reachability, 4),
        "latency_p50_s": _r(cs.latency_p50_s),
        "latency_p95_s": _r(cs.latency_p95_s),
        "slo_met": cs.slo_met,
        "score": cs.score,
        # additions
        "label": reg.labels.get(ch.key),
        "status": cs.status,
        "counted": cs.counted,
        "confirmed": cs.confirmed,
        "latency_max_s": _r(cs.latency_max_s),
        "slo_latency_s": slo_lat,
        "slo_reachability": slo_reach,
        "parts": {k: round(v, 4) for k, v in cs.parts.items()},
        "drill_outage": cs.counts["drill_outage"],
        "evidence": dict(cs.evidence),
        "failures": _channel_failures(ch),
        "not_judged": dict(sorted(ch.unjudged.items())),  # harness fault, interrupted
    }


def _channel_failures(ch: ChannelDigest) -> list[dict[str, Any]]:
    """The channel's records not delivered by stage and cause (:mod:`drills.core.taxonomy`)."""
    return [
        {"stage": st, "cause": ca, "count": n}
        for (st, ca), n in sorted(ch.failures.items(), key=lambda kv: failure_order(*kv[0]))
    ]


def _score_run(
    journal: Journal,
    run: dict[str, Any],
    reg: _Registered,
    as_of: float | None,
    w: Weights,
    *,
    full: bool = True,
) -> tuple[dict[str, Any], RunDigest]:
    """The scorecard of one run without comparison or trend, and the digest it was read from.

    Read from the run's digest (:func:`drills.metrics.digest.run_digest`); freshness, which
    depends on *as_of*, is applied here. Without *full* (a past run, for the
    comparison or the trend), freshness is looked up only for the municipalities
    in the run: the others' is never shown.
    """
    digest = run_digest(journal, run, reg.slo, w)
    as_of = as_of if as_of is not None else (run["finished_at"] or run["started_at"])
    drilled = list(dict.fromkeys(code for code, _cid in digest.channels))
    order = list(reg.order)
    known = {code for code, _ in order}
    for code in drilled:
        if code not in known:
            order.append((code, []))
            known.add(code)
    last = last_drilled(journal, [code for code, _ in order] if full else drilled, as_of)
    municipalities: list[dict[str, Any]] = []
    not_drilled: list[dict[str, Any]] = []
    for code, registered in order:
        muni = digest.municipalities.get(code)
        name = reg.names.get(code) or (muni.name if muni else code)
        fresh = _freshness_info(code, last, as_of, reg, w)
        ids = [c for c in registered if (code, c) in digest.channels] + sorted(
            c for (mc, c) in digest.channels if mc == code and c not in registered
        )
        if not ids:
            not_drilled.append(
                {"code": code, "name": name, "name_en": reg.names_en.get(code), **fresh}
            )
            continue
        channels = [_channel_dict(digest.channels[(code, cid)], reg) for cid in ids]
        ms = digest.municipality_score(code, fresh["value"], w)
        fb = muni.fallback if muni else None
        rc = muni.roll_call if muni else None
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
                "untested_channels": [c for c in registered if (code, c) not in digest.channels],
            }
        )
    scored = [m["score"] for m in municipalities if m["score"] is not None]
    overall = round_score(sum(scored) / len(scored)) if scored else None
    all_channels = [c for m in municipalities for c in m["channels"]]
    card = {
        "run_id": run["run_id"],
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
            "unreadable_events": digest.unreadable_events,
            "drill_outage": sum(c["drill_outage"] for c in all_channels),
            "evidence": {
                e: sum(c["evidence"][e] for c in all_channels)
                for e in ("seen", "receipt", "accepted")
            },
        },
        "not_drilled": not_drilled,
    }
    return card, digest


def _latency_by_kind(digest: RunDigest, card: dict[str, Any]) -> dict[str, Any]:
    samples: dict[str, list[float]] = defaultdict(list)
    slos: dict[str, set[float]] = defaultdict(set)
    for m in card["municipalities"]:
        for ch in m["channels"]:
            slos[ch["kind"]].add(ch["slo_latency_s"])
            samples[ch["kind"]].extend(digest.channels[(m["code"], ch["id"])].latencies)
    out: dict[str, Any] = {}
    for kind in sorted(slos):
        values = samples[kind]
        out[kind] = {
            "count": len(values),
            **{f"p{q}_s": _r(percentile(values, q)) for q in (0, 5, 25, 50, 75, 95, 100)},
            "slo_latency_s": sorted(slos[kind]),
        }
    return out


def _standing(digest: RunDigest, card: dict[str, Any]) -> dict[str, Any]:
    """Each municipality's place among this drill's (:mod:`drills.core.standing`).

    Sets ``standing`` on every municipality; a municipality's latency of a kind
    pools the arrivals of its channels of that kind. Returns the populations.
    """
    latencies = kind_latencies(
        (m["code"], ch["kind"], digest.channels[(m["code"], ch["id"])].latencies)
        for m in card["municipalities"]
        for ch in m["channels"]
    )
    scores = {m["code"]: m["score"] for m in card["municipalities"]}
    populations, per = drill_standing(scores, latencies)
    for m in card["municipalities"]:
        m["standing"] = per[m["code"]]
    return populations


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
        runs = journal.runs(
            scenario=run["scenario"], until=run["started_at"], vantage=run["vantage"], last=limit
        )
    earlier = (
        [r for r in runs if r["run_id"] != card["run_id"]][-(limit - 1) :] if limit > 1 else []
    )
    points = []
    for r in earlier:
        past = scored.get(r["run_id"]) or _score_run(journal, r, reg, None, w, full=False)[0]
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
    card, digest = _score_run(journal, run, reg, as_of, weights)
    card["model"] = {
        "weights": weights.as_dict(),
        "grades": [{"min": b, "grade": g, "ja": ja, "en": en} for b, g, ja, en in GRADES],
    }
    card["announcement"] = announcement(run.get("meta"))  # 抜き打ち訓練 (drills.core.unannounced)
    card["failures"] = failure_summary(card)  # where the chain broke (J-ALERT style)
    card["summary"]["unreachable"] = sum(
        len(g["municipalities"]) for g in card["failures"]["unreachable"]
    )
    card["latency_by_kind"] = _latency_by_kind(digest, card)
    card["send_wait"] = send_wait_block(digest.send_wait)  # the harness's, never scored
    card["standing"] = _standing(digest, card)
    card["surge"] = [
        {**s.to_dict(), "started_at": iso_tokyo(s.started_at), "label": reg.labels.get(s.key)}
        for s in digest.surges
    ]
    previous = journal.previous_run(run_id)
    prev_card = None
    if previous is not None:
        prev_card = _score_run(journal, previous, reg, None, weights, full=False)[0]
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
