"""Terminal output: the readiness table, what got worse, the run's surges and the harness's
wait before sending (:mod:`drills.reporting.send_wait`, never latency), with rich.

Colour only on a TTY (rich decides; ``NO_COLOR`` honoured); the same symbols
and words carry the meaning without colour (cron mail, CI logs).
"""

from __future__ import annotations

import os
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text as RichText

from drills.core.i18n import Text
from drills.core.scoring import STATUS_LABELS, grade_label
from drills.reporting.comparison import CHANGE_LABELS
from drills.reporting.failures import failures_text
from drills.reporting.send_wait import send_wait_renderable
from drills.reporting.standing import standing_renderable
from drills.reporting.text import (
    FRESHNESS_LABELS,
    STATUS_SYMBOL,
    change_cell,
    channel_cell,
    channel_ids,
    evidence_note,
    human_time,
    worse_entries,
)
from drills.surge.report import curve_table, verdict

__all__ = [
    "console_for",
    "readiness_table",
    "scorecard_renderable",
    "surge_renderables",
    "worse_table",
]

# Okabe–Ito-ish terminal colours; never the only carrier of meaning.
_GRADE_STYLE = {"A": "bold blue", "B": "cyan", "C": "yellow", "D": "bold red"}
_STATUS_STYLE = {
    "ok": "",
    "partial": "yellow",
    "unconfirmed": "dim",
    "down": "bold red",
    "untested": "dim",
}
_CHANGE_STYLE = {
    "worsened": "bold red",
    "missing": "red",
    "improved": "blue",
    "new": "blue",
    "unchanged": "",
}


def _styled(text: str, style: str) -> str:
    return f"[{style}]{text}[/]" if style and text else text


def readiness_table(card: dict[str, Any], lang: str = "ja") -> Table:
    """A rich table: one row per municipality, one column per channel id."""
    t = Text(lang)
    ids = channel_ids(card)
    s = card.get("summary", {})
    worse = len(worse_entries(card))
    title = t("即応性スコアカード", "Readiness scorecard") + f" — {card.get('scenario') or ''}"
    if s.get("score") is not None:
        title += t(
            f"  総合 {s['score']:.1f} 点 {s['grade']}", f"  overall {s['score']:.1f} {s['grade']}"
        )
    if (card.get("comparison") or {}).get("previous_run_id"):
        title += t(f"  ▼ 前回から悪化 {worse} 件", f"  ▼ {worse} worse since last drill")
    if card.get("status") == "interrupted":  # never shown as a complete drill
        title += t(
            "  ⚠ 中断された訓練（途中までの結果）", "  ⚠ interrupted drill (partial results)"
        )
    legend = " ".join(f"{STATUS_SYMBOL[k]} {t(*STATUS_LABELS[k])}" for k in STATUS_SYMBOL)
    table = Table(
        title=title,
        caption=t(
            f"実行 {card['run_id']}・開始 {human_time(card['started_at'])}（日本時間）  {legend}"
            f"\n{evidence_note(card, t)}",
            f"run {card['run_id']}, started {human_time(card['started_at'])} (Asia/Tokyo)"
            f"  {legend}\n{evidence_note(card, t)}",
        ),
    )
    table.add_column(t("団体コード", "Code"), no_wrap=True)
    table.add_column(t("団体名", "Municipality"), no_wrap=True)
    table.add_column(t("点数", "Score"), justify="right", no_wrap=True)
    table.add_column(t("評価", "Grade"), no_wrap=True)
    table.add_column(t("前回比", "vs last"), no_wrap=True)
    for cid in ids:
        table.add_column(cid)
    for m in card["municipalities"]:
        cells = {
            ch["id"]: _styled(channel_cell(ch, t), _STATUS_STYLE.get(ch.get("status", ""), ""))
            for ch in m["channels"]
        }
        letter = m.get("grade")
        change = m.get("change")
        table.add_row(
            m["code"],
            m["name"],
            "—" if m["score"] is None else f"{m['score']:.1f}",
            _styled(
                f"{letter or '—'} {grade_label(letter, lang)}", _GRADE_STYLE.get(letter or "", "")
            ),
            _styled(
                change_cell(change, t), _CHANGE_STYLE.get((change or {}).get("status", ""), "")
            ),
            *(cells.get(cid, "—") for cid in ids),
        )
    return table


def worse_table(card: dict[str, Any], lang: str = "ja") -> Table | None:
    """What got worse since the previous drill (None when there is no previous drill)."""
    t = Text(lang)
    comparison = card.get("comparison") or {}
    if not comparison.get("previous_run_id"):
        return None
    table = Table(
        title=t(
            f"前回（{human_time(comparison['previous_started_at'])}）から悪化した項目",
            "What got worse since the last drill"
            f" ({human_time(comparison['previous_started_at'])})",
        ),
        title_style="bold red",
    )
    for name, justify in (
        ("", "left"),
        (t("団体", "Municipality"), "left"),
        (t("チャネル", "Channel"), "left"),
        (t("前回", "Before"), "right"),
        (t("今回", "Now"), "right"),
        (t("差", "Δ"), "right"),
        (t("理由", "Why"), "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    entries = worse_entries(card)
    if not entries:
        table.add_row("", t("悪化した項目はありません", "nothing got worse"), "", "", "", "", "")
    for e in entries:
        symbol, ja, en = CHANGE_LABELS[e["status"]]
        table.add_row(
            _styled(f"{symbol} {t(ja, en)}", _CHANGE_STYLE[e["status"]]),
            f"{e['code']} {e['name']}",
            e["channel"] or "—",
            "—" if e["before"] is None else f"{e['before']:.1f}",
            "—" if e["after"] is None else f"{e['after']:.1f}",
            "—" if e["delta"] is None else f"{e['delta']:+.1f}",
            "; ".join(r[t.lang] for r in e["reasons"]),
        )
    return table


def _not_drilled_table(card: dict[str, Any], t: Text) -> Table | None:
    if not card.get("not_drilled"):
        return None
    table = Table(title=t("今回の訓練の対象外だった団体", "Municipalities not in this drill"))
    for name in (
        t("団体コード", "Code"),
        t("団体名", "Municipality"),
        t("最終訓練", "Last drilled"),
        t("経過日数", "Age (days)"),
        t("状態", "State"),
    ):
        table.add_column(name)
    for n in card["not_drilled"]:
        table.add_row(
            n["code"],
            n["name"],
            human_time(n["last_drilled_at"]),
            "—" if n["age_days"] is None else f"{n['age_days']:.1f}",
            _styled(
                t(*FRESHNESS_LABELS[n["status"]]), "" if n["status"] == "within_interval" else "red"
            ),
        )
    return table


def surge_renderables(card: dict[str, Any], lang: str = "ja") -> list[RenderableType]:
    """Each surge of the run: its ramp table, then its verdict (breaking point or held up to)."""
    out: list[RenderableType] = []
    for surge in card.get("surge") or []:
        out.append(curve_table(surge, lang))
        out.append(
            RichText(verdict(surge, lang), style="bold red" if surge["held"] is False else "")
        )
    return out


def scorecard_renderable(card: dict[str, Any], lang: str = "ja") -> RenderableType:
    """The whole terminal report: what got worse first, then the table, then the rest."""
    t = Text(lang)
    parts = [
        worse_table(card, lang),
        RichText(failures_text(card, lang)) if card.get("failures") else None,
        readiness_table(card, lang),
        *surge_renderables(card, lang),
        send_wait_renderable(card, lang),  # the harness's wait before sending, not latency
        standing_renderable(card, lang),
        _not_drilled_table(card, t),
    ]
    return Group(*(p for p in parts if p is not None))


def console_for(stream: Any = None) -> Console:
    """A console that only uses colour on a TTY and honours NO_COLOR.

    Piped output (cron mail, CI logs) is not squeezed into 80 columns: without
    a terminal or ``COLUMNS`` the table gets 140, so every cell stays on one line.
    """
    console = Console(file=stream, highlight=False, soft_wrap=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(file=stream, highlight=False, soft_wrap=False, width=140)
    return console
