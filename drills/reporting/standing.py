"""The comparison among participants, as the reports show it (Markdown, HTML, terminal).

Reads the card's ``standing`` (:func:`drills.core.standing.drill_standing`, set
by :func:`drills.reporting.scorecard.build_scorecard`) and lays it out once:
a note on how it is computed, one row per municipality (score, rank/N,
percentile, 偏差値, then each compared kind's p50 and p95 rank/N) and the kinds
with too few municipalities to compare. A drill with fewer than
:data:`~drills.core.standing.MIN_PARTICIPANTS` scored municipalities shows only
"too few to compare".

    >>> card = {"standing": {"score": {"n": 3, "compared": False}, "latency": {}},
    ...         "municipalities": []}
    >>> standing_markdown(card, "en")[-1]
    'Too few to compare (3 municipalities; comparison needs 10).'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text as RichText

from drills.core.i18n import Text
from drills.core.standing import QUANTILES, too_few_text

__all__ = ["StandingTable", "standing_markdown", "standing_renderable", "standing_table"]


@dataclass(frozen=True)
class StandingTable:
    """What every format shows: a heading, notes, and (when compared) a table."""

    heading: str
    compared: bool
    notes: list[str]
    header: list[str] = field(default_factory=list)
    right: list[bool] = field(default_factory=list)  # right-justified (numeric) columns
    rows: list[tuple[str, list[str]]] = field(default_factory=list)  # (code, cells)


def _num(x: float | None, fmt: str = "{:.1f}") -> str:
    return "—" if x is None else fmt.format(x)


def _rank(s: dict[str, Any] | None) -> str:
    return "—" if not s or s.get("rank") is None else f"{s['rank']}/{s['n']}"


def _sentence(text: str, t: Text) -> str:
    return text + "。" if t.lang == "ja" else text[0].upper() + text[1:] + "."


def standing_table(card: dict[str, Any], lang: str) -> StandingTable:
    """The comparison section of *card* in *lang* (ja / en)."""
    t = Text(lang)
    heading = t("参加団体間の比較", "Comparison among participants")
    pops = card.get("standing")
    if not pops:
        return StandingTable(heading, False, [])
    score = pops["score"]
    if not score["compared"]:
        return StandingTable(heading, False, [_sentence(too_few_text(score["n"], lang), t)])
    kinds = [k for k, qs in pops["latency"].items() if any(p["compared"] for p in qs.values())]
    notes = [
        t(
            f"今回の訓練の {score['n']} 団体の中での位置（点数: 平均 {score['mean']:.2f}、"
            f"標準偏差 {score['sd']:.2f}）。順位は同点を同順位とし次を飛ばす（1・2・2・4）。"
            "パーセンタイル = (下回る団体数 + 同点の団体数 ÷ 2) ÷ 団体数 × 100。"
            "偏差値 = 50 + 10 × (点数 − 平均) ÷ 標準偏差（母標準偏差、全員同点なら 50）。"
            "遅延は短いほど上位。未測定の団体は数えません。",
            f"Place among the {score['n']} municipalities of this drill (score: mean "
            f"{score['mean']:.2f}, standard deviation {score['sd']:.2f}). Ties share a rank and "
            "the next is skipped (1, 2, 2, 4). Percentile = (municipalities below + half of "
            "those tied) ÷ municipalities × 100. 偏差値 (deviation score) = 50 + 10 × (score − "
            "mean) ÷ standard deviation (population SD; 50 when all are equal). Shorter latency "
            "ranks higher. Untested municipalities are not counted.",
        )
    ]
    for kind, qs in pops["latency"].items():
        if kind not in kinds:
            n = max(p["n"] for p in qs.values())
            few = too_few_text(n, lang)
            notes.append(t(f"{kind} の遅延: {few}。", f"{kind} latency: {few}."))
    header = [
        t("団体コード", "Code"),
        t("団体名", "Municipality"),
        t("点数", "Score"),
        t("順位", "Rank"),
        t("パーセンタイル", "Percentile"),
        t("偏差値", "Deviation score"),
        *(f"{kind} {q} {t('順位', 'rank')}" for kind in kinds for q in QUANTILES),
    ]
    rows = []
    for m in card["municipalities"]:
        st = m.get("standing") or {"score": None, "latency": {}}
        s = st["score"] or {}
        cells = [
            m["code"],
            m["name"],
            _num(m["score"]),
            _rank(s),
            _num(s.get("percentile")),
            _num(s.get("deviation")),
            *(_rank(st["latency"].get(kind, {}).get(q)) for kind in kinds for q in QUANTILES),
        ]
        rows.append((m["code"], cells))
    right = [False, False, *([True] * (len(header) - 2))]
    return StandingTable(heading, True, notes, header, right, rows)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def standing_markdown(card: dict[str, Any], lang: str) -> list[str]:
    """The comparison section as Markdown lines (a heading first, after an empty line)."""
    table = standing_table(card, lang)
    if not table.notes:
        return []
    out = ["", f"## {table.heading}", ""]
    if not table.compared:
        return [*out, *table.notes]
    out += [table.notes[0], ""]
    out.append("| " + " | ".join(_md(h) for h in table.header) + " |")
    out.append("|" + "|".join("---:" if r else "---" for r in table.right) + "|")
    out += ["| " + " | ".join(_md(c) for c in cells) + " |" for _code, cells in table.rows]
    if len(table.notes) > 1:
        out += ["", *(f"- {note}" for note in table.notes[1:])]
    return out


def standing_renderable(card: dict[str, Any], lang: str) -> RenderableType | None:
    """The comparison section for the terminal (rich): a table, or the "too few" line."""
    table = standing_table(card, lang)
    if not table.notes:
        return None
    if not table.compared:
        return RichText(f"{table.heading}: {table.notes[0]}")
    out = Table(title=table.heading, caption="\n".join(table.notes))
    for head, right in zip(table.header, table.right, strict=True):
        out.add_column(head, justify="right" if right else "left", no_wrap=True)
    for _code, cells in table.rows:
        out.add_row(*(RichText(c) for c in cells))
    return out
