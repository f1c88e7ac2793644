"""The surge on the terminal: the latency curve as a table, and the verdict in one line.

Both read the journalled ``surge`` event (a plain dict), so a past surge can be
shown the same way as the one that just ran; the scorecard's Markdown and
HTML fill their ramp tables from the same :func:`curve_rows`.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table

from drills.core.i18n import Text

__all__ = [
    "curve_columns",
    "curve_legend",
    "curve_rows",
    "curve_table",
    "curve_title",
    "progress_line",
    "verdict",
]


def _s(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}s"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:g}ms"


def _rate(step: dict[str, Any], t: Text) -> str:
    return t("平常時", "rest") if step["at_rest"] else f"{step['rate']:g}"


_SLO_MARK = {
    True: ("✔", "達成", "met"),
    False: ("✘", "未達", "missed"),
    None: ("—", "判定なし", "n/a"),
}


def curve_columns(lang: str = "ja") -> list[tuple[str, str]]:
    """Headers of the ramp table (and their alignment), as :func:`curve_rows` fills them."""
    t = Text(lang)
    return [
        (t("段", "Step"), "right"),
        (t("負荷", "Offered"), "right"),
        (t("実測", "Achieved"), "right"),
        (t("失敗", "Fail"), "right"),
        (t("応答p95", "Resp p95"), "right"),
        (t("着信p50", "Deliv p50"), "right"),
        (t("着信p95", "Deliv p95"), "right"),
        (t("確認", "Probes"), "right"),
        ("SLO", "center"),
    ]


def curve_rows(event: dict[str, Any], lang: str = "ja", words: bool = False) -> list[list[str]]:
    """One row of cells per ramp step; *words* puts 達成/met beside the ✔ of the SLO column."""
    t = Text(lang)
    rows = []
    for step in event["steps"]:
        load, probes = step["load"], step["probes"]
        symbol, ja, en = _SLO_MARK[step["slo_met"]]
        rows.append(
            [
                str(step["index"]),
                _rate(step, t),
                f"{load.get('rps', 0.0):g}",
                str(load["failures"]),
                _ms(load.get("response_p95_ms")),
                _s(probes.get("latency_p50_s")),
                _s(probes.get("latency_p95_s")),
                f"{probes['within_slo']}/{probes['sent']}",
                f"{symbol} {t(ja, en)}" if words else symbol,
            ]
        )
    return rows


def curve_legend(event: dict[str, Any], lang: str = "ja") -> str:
    """What the columns of the ramp table mean, and the SLO the steps were judged against."""
    t = Text(lang)
    slo = event["slo"]
    return t(
        f"負荷・実測は 通/秒、応答は負荷の応答時間、着信は計測メッセージの到達遅延。"
        f"SLO: {slo['latency_s']:g} 秒以内に {slo['reachability']:.0%} 以上  ✔ 達成 ✘ 未達",
        f"Offered/achieved in msg/s; Resp = load response time; Deliv = probe delivery "
        f"latency. SLO: {slo['reachability']:.0%} within {slo['latency_s']:g} s ✔ met ✘ missed",
    )


def curve_title(event: dict[str, Any], lang: str = "ja") -> str:
    t = Text(lang)
    return (
        t("サージ", "Surge")
        + f" — {event['municipality_name']} {event['channel_id']} ({event['kind']})"
    )


def curve_table(event: dict[str, Any], lang: str = "ja") -> Table:
    """One row per ramp step: offered and achieved load, failures, probe latency, SLO."""
    table = Table(title=curve_title(event, lang), caption=curve_legend(event, lang))
    for header, justify in curve_columns(lang):
        table.add_column(header, justify=justify)  # type: ignore[arg-type]
    for row in curve_rows(event, lang):
        table.add_row(*row)
    return table


def verdict(event: dict[str, Any], lang: str = "ja") -> str:
    """The breaking point (or that there was none), and whether the surge was stopped early."""
    t = Text(lang)
    bp = event["breaking_point"]
    slo_s = event["slo"]["latency_s"]
    held = event.get("held_up_to_rate")
    steps_run = event.get("steps_run")
    if bp is None and held is None:
        line = t(
            "判定できません: 計測メッセージが数えられませんでした", "no verdict: no probe counted"
        )
    elif bp is None:
        line = t(
            f"破綻点なし: {held:g} 通/秒 まで SLO を満たしました",
            f"no breaking point: the SLO held up to {held:g} msg/s",
        )
    elif bp["at_rest"]:
        line = t(
            f"平常時から SLO（{slo_s:g} 秒）を満たしていません",
            f"the SLO ({slo_s:g} s) is already missed at rest",
        )
    else:
        p95 = _s(bp.get("latency_p95_s"))
        line = t(
            f"破綻点: {bp['rate']:g} 通/秒（段 {bp['index']}、着信 p95 {p95}、SLO {slo_s:g} 秒）",
            f"breaking point: {bp['rate']:g} msg/s (step {bp['index']}, delivered p95 {p95}, "
            f"SLO {slo_s:g} s)",
        )
    if event["stop_reason"] == "stopped":
        line += t(
            f"  ※ 途中で停止（{steps_run} 段まで）",
            f"  (stopped early after {steps_run} steps)",
        )
    elif event["stop_reason"] == "cap":
        line += t("  ※ 時間上限で停止", "  (stopped at the duration cap)")
    return line


def progress_line(ev: dict[str, Any], total_steps: int, lang: str = "ja") -> str | None:
    """A line for a progress event worth telling the operator about (None: stay quiet)."""
    t = Text(lang)
    kind = ev.get("event")
    if kind == "clock":
        return t(f"負荷ユーザー {ev['users']} 起動", f"{ev['users']} load users up")
    if kind == "step":
        rate = float(ev["rate"])
        what = t("平常時", "at rest") if rate <= 0 else t(f"{rate:g} 通/秒", f"{rate:g} msg/s")
        return t(
            f"段 {ev['index']}/{total_steps - 1}: {what}",
            f"step {ev['index']}/{total_steps - 1}: {what}",
        )
    if kind == "finished":
        return (
            t("負荷終了", "load finished")
            if ev["reason"] == "completed"
            else t("負荷を停止", "load stopped")
        )
    return None
