"""The scorecard: one run of the journal, scored per municipality and channel.

The JSON contract (README, "scorecard.json")::

    {"run_id", "started_at", "finished_at",
     "municipalities": [{"code", "name", "score", "grade",
        "channels": [{"id", "kind", "sent", "delivered", "late", "lost",
                      "rejected", "error", "reachability", "latency_p50_s",
                      "latency_p95_s", "slo_met"}]}]}

Times are ISO 8601 in Asia/Tokyo. Extra keys may be added; none is removed.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from drills.delivery import Delivery
from drills.journal import Journal
from drills.registry import Registry
from drills.scoring import grade, score_channel

__all__ = ["TOKYO", "build_scorecard", "iso_tokyo", "write_json"]

TOKYO = ZoneInfo("Asia/Tokyo")


def iso_tokyo(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, TOKYO).isoformat(timespec="seconds")


def build_scorecard(journal: Journal, run_id: str, registry: Registry | None = None) -> dict[str, Any]:
    """Score run *run_id* from the journal (registry supplies SLOs and order)."""
    run = journal.run(run_id)
    deliveries = journal.deliveries(run_id)
    grouped: dict[tuple[str, str], list[Delivery]] = defaultdict(list)
    names: dict[str, str] = {}
    kinds: dict[tuple[str, str], str] = {}
    for d in deliveries:
        grouped[(d.municipality_code, d.channel_id)].append(d)
        names[d.municipality_code] = d.municipality_name
        kinds[(d.municipality_code, d.channel_id)] = d.kind
    order: list[tuple[str, list[str]]] = []
    slo: dict[tuple[str, str], tuple[float, float]] = {}
    if registry is not None:
        for m in registry.municipalities:
            names.setdefault(m.code, m.name)
            order.append((m.code, [c.id for c in m.channels]))
            for c in m.channels:
                slo[(m.code, c.id)] = (c.slo.reachability, c.slo.latency)
    seen = {code for code, _ in order}
    for code, cid in grouped:
        if code not in seen:
            order.append((code, []))
            seen.add(code)
    municipalities = []
    for code, registered in order:
        ids = [c for c in registered if (code, c) in grouped] + sorted(
            c for (mc, c) in grouped if mc == code and c not in registered
        )
        if not ids:
            continue
        channels = []
        for cid in ids:
            items = grouped[(code, cid)]
            slo_reach, slo_lat = slo.get(
                (code, cid), (0.99, max((d.slo_latency_s or 60.0) for d in items))
            )
            cs = score_channel(items, slo_reach, slo_lat)
            channels.append(
                {
                    "id": cid,
                    "kind": kinds[(code, cid)],
                    "sent": cs.sent,
                    **{k: cs.counts[k] for k in ("delivered", "late", "lost", "rejected", "error")},
                    "accepted_only": cs.counts["accepted"],
                    "reachability": round(cs.reachability, 4),
                    "latency_p50_s": _r(cs.latency_p50_s),
                    "latency_p95_s": _r(cs.latency_p95_s),
                    "slo_met": cs.slo_met,
                    "score": cs.score,
                }
            )
        score = round(sum(c["score"] for c in channels) / len(channels), 1)
        municipalities.append(
            {"code": code, "name": names.get(code, code), "score": score, "grade": grade(score), "channels": channels}
        )
    return {
        "run_id": run_id,
        "scenario": run["scenario"],
        "vantage": run["vantage"],
        "status": run["status"],
        "started_at": iso_tokyo(run["started_at"]),
        "finished_at": iso_tokyo(run["finished_at"]),
        "municipalities": municipalities,
    }


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def write_json(card: dict[str, Any], path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(card, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
