"""The comparison among participants, as the reports show it (Markdown, HTML, terminal).

Reads the card's ``standing`` (:func:`drills.core.standing.drill_standing`, set
by :func:`drills.reporting.scorecard.build_scorecard`) and lays it out once: a
note on how it is computed, then one compact table per figure — the readiness
score (value, rank/N, percentile, 偏差値 of every municipality), and per channel
kind the p50 and p95 latency (value in ms, rank/N, percentile, 偏差値, of the
municipalities with a channel of that kind) — each with its N, mean and σ so
every 偏差値 can be redone by hand; last, the kinds with too few municipalities
to compare. A drill with fewer than :data:`~drills.core.standing.MIN_PARTICIPANTS`
scored municipalities shows only "too few to compare".

    >>> card = {"standing": {"score": {"n": 3, "compared": False}, "latency": {}},
    ...         "municipalities": []}
    >>> standing_markdown(card, "en")[-1]
    'Too few to compare (3 municipalities; comparison needs 10).'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text as RichText

from drills.core.i18n import Text
from drills.core.standing import QUANTILES, too_few_text

__all__ = [
    "StandingBlock",
    "StandingTable",
    "standing_markdown",
    "standing_renderable",
    "standing_table",
]


@dataclass(frozen=True)
class StandingBlock:
    """One figure's table: ``figure`` is ``score`` or ``latency:<kind>``."""

    figure: str
    heading: str
    note: str
    header: list[str]
    right: list[bool]  # right-justified (numeric) columns
    rows: list[tuple[str, list[str]]]  # (code, cells)


@dataclass(frozen=True)
class StandingTable:
    """What every format shows: a heading, notes, and (when compared) a table per figure.

    ``notes[0]`` is how it is computed (or "too few to compare"); the rest name
    the channel kinds with too few municipalities.
    """

    heading: str
    compared: bool
    notes: list[str]
    blocks: list[StandingBlock] = field(default_factory=list)


def _num(x: float | None, fmt: str = "{:.1f}") -> str:
    return "—" if x is None else fmt.format(x)


def _ms(seconds: float | None, fmt: str = "{:.1f}") -> str:
    return "—" if seconds is None else fmt.format(seconds * 1000.0)


def _rank(s: dict[str, Any] | None) -> str:
    return "—" if not s or s.get("rank") is None else f"{s['rank']}/{s['n']}"


def _place(s: dict[str, Any] | None) -> list[str]:
    """Rank/N, percentile and 偏差値 of one standing (dashes when none or not compared)."""
    s = s or {}
    return [_rank(s), _num(s.get("percentile")), _num(s.get("deviation"))]


def _sentence(text: str, t: Text) -> str:
    return text + "。" if t.lang == "ja" else text[0].upper() + text[1:] + "."


def _method(t: Text) -> str:
    return t(
        "今回の訓練の団体の中での位置。順位は同じ値を同順位とし次を飛ばす（1・2・2・4）。"
        "パーセンタイル = (下位の団体数 + 同じ値の団体数 ÷ 2) ÷ 団体数 × 100（高いほど上位）。"
        "偏差値 = 50 + 10 × (点数 − 平均) ÷ 標準偏差（母標準偏差、全員同じなら 50）。"
        "遅延は短いほど上位で、偏差値 = 50 + 10 × (平均 − 遅延) ÷ 標準偏差。"
        "遅延は種別ごとに団体のチャネルの到着を合わせた p50・p95 を 0.1 ms 単位で比べます。"
        "未測定の団体は数えません。",
        "Place among the municipalities of this drill. Ties share a rank and the next is "
        "skipped (1, 2, 2, 4). Percentile = (municipalities ranked below + half of those "
        "tied) ÷ municipalities × 100 (higher is better). 偏差値 (deviation score) = 50 + 10 × "
        "(score − mean) ÷ standard deviation (population SD; 50 when all are equal). Shorter "
        "latency ranks higher: its deviation score is 50 + 10 × (mean − latency) ÷ standard "
        "deviation. Latency is the p50 and p95 of a municipality's arrivals over its channels "
        "of a kind, compared to 0.1 ms. Untested municipalities are not counted.",
    )


def _score_block(card: dict[str, Any], pop: dict[str, Any], t: Text) -> StandingBlock:
    header = [
        t("団体コード", "Code"),
        t("団体名", "Municipality"),
        t("点数", "Score"),
        t("順位", "Rank"),
        t("パーセンタイル", "Percentile"),
        t("偏差値", "Deviation score"),
    ]
    rows = []
    for m in card["municipalities"]:
        st = m.get("standing") or {}
        rows.append((m["code"], [m["code"], m["name"], _num(m["score"]), *_place(st.get("score"))]))
    note = t(
        f"{pop['n']} 団体（平均 {pop['mean']:.2f}、標準偏差 {pop['sd']:.2f}）。",
        f"{pop['n']} municipalities (mean {pop['mean']:.2f}, standard deviation {pop['sd']:.2f}).",
    )
    right = [False, False, True, True, True, True]
    return StandingBlock("score", t("即応性スコア", "Readiness score"), note, header, right, rows)


def _kind_block(
    card: dict[str, Any], kind: str, pops: dict[str, dict[str, Any]], t: Text
) -> StandingBlock:
    header = [t("団体コード", "Code"), t("団体名", "Municipality")]
    for q in QUANTILES:
        header += [
            t(f"{q}（ms）", f"{q} (ms)"),
            t(f"{q} 順位", f"{q} rank"),
            t(f"{q} パーセンタイル", f"{q} percentile"),
            t(f"{q} 偏差値", f"{q} dev. score"),
        ]
    rows = []
    missing = False
    for m in card["municipalities"]:
        if not any(ch["kind"] == kind for ch in m["channels"]):
            continue
        mine = (m.get("standing") or {}).get("latency", {}).get(kind) or {}
        cells = [m["code"], m["name"]]
        for q in QUANTILES:
            s = mine.get(q)
            missing = missing or s is None
            cells += [_ms(s["value"] if s else None), *_place(s)]
        rows.append((m["code"], cells))
    n = max(p["n"] for p in pops.values())
    parts = []
    for q in QUANTILES:
        p = pops[q]
        mean, sd = _ms(p["mean"], "{:.2f}"), _ms(p["sd"], "{:.2f}")
        parts.append(
            t(f"{q}: 平均 {mean} ms、標準偏差 {sd} ms", f"{q}: mean {mean} ms, SD {sd} ms")
        )
    note = t(
        f"{n} 団体。" + "".join(f"{part}。" for part in parts),
        f"{n} municipalities. " + "; ".join(parts) + ".",
    )
    if missing:
        note += t(
            "— は確認できた到着がなく遅延のない団体（未測定、または 1 通も届かず、"
            "届かなかったことは点数に表れます）。",
            " —: no confirmed arrival, so no latency (untested, or nothing arrived, which shows "
            "in the score).",
        )
    heading = t(f"{kind} の遅延（短いほど上位）", f"{kind} latency (shorter ranks higher)")
    right = [False, False, *([True] * (len(header) - 2))]
    return StandingBlock(f"latency:{kind}", heading, note, header, right, rows)


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
    notes = [_method(t)]
    blocks = [_score_block(card, score, t)]
    for kind, qs in pops["latency"].items():
        if any(p["compared"] for p in qs.values()):
            blocks.append(_kind_block(card, kind, qs, t))
        else:
            few = too_few_text(max(p["n"] for p in qs.values()), lang)
            notes.append(t(f"{kind} の遅延: {few}。", f"{kind} latency: {few}."))
    return StandingTable(heading, True, notes, blocks)


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
    out.append(table.notes[0])
    for block in table.blocks:
        out += ["", f"### {block.heading}", "", block.note, ""]
        out.append("| " + " | ".join(_md(h) for h in block.header) + " |")
        out.append("|" + "|".join("---:" if r else "---" for r in block.right) + "|")
        out += ["| " + " | ".join(_md(c) for c in cells) + " |" for _code, cells in block.rows]
    if len(table.notes) > 1:
        out += ["", *(f"- {note}" for note in table.notes[1:])]
    return out


def standing_renderable(card: dict[str, Any], lang: str) -> RenderableType | None:
    """The comparison section for the terminal (rich): a table per figure, or "too few"."""
    table = standing_table(card, lang)
    if not table.notes:
        return None
    if not table.compared:
        return RichText(f"{table.heading}: {table.notes[0]}")
    parts: list[RenderableType] = [RichText(table.heading, style="bold"), RichText(table.notes[0])]
    for block in table.blocks:
        out = Table(title=block.heading, caption=block.note)
        for head, right in zip(block.header, block.right, strict=True):
            out.add_column(head, justify="right" if right else "left", no_wrap=True)
        for _code, cells in block.rows:
            out.add_row(*(RichText(c) for c in cells))
        parts.append(out)
    parts += [RichText(note) for note in table.notes[1:]]
    return Group(*parts)
