"""The scorecard as Markdown (to paste into chat) and CSV (for spreadsheets).

Both render the same card dict as every other output; the Markdown opens with
what got worse since the previous drill, then where the chain broke for the
municipalities no message reached (:mod:`drills.reporting.failures`).
Accepted-only messages are shown as unconfirmed (``?``), never as delivered;
an arrival known only from a carrier receipt is marked ``受信報告`` / ``receipt``, never shown as seen; messages
sent into the drill's own outage are ``訓練による停止`` / ``drill outage``,
outside the count and never lost. The harness's own wait before sending is a section
of its own (:mod:`drills.reporting.send_wait`), never in a latency.

    >>> channel_cell({"status": "unconfirmed", "confirmed": 0, "counted": 4, "accepted_only": 4,
    ...               "latency_p95_s": None, "lost": 0, "rejected": 0}, Text("en"))
    '? 0/4 unconfirmed 4'
    >>> channel_cell({"status": "ok", "confirmed": 9, "counted": 9, "accepted_only": 0,
    ...               "latency_p95_s": 1.5, "lost": 0, "rejected": 0, "drill_outage": 2,
    ...               "evidence": {"seen": 6, "receipt": 3, "accepted": 0}}, Text("ja"))
    '✔ 9/9 p95 1.50s 受信報告3 訓練による停止2'
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any

from drills.core.i18n import Text
from drills.core.scoring import STATUS_LABELS, WEIGHTS, grade_label, round_score
from drills.reporting.announcement import announcement_markdown
from drills.reporting.comparison import CHANGE_LABELS
from drills.reporting.failures import failures_markdown
from drills.reporting.send_wait import send_wait_markdown
from drills.reporting.standing import standing_markdown
from drills.surge.report import curve_columns, curve_legend, curve_rows, verdict

__all__ = [
    "CSV_COLUMNS",
    "FRESHNESS_LABELS",
    "STATUS_SYMBOL",
    "change_cell",
    "channel_cell",
    "channel_ids",
    "evidence_note",
    "human_time",
    "surge_heading",
    "to_csv",
    "to_markdown",
    "worse_entries",
]

STATUS_SYMBOL = {"ok": "✔", "partial": "△", "unconfirmed": "?", "down": "✘", "untested": "—"}

FRESHNESS_LABELS = {
    "never": ("未実施", "never drilled"),
    "within_interval": ("期限内", "within interval"),
    "overdue": ("期限切れ", "overdue"),
}


def human_time(iso: str | None, with_date: bool = True) -> str:
    """``2026-11-27 19:15`` from an ISO time (already Asia/Tokyo)."""
    if not iso:
        return "—"
    ts = datetime.fromisoformat(iso)
    return ts.strftime("%Y-%m-%d %H:%M" if with_date else "%H:%M")


def channel_ids(card: dict[str, Any]) -> list[str]:
    """Channel ids across municipalities, in first-seen order (table columns)."""
    ids: list[str] = []
    for m in card["municipalities"]:
        for ch in [*m["channels"], *({"id": c} for c in m.get("untested_channels", []))]:
            if ch["id"] not in ids:
                ids.append(ch["id"])
    return ids


def channel_cell(ch: dict[str, Any], t: Text) -> str:
    """``✔ 5/5 p95 0.25s`` — reached / counted, p95, then how it is known and what went wrong.

    Reached counts seen arrivals and carrier receipts; the receipts are named
    (受信報告 / receipt). Drill outages are outside the count and named last.
    """
    status = ch.get("status", "untested")
    parts = [STATUS_SYMBOL[status], f"{ch['confirmed']}/{ch['counted']}"]
    if ch.get("latency_p95_s") is not None:
        parts.append(f"p95 {ch['latency_p95_s']:.2f}s")
    evidence = ch.get("evidence")
    shown = dict(ch)
    if evidence is not None:
        shown["receipt"] = evidence.get("receipt", 0)
        # accepted-only by evidence: an accepted message with a receipt is counted as a receipt
        shown["accepted_only"] = evidence.get("accepted", 0)
    for key, ja, en in (
        ("receipt", "受信報告", "receipt"),
        ("accepted_only", "未確認", "unconfirmed"),
        ("lost", "不達", "lost"),
        ("rejected", "拒否", "rejected"),
        ("drill_outage", "訓練による停止", "drill outage"),
    ):
        if shown.get(key):
            parts.append(t(f"{ja}{shown[key]}", f"{en} {shown[key]}"))
    return " ".join(parts)


def evidence_note(card: dict[str, Any], t: Text) -> str:
    """What the numbers of a channel cell mean, with the evidence weights the card used."""
    w = {**WEIGHTS.as_dict(), **(card.get("model") or {}).get("weights", {})}
    receipt, unconfirmed = f"{w['receipt']:g}", f"{w['unconfirmed']:g}"
    return t(
        "数字は 到達数/送信数（ハーネス障害と訓練による停止を除く）。"
        "到達 = 受け手側で着信を確認したもの（着信確認）と、事業者・携帯会社の受信報告のみのもの。"
        f"受信報告 = 配信されたと報告があったが着信は確認していない（採点では {receipt} 通分）。"
        f"未確認 = 事業者は受け付けたが着信を確認できない（{unconfirmed} 通分、届いたとは数えません）。"
        "訓練による停止 = 訓練自身が起こした停止の間に送ったもの（表示のみ、採点しない）。",
        "Numbers are reached/sent (harness faults and drill outages excluded). "
        "Reached = seen at the far end, or only reported delivered by the provider or carrier. "
        "Receipt = reported delivered, not seen "
        f"(scored as {receipt} of a seen one). "
        "Unconfirmed = the provider accepted it but arrival cannot be confirmed "
        f"({unconfirmed} of one; never counted as delivered). "
        "Drill outage = sent during an outage the drill itself made (shown, never scored).",
    )


def change_cell(change: dict[str, Any] | None, t: Text) -> str:
    """``▼ −10.4`` / ``＝`` / ``＋`` — or empty when there is no previous drill."""
    if not change:
        return ""
    symbol = CHANGE_LABELS[change["status"]][0]
    delta = change.get("delta")
    if delta is None or change["status"] == "unchanged":
        return symbol if change["status"] != "missing" else symbol + t(" 測定なし", " not measured")
    return f"{symbol} {delta:+.1f}".replace("-", "−")


def worse_entries(card: dict[str, Any]) -> list[dict[str, Any]]:
    """The entries of the "what got worse" section: worsened, then missing."""
    comparison = card.get("comparison") or {}
    return [*comparison.get("worsened", []), *comparison.get("missing", [])]


def _num(x: float | None, fmt: str = "{:.1f}") -> str:
    return "—" if x is None else fmt.format(x)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _change_rows(entries: list[dict[str, Any]], t: Text) -> list[str]:
    rows = [
        t(
            "| | 団体 | チャネル | 前回 | 今回 | 差 | 理由 |",
            "| | Municipality | Channel | Before | Now | Δ | Why |",
        ),
        "|---|---|---|---:|---:|---:|---|",
    ]
    for e in entries:
        symbol = CHANGE_LABELS[e["status"]][0]
        reasons = "; ".join(r[t.lang] for r in e["reasons"]) or t(*CHANGE_LABELS[e["status"]][1:])
        delta = "—" if e["delta"] is None else f"{e['delta']:+.1f}".replace("-", "−")
        rows.append(
            f"| {symbol} | {e['code']} {_md(e['name'])} | {_md(e['channel'] or '—')} | "
            f"{_num(e['before'])} | {_num(e['after'])} | {delta} | {_md(reasons)} |"
        )
    return rows


def _header(card: dict[str, Any], t: Text) -> list[str]:
    s = card["summary"]
    comp = card.get("comparison") or {}
    status = {
        "finished": ("完了", "finished"),
        "incomplete": ("中断", "incomplete"),
        "interrupted": (
            "シグナルで中断・途中までの結果",
            "interrupted by a signal, partial results",
        ),
        "failed": ("失敗", "failed"),
    }.get(card["status"], (card["status"], card["status"]))
    overall = t(
        f"**{_num(s['score'])} 点・{s['grade'] or '—'} {grade_label(s['grade'], 'ja')}**",
        f"**{_num(s['score'])} points, {s['grade'] or '—'} {grade_label(s['grade'], 'en')}**",
    )
    if comp.get("previous_score") is not None and s["score"] is not None:
        d = round_score(s["score"] - comp["previous_score"])
        overall += t(
            f"（前回 {comp['previous_score']:.1f} 点から {d:+.1f}）",
            f" (previous {comp['previous_score']:.1f}, {d:+.1f})",
        ).replace("-", "−")
    grades = (
        "・".join(f"{g} {n}" for g, n in s["grades"].items())
        if t.lang == "ja"
        else ", ".join(f"{g} {n}" for g, n in s["grades"].items())
    )
    start, end = human_time(card["started_at"]), human_time(card["finished_at"], False)
    return [
        t(
            f"# 即応性スコアカード：{card['scenario']}",
            f"# Readiness scorecard: {card['scenario']}",
        ),
        "",
        t(
            f"- 実行: `{card['run_id']}`（{start}〜{end} 日本時間・{status[0]}）",
            f"- Run: `{card['run_id']}` ({start}–{end} Asia/Tokyo, {status[1]})",
        ),
        t(f"- 総合: {overall}", f"- Overall: {overall}"),
        t(
            f"- 評価別の団体数: {grades}（訓練対象外 {s['not_drilled']}）",
            f"- Municipalities by grade: {grades} (not in this drill: {s['not_drilled']})",
        ),
    ]


def _worse_section(card: dict[str, Any], t: Text) -> list[str]:
    comp = card.get("comparison") or {}
    out = ["", t("## 前回から悪化した項目", "## What got worse since the last drill"), ""]
    if not comp.get("previous_run_id"):
        return [
            *out,
            t("（同じシナリオの前回の訓練がありません）", "(no previous drill of this scenario)"),
        ]
    previous = human_time(comp["previous_started_at"])
    out.append(
        t(
            f"前回: `{comp['previous_run_id']}`（{previous} 日本時間）",
            f"Previous: `{comp['previous_run_id']}` ({previous} Asia/Tokyo)",
        )
    )
    out.append("")
    entries = worse_entries(card)
    if not entries:
        return [*out, t("悪化した項目はありません。", "Nothing got worse.")]
    return [*out, *_change_rows(entries, t)]


def surge_heading(surge: dict[str, Any], t: Text) -> str:
    """``足立区 chat（庁内チャット、webhook）— surge 1``: which channel, which surge."""
    what = ", ".join(x for x in (surge.get("label"), surge["kind"]) if x)
    what = t(f"（{what.replace(', ', '、')}）", f" ({what})") if what else ""
    return f"{surge['municipality_name']} {surge['channel_id']}{what} — {surge['step']}"


def _surge_section(card: dict[str, Any], t: Text, summary: bool) -> list[str]:
    """Each surge's verdict and, unless *summary*, its ramp table."""
    surges = card.get("surge") or []
    if not surges:
        return []
    out = ["", t("## 負荷試験（サージ）", "## Surge (load test)"), ""]
    if summary:
        return out + [f"- {_md(surge_heading(s, t))}: {_md(verdict(s, t.lang))}" for s in surges]
    columns = curve_columns(t.lang)
    for s in surges:
        out += [f"### {_md(surge_heading(s, t))}", "", f"**{_md(verdict(s, t.lang))}**", ""]
        out.append("| " + " | ".join(h for h, _ in columns) + " |")
        out.append("|" + "|".join("---:" if j == "right" else ":---:" for _, j in columns) + "|")
        out += ["| " + " | ".join(map(_md, row)) + " |" for row in curve_rows(s, t.lang, True)]
        out += ["", curve_legend(s, t.lang), ""]
    return out[:-1]


def to_markdown(card: dict[str, Any], lang: str = "ja", summary: bool = False) -> str:
    """The scorecard as Markdown; *summary* leaves out channel columns and appendices."""
    t = Text(lang)
    lines = _header(card, t) + announcement_markdown(card, lang) + _worse_section(card, t)
    lines += failures_markdown(card, lang)  # where the chain broke, J-ALERT style
    ids = [] if summary else channel_ids(card)
    lines += ["", t("## 団体別の即応性", "## Readiness by municipality"), ""]
    head = t(
        "| 団体コード | 団体名 | 点数 | 評価 | 前回比 |",
        "| Code | Municipality | Score | Grade | vs last |",
    )
    lines.append(head + "".join(f" {_md(c)} |" for c in ids))
    lines.append("|---|---|---:|---|---|" + "---|" * len(ids))
    for m in card["municipalities"]:
        cells = {ch["id"]: channel_cell(ch, t) for ch in m["channels"]}
        g = f"{m['grade']} {grade_label(m['grade'], lang)}" if m["grade"] else "—"
        change = change_cell(m.get("change"), t)
        row = f"| {m['code']} | {_md(m['name'])} | {_num(m['score'])} | {g} | {change} |"
        lines.append(row + "".join(f" {_md(cells.get(c, '—'))} |" for c in ids))
    lines += _surge_section(card, t, summary)
    lines += [] if summary else send_wait_markdown(card, lang)  # the harness's, not latency
    lines += [] if summary else standing_markdown(card, lang)
    comp = card.get("comparison") or {}
    better = [*comp.get("improved", []), *comp.get("new", [])]
    if better and not summary:
        lines += ["", t("## 改善した項目", "## What got better"), "", *_change_rows(better, t)]
    if card.get("not_drilled") and not summary:
        lines += [
            "",
            t("## 今回の訓練の対象外だった団体", "## Municipalities not in this drill"),
            "",
            t(
                "| 団体コード | 団体名 | 最終訓練 | 経過日数 | 訓練間隔（日） | 状態 |",
                "| Code | Municipality | Last drilled | Age (days) | Interval (days) | State |",
            ),
            "|---|---|---|---:|---:|---|",
        ]
        for n in card["not_drilled"]:
            state = t(*FRESHNESS_LABELS[n["status"]])
            lines.append(
                f"| {n['code']} | {_md(n['name'])} | {human_time(n['last_drilled_at'])} | "
                f"{_num(n['age_days'])} | {_num(n['drill_interval_days'])} | {state} |"
            )
    legend = " ".join(f"{STATUS_SYMBOL[s]} {t(*STATUS_LABELS[s])}" for s in STATUS_SYMBOL)
    note = "" if summary else evidence_note(card, t)  # the summary has no channel cells
    lines += [
        "",
        t(
            f"凡例: {legend}。{note}採点方法は README「採点モデル」。時刻は日本時間。",
            f"Legend: {legend}. {note}{' ' if note else ''}"
            'Scoring: README, "Scoring model". Times are Asia/Tokyo.',
        ),
    ]
    return "\n".join(lines) + "\n"


CSV_COLUMNS = (
    "run_id scenario started_at as_of previous_run_id municipality_code municipality_name "
    "municipality_score municipality_grade municipality_change municipality_delta channel_id kind "
    "status sent counted delivered late accepted_only lost rejected error drill_outage "
    "evidence_seen evidence_receipt evidence_accepted reachability "
    "latency_p50_s latency_p95_s latency_max_s slo_latency_s slo_reachability slo_met "
    "channel_score channel_change channel_delta"
).split()


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def to_csv(card: dict[str, Any]) -> str:
    """One row per municipality × channel (and one per municipality not in the drill)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, CSV_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    run = {
        "run_id": card["run_id"],
        "scenario": card["scenario"],
        "started_at": card["started_at"],
        "as_of": card.get("as_of"),
        "previous_run_id": (card.get("comparison") or {}).get("previous_run_id"),
    }
    for m in card["municipalities"]:
        mc = m.get("change") or {}
        muni = {
            **run,
            "municipality_code": m["code"],
            "municipality_name": m["name"],
            "municipality_score": m["score"],
            "municipality_grade": m["grade"],
            "municipality_change": mc.get("status"),
            "municipality_delta": mc.get("delta"),
        }
        for ch in m["channels"]:
            cc = ch.get("change") or {}
            row = {
                **muni,
                "channel_id": ch["id"],
                **{k: ch.get(k) for k in CSV_COLUMNS if k in ch and k not in ("score",)},
                **{f"evidence_{k}": v for k, v in (ch.get("evidence") or {}).items()},
                "channel_score": ch["score"],
                "channel_change": cc.get("status"),
                "channel_delta": cc.get("delta"),
            }
            writer.writerow({k: _cell(row.get(k)) for k in CSV_COLUMNS})
        for cid in m.get("untested_channels", []):
            writer.writerow(
                {k: _cell(v) for k, v in {**muni, "channel_id": cid, "status": "untested"}.items()}
            )
    for n in card.get("not_drilled", []):
        row = {
            **run,
            "municipality_code": n["code"],
            "municipality_name": n["name"],
            "status": "not_drilled",
        }
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return buf.getvalue()
