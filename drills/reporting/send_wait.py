"""The harness's wait before sending, as the scorecard shows it (JSON, Markdown, HTML, terminal).

How long the harness itself held each message before it left — a pacing slot, a
free connection, a busy event loop (:attr:`drills.core.delivery.Delivery.queue_s`,
summed up per step by :mod:`drills.metrics.send_wait`). It is shown apart from
latency and labelled as the harness's: it is not the channel's latency, and no
score counts it. For the operator it means the step took longer; the latencies
are from the moment each message left.

The card's ``send_wait`` block (from the run's digest)::

    {"scored": false,
     "drill": {"sent", "measured", "p50_s", "p95_s", "max_s"},
     "steps": [{"step", "sent", "measured", "p50_s", "p95_s", "max_s"}]}

``measured`` counts the records that say how long they waited; a journal written
before the wait was recorded has none, and its figures are null ("—").

    >>> from drills.metrics.send_wait import SendWait, SendWaits
    >>> card = {"send_wait": send_wait_block(SendWaits(
    ...     (SendWait("初動参集", 8, 8, 0.175, 0.3325, 0.35),), SendWait("", 8, 8, 0.175, 0.3325, 0.35)))}
    >>> send_wait_markdown(card, "en")[5]
    '| 初動参集 | 8 | 8 | 0.175s | 0.333s | 0.350s |'
    >>> send_wait_markdown({"send_wait": send_wait_block(SendWaits())}, "en")
    []
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.table import Table

from drills.core.i18n import Text
from drills.metrics.send_wait import SendWait, SendWaits

__all__ = [
    "SendWaitTable",
    "send_wait_block",
    "send_wait_markdown",
    "send_wait_renderable",
    "send_wait_table",
]

_FIGURES = ("p50_s", "p95_s", "max_s")


def _figures(w: SendWait) -> dict[str, Any]:
    seconds = {"p50_s": w.p50_s, "p95_s": w.p95_s, "max_s": w.max_s}
    return {
        "sent": w.sent,
        "measured": w.measured,
        **{k: None if v is None else round(v, 4) for k, v in seconds.items()},
    }


def send_wait_block(waits: SendWaits) -> dict[str, Any]:
    """The card's ``send_wait`` block (seconds, to 0.1 ms; never scored)."""
    return {
        "scored": False,
        "drill": _figures(waits.drill),
        "steps": [{"step": s.step, **_figures(s)} for s in waits.steps],
    }


@dataclass(frozen=True)
class SendWaitTable:
    """The section laid out: heading, header, rows (step, cells), what it means."""

    heading: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, tuple[str, ...]], ...]  # (step, or "" for the whole drill; cells)
    notes: tuple[str, ...]


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}s"


def _cells(name: str, w: dict[str, Any]) -> tuple[str, ...]:
    return (name, str(w["sent"]), str(w["measured"]), *(_seconds(w[k]) for k in _FIGURES))


def send_wait_table(card: dict[str, Any], lang: str) -> SendWaitTable | None:
    """The section of *card* in *lang*; None when the run sent nothing."""
    block = card.get("send_wait") or {}
    steps = block.get("steps") or []
    if not steps:
        return None
    t = Text(lang)
    rows = [(s["step"], _cells(s["step"], s)) for s in steps]
    if len(steps) > 1:
        rows.append(("", _cells(t("訓練全体", "Whole drill"), block["drill"])))
    notes = [
        t(
            "ハーネス自身が各メッセージを送り出すまで待たせた時間（送信ペースの調整、空き接続の待ち、"
            "混み合ったイベントループ）。チャネルの遅延ではなく、どの点数にも含めません。",
            "How long the harness itself held each message before it left (pacing, waiting for "
            "a free connection, a busy event loop). It is not the channel's latency and no score "
            "counts it.",
        )
    ]
    longest = block["drill"]["max_s"]
    if longest:
        notes.append(
            t(
                f"この訓練ではハーネスが送信を最大 {_seconds(longest)} 待たせました。その分だけ訓練の"
                "所要時間が延びています。遅延は各メッセージが実際に送り出された時点から測っています。",
                f"In this drill the harness held sends for up to {_seconds(longest)}: the step took "
                "that much longer; latencies are from the moment each message left.",
            )
        )
    if any(s["measured"] < s["sent"] for s in steps):
        notes.append(
            t(
                "測定数が送信数より少ない分と「—」は、待ち時間の記録がないもの（記録を始める前の版が"
                "書いた journal、または送り出されなかったメッセージ）。",
                "Fewer measured than sent, and “—”: no wait recorded (a journal written before "
                "waits were recorded, or messages that never left).",
            )
        )
    return SendWaitTable(
        heading=t(
            "ハーネスの送信待ち（遅延・点数には含めない）",
            "The harness's wait before sending (not latency, not scored)",
        ),
        header=(
            t("ステップ", "Step"),
            t("送信数", "Sent"),
            t("測定数", "Measured"),
            "p50",
            "p95",
            t("最大", "Max"),
        ),
        rows=tuple(rows),
        notes=tuple(notes),
    )


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def send_wait_markdown(card: dict[str, Any], lang: str) -> list[str]:
    """The section as Markdown lines (none when the run sent nothing)."""
    table = send_wait_table(card, lang)
    if table is None:
        return []
    out = ["", f"## {table.heading}", ""]
    out.append("| " + " | ".join(table.header) + " |")
    out.append("|---|" + "---:|" * (len(table.header) - 1))
    out += ["| " + " | ".join(map(_md, cells)) + " |" for _step, cells in table.rows]
    for note in table.notes:
        out += ["", note]
    return out


def send_wait_renderable(card: dict[str, Any], lang: str) -> Table | None:
    """The section as a rich table for the terminal (None when the run sent nothing)."""
    table = send_wait_table(card, lang)
    if table is None:
        return None
    out = Table(title=table.heading, caption="\n".join(table.notes), caption_justify="left")
    for i, name in enumerate(table.header):
        out.add_column(name, justify="left" if i == 0 else "right", no_wrap=i > 0)
    for _step, cells in table.rows:
        out.add_row(*cells)
    return out
