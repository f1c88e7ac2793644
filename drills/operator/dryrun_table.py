"""A dry run's plan for people: the table of what would go to whom, and a summary line.

``tsunagari run --dry-run``, the pytest plugin and ``tsunagari demo --dry-run`` print the
:class:`drills.operator.dryrun.PlannedSend` rows with these; nothing here plans or sends.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text as RichText

from drills.core.i18n import Text
from drills.operator.dryrun import PlannedSend

__all__ = ["plan_summary", "plan_table", "render_plan"]

_COLUMNS = (("手順", "step"), ("団体", "municipality"), ("チャネル", "channel"),
            ("宛先", "recipients"), ("通数", "messages"), ("メッセージ", "message"),
            ("費用見積", "cost estimate"), ("備考", "note"))  # fmt: skip


def _cells(r: PlannedSend, t: Text) -> list[str]:
    where = t("実", "live") if r.live else t("模擬", "sim")
    cost = ""
    if r.segments is not None:
        cost = t(f"{r.segments} セグメント", f"{r.segments} segments")
        cost += f" ≈{r.cost:g} {r.currency}" if r.cost is not None else ""
    notes = [t("上限超過で拒否: ", "refused by a cap: ") + t.pick(r.refused)] if r.refused else []
    notes += [t.pick(r.note)] if r.note else []
    return [
        f"{r.step} ({r.action})",
        f"{r.municipality_name} ({r.municipality_code})",
        f"{r.channel_id} [{r.kind}, {where}]",
        ", ".join(x or t("（チャネル）", "(the channel)") for x in r.recipients),
        str(r.messages),
        r.preview,
        cost,
        "\n".join(notes),
    ]


def plan_table(rows: Sequence[PlannedSend], lang: str = "ja") -> Table:
    """The dry run as a table: per municipality and channel, what would go to whom."""
    t = Text(lang)
    title = t(
        "試行（--dry-run）: 送信予定（何も送信していません）",
        "Dry run: would send (nothing was sent)",
    )
    table = Table(title=title, show_lines=True)
    for ja, en in _COLUMNS:
        table.add_column(t(ja, en), overflow="fold")
    for r in rows:  # as plain text: a scenario's "[...]" is not rich markup
        table.add_row(*(RichText(cell) for cell in _cells(r, t)))
    return table


def plan_summary(rows: Sequence[PlannedSend], lang: str = "ja") -> str:
    """One line: how many messages to how many recipients, and the SMS cost estimate."""
    t = Text(lang)
    sent = [r for r in rows if r.messages and not r.refused]
    messages = sum(r.messages for r in sent)
    channels = len({(r.municipality_code, r.channel_id) for r in sent})
    costs: dict[str, float] = {}
    for r in rows:
        if r.cost is not None and r.currency and not r.refused:
            costs[r.currency] = costs.get(r.currency, 0.0) + r.cost
    cost = ", ".join(f"≈{v:g} {k}" for k, v in sorted(costs.items()))
    refused = sum(1 for r in rows if r.refused)
    line = t(
        f"送信予定 {messages} 通（{channels} チャネル）",
        f"would send {messages} messages over {channels} channel{'s' * (channels != 1)}",
    )
    if cost:
        line += t(f"、SMS 費用見積 {cost}", f", SMS cost estimate {cost}")
    if refused:
        line += t(f"、上限超過で拒否 {refused} 件", f", {refused} refused by a cap")
    return line + t("。何も送信していません。", ". Nothing was sent.")


def render_plan(rows: Sequence[PlannedSend], lang: str = "ja", width: int | None = None) -> str:
    """The plan table and its summary line as text (no colour), for a terminal or a log."""
    import io

    from rich.console import Console

    buffer = io.StringIO()
    console = Console(file=buffer, width=width or 160, no_color=True, highlight=False)
    console.print(plan_table(rows, lang))
    console.print(plan_summary(rows, lang), markup=False)
    return buffer.getvalue()
