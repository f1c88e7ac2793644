"""What changed since the previous drill of the same scenario: worse first.

Each municipality and each of its channels is *improved*, *worsened* or
*unchanged* (score moved by less than ``WEIGHTS.change_threshold`` points; a
municipality whose grade letter moved counts as moved), *new* (no score
before) or *missing* (no score now). Every entry carries its reasons, in
Japanese and English, so the report can say *why*::

    {"level": "channel", "code": "131211", "name": "足立区", "channel": "mail",
     "status": "worsened", "before": 96.0, "after": 68.2, "delta": -27.8,
     "reasons": [{"ja": "到達率 100% → 70%", "en": "reachability 100% → 70%"}]}
"""

from __future__ import annotations

from typing import Any

from drills.core.scoring import STATUS_LABELS, WEIGHTS, Weights, change_status, round_score

__all__ = ["CHANGE_LABELS", "compare_cards"]

CHANGE_LABELS: dict[str, tuple[str, str, str]] = {
    # status -> (symbol, Japanese, English)
    "worsened": ("▼", "悪化", "worse"),
    "missing": ("▼", "今回は測定なし", "not measured this time"),
    "improved": ("▲", "改善", "better"),
    "new": ("＋", "新規", "new"),
    "unchanged": ("＝", "変化なし", "unchanged"),
}

_GRADE_ORDER = {"A": 4, "B": 3, "C": 2, "D": 1}
_LISTS = ("worsened", "missing", "improved", "new", "unchanged")


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.0f}%"


def _reason(ja: str, en: str) -> dict[str, str]:
    return {"ja": ja, "en": en}


def _channel_reasons(
    before: dict[str, Any] | None, after: dict[str, Any] | None
) -> list[dict[str, str]]:
    if before is None or after is None:
        return []
    out = []
    if before["status"] != after["status"]:
        b, a = STATUS_LABELS[before["status"]], STATUS_LABELS[after["status"]]
        out.append(_reason(f"状態 {b[0]} → {a[0]}", f"status {b[1]} → {a[1]}"))
    if _pct(before["reachability"]) != _pct(after["reachability"]):
        rb, ra = _pct(before["reachability"]), _pct(after["reachability"])
        out.append(_reason(f"到達率 {rb} → {ra}", f"reachability {rb} → {ra}"))
    p_b, p_a = before.get("latency_p95_s"), after.get("latency_p95_s")
    if (
        p_b is not None
        and p_a is not None
        and abs(p_a - p_b) >= 0.1
        and (abs(p_a - p_b) >= 0.2 * max(p_a, p_b))
    ):
        out.append(
            _reason(
                f"p95 遅延 {p_b:.2f} 秒 → {p_a:.2f} 秒", f"p95 latency {p_b:.2f} s → {p_a:.2f} s"
            )
        )
    return out


def _municipality_reasons(
    before: dict[str, Any] | None, after: dict[str, Any] | None
) -> list[dict[str, str]]:
    if before is None or after is None:
        return []
    out = []
    if before["grade"] != after["grade"]:
        out.append(
            _reason(
                f"評価 {before['grade']} → {after['grade']}",
                f"grade {before['grade']} → {after['grade']}",
            )
        )
    rb = before.get("redundancy", {}).get("count")
    ra = after.get("redundancy", {}).get("count")
    if rb is not None and ra is not None and rb != ra:
        out.append(
            _reason(
                f"到達を確認できた種別 {rb} → {ra}", f"kinds with a confirmed delivery {rb} → {ra}"
            )
        )
    for part, ja, en in (
        ("fallback", "代替経路", "fallback"),
        ("roll_call", "安否確認の応答", "roll call"),
    ):
        pb, pa = before.get("parts", {}).get(part), after.get("parts", {}).get(part)
        if pb is not None and pa is not None and _pct(pb) != _pct(pa):
            out.append(_reason(f"{ja} {_pct(pb)} → {_pct(pa)}", f"{en} {_pct(pb)} → {_pct(pa)}"))
    return out


def _score(item: dict[str, Any] | None) -> float | None:
    return None if item is None else item["score"]


def _municipality_status(
    before: dict[str, Any] | None, after: dict[str, Any] | None, w: Weights
) -> str:
    status = change_status(_score(before), _score(after), w)
    if status == "unchanged" and before and after and before["grade"] and after["grade"]:
        gb, ga = _GRADE_ORDER[before["grade"]], _GRADE_ORDER[after["grade"]]
        status = "worsened" if ga < gb else "improved" if ga > gb else status
    return status


def _entry(
    level: str,
    status: str,
    m: dict[str, Any],
    cid: str | None,
    before: Any,
    after: Any,
    reasons: list[dict[str, str]],
) -> dict[str, Any]:
    b = before["score"] if before else None
    a = after["score"] if after else None
    return {
        "level": level,
        "code": m["code"],
        "name": m["name"],
        "channel": cid,
        "kind": (after or before or {}).get("kind") if level == "channel" else None,
        "status": status,
        "before": b,
        "after": a,
        "delta": None if a is None or b is None else round_score(a - b),
        "grade_before": before.get("grade") if before and level == "municipality" else None,
        "grade_after": after.get("grade") if after and level == "municipality" else None,
        "reasons": reasons,
    }


def compare_cards(
    card: dict[str, Any], previous: dict[str, Any] | None, weights: Weights = WEIGHTS
) -> dict[str, Any]:
    """Compare *card* with *previous*; set ``change`` on each municipality and channel.

    Returns the ``comparison`` block: the previous run and the entries by status.
    """
    result: dict[str, Any] = {
        "previous_run_id": previous["run_id"] if previous else None,
        "previous_started_at": previous["started_at"] if previous else None,
        "previous_status": previous["status"] if previous else None,
        "previous_score": previous["summary"]["score"] if previous else None,
        **{k: [] for k in _LISTS},
    }
    if previous is None:
        for m in card["municipalities"]:
            m["change"] = None
            for ch in m["channels"]:
                ch["change"] = None
        return result
    prev_m = {m["code"]: m for m in previous["municipalities"]}
    now_m = {m["code"]: m for m in card["municipalities"]}
    codes = [m["code"] for m in card["municipalities"]] + [c for c in prev_m if c not in now_m]
    groups: list[tuple[float, int, list[dict[str, Any]]]] = []
    for i, code in enumerate(codes):
        before, after = prev_m.get(code), now_m.get(code)
        m = after or before
        assert m is not None
        status = _municipality_status(before, after, weights)
        entry = _entry(
            "municipality", status, m, None, before, after, _municipality_reasons(before, after)
        )
        entries = [entry]
        if after is not None:
            after["change"] = {k: entry[k] for k in ("status", "before", "delta", "reasons")}
        prev_ch = {c["id"]: c for c in (before or {}).get("channels", [])}
        now_ch = {c["id"]: c for c in (after or {}).get("channels", [])}
        channel_entries = []
        for cid in list(now_ch) + [c for c in prev_ch if c not in now_ch]:
            cb, ca = prev_ch.get(cid), now_ch.get(cid)
            c_status = change_status(_score(cb), _score(ca), weights)
            c_entry = _entry("channel", c_status, m, cid, cb, ca, _channel_reasons(cb, ca))
            if ca is not None:
                ca["change"] = {k: c_entry[k] for k in ("status", "before", "delta", "reasons")}
            channel_entries.append(c_entry)
        channel_entries.sort(key=lambda e: e["delta"] if e["delta"] is not None else 0.0)
        entries += channel_entries
        groups.append((entry["delta"] if entry["delta"] is not None else 0.0, i, entries))
    groups.sort(key=lambda g: (g[0], g[1]))  # the largest fall first, then card order
    for _delta, _i, entries in groups:
        for e in entries:
            result[e["status"]].append(e)
    return result
