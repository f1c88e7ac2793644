"""The surge on the terminal: the latency curve as a table, and the verdict in one line.

Both read the journalled ``surge`` event (a plain dict), so a past surge can be
shown the same way as the one that just ran.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table

from drills.i18n import Text

__all__ = ["curve_table", "progress_line", "verdict"]


def _s(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}s"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:g}ms"


def _rate(step: dict[str, Any], t: Text) -> str:
    return t("平常時", "rest") if step["at_rest"] else f"{step['rate']:g}"


def curve_table(event: dict[str, Any], lang: str = "ja") -> Table:
    """One row per ramp step: offered and achieved load, failures, probe latency, SLO."""
    t = Text(lang)
    slo = event["slo"]
    table = Table(
        title=t("サージ", "Surge")
        + f" — {event['municipality_name']} {event['channel_id']} ({event['kind']})",
        caption=t(
            f"負荷・実測は 通/秒、応答は負荷の応答時間、着信は計測メッセージの到達遅延。"
            f"SLO: {slo['latency_s']:g} 秒以内に {slo['reachability']:.0%} 以上  ✔ 達成 ✘ 未達",
            f"Offered/achieved in msg/s; Resp = load response time; Deliv = probe delivery "
            f"latency. SLO: {slo['reachability']:.0%} within {slo['latency_s']:g} s ✔ met ✘ missed",
        ),
    )
    for header, justify in (
        (t("段", "Step"), "right"),
        (t("負荷", "Offered"), "right"),
        (t("実測", "Achieved"), "right"),
        (t("失敗", "Fail"), "right"),
        (t("応答p95", "Resp p95"), "right"),
        (t("着信p50", "Deliv p50"), "right"),
        (t("着信p95", "Deliv p95"), "right"),
        (t("確認", "Probes"), "right"),
        ("SLO", "center"),
    ):
        table.add_column(header, justify=justify)  # type: ignore[arg-type]
    for step in event["steps"]:
        load, probes = step["load"], step["probes"]
        mark = {True: "✔", False: "✘", None: "—"}[step["slo_met"]]
        table.add_row(
            str(step["index"]),
            _rate(step, t),
            f"{load.get('rps', 0.0):g}",
            str(load["failures"]),
            _ms(load["response_p95_ms"]),
            _s(probes["latency_p50_s"]),
            _s(probes["latency_p95_s"]),
            f"{probes['within_slo']}/{probes['sent']}",
            mark,
        )
    return table


def verdict(event: dict[str, Any], lang: str = "ja") -> str:
    """The breaking point (or that there was none), and whether the surge was stopped early."""
    t = Text(lang)
    bp = event["breaking_point"]
    slo_s = event["slo"]["latency_s"]
    held = event.get("held_up_to_rate")
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
        p95 = _s(bp["latency_p95_s"])
        line = t(
            f"破綻点: {bp['rate']:g} 通/秒（段 {bp['index']}、着信 p95 {p95}、SLO {slo_s:g} 秒）",
            f"breaking point: {bp['rate']:g} msg/s (step {bp['index']}, delivered p95 {p95}, "
            f"SLO {slo_s:g} s)",
        )
    if event["stop_reason"] == "stopped":
        line += t(
            f"  ※ 途中で停止（{event['steps_run']} 段まで）",
            f"  (stopped early after {event['steps_run']} steps)",
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
