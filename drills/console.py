"""Terminal output: progress while a drill runs, the readiness table at the end.

Colour and progress bars only on a TTY; plain text otherwise (cron, CI).
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from drills.i18n import Text

__all__ = ["readiness_table"]

_OUTCOME_STYLE = {"A": "bold green", "B": "green", "C": "yellow", "D": "bold red"}


def _channel_cell(ch: dict[str, Any], t: Text) -> str:
    reached = ch["delivered"] + ch["late"]
    counted = ch["sent"] - ch["error"]
    mark = "✔" if ch["slo_met"] else ("△" if reached else "✘")
    p50 = f" p50 {ch['latency_p50_s']:.2f}s" if ch.get("latency_p50_s") is not None else ""
    extra = ""
    if ch.get("accepted_only"):
        extra = t(f" 未確認{ch['accepted_only']}", f" unconfirmed {ch['accepted_only']}")
    if ch["rejected"]:
        extra += t(f" 拒否{ch['rejected']}", f" rejected {ch['rejected']}")
    if ch["lost"]:
        extra += t(f" 不達{ch['lost']}", f" lost {ch['lost']}")
    return f"{mark} {reached}/{counted}{p50}{extra}"


def readiness_table(card: dict[str, Any], lang: str = "ja") -> Table:
    """A rich table: one row per municipality, one column per channel id."""
    t = Text(lang)
    channel_ids: list[str] = []
    for m in card["municipalities"]:
        for ch in m["channels"]:
            if ch["id"] not in channel_ids:
                channel_ids.append(ch["id"])
    table = Table(
        title=t("即応性スコアカード", "Readiness scorecard") + f" — {card.get('scenario') or ''}",
        caption=t(
            f"実行 {card['run_id']}・開始 {card['started_at']}（日本時間）  ✔ SLO達成 △ 一部到達 ✘ 不達",
            f"run {card['run_id']}, started {card['started_at']} (Asia/Tokyo)  ✔ SLO met △ partly ✘ none",
        ),
    )
    table.add_column(t("団体コード", "Code"))
    table.add_column(t("団体名", "Municipality"))
    table.add_column(t("点数", "Score"), justify="right")
    table.add_column(t("評価", "Grade"), justify="center")
    for cid in channel_ids:
        table.add_column(cid)
    for m in card["municipalities"]:
        cells = {ch["id"]: _channel_cell(ch, t) for ch in m["channels"]}
        style = _OUTCOME_STYLE.get(m["grade"], "")
        table.add_row(
            m["code"],
            m["name"],
            f"{m['score']:.1f}",
            f"[{style}]{m['grade']}[/]" if style else m["grade"],
            *(cells.get(cid, "—") for cid in channel_ids),
        )
    return table


def console_for(stream: Any = None) -> Console:
    """A console that only uses colour on a TTY and honours NO_COLOR."""
    return Console(file=stream, highlight=False, soft_wrap=False)
