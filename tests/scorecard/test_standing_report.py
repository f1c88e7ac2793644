"""The comparison among participants in the reports: golden Markdown and HTML sections.

A synthetic drill of 13 municipalities (12 scored, one untested), written with
fixed times, and the 3-municipality sample drill ("too few to compare"). Only
the comparison section is compared with the golden files, so other sections may
change without touching them. Rewrite after an intended change and review:
``TSUNAGARI_UPDATE_GOLDEN=1 pytest tests/scorecard/test_standing_report.py``.
"""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from standing_sample import WARDS, fill_standing_drill
from test_golden import check_golden

from drills.core.journal import Journal
from drills.reporting.console import console_for, scorecard_renderable
from drills.reporting.html import render_html
from drills.reporting.scorecard import build_scorecard
from drills.reporting.text import to_markdown


@pytest.fixture
def big_card(tmp_path: Path) -> Iterator[dict]:
    journal = Journal(tmp_path / "standing.sqlite")
    run_id = fill_standing_drill(journal)
    yield build_scorecard(journal, run_id)
    journal.close()


@pytest.fixture
def small_card(sample_journal, registry) -> dict:
    journal, run_id = sample_journal
    return build_scorecard(journal, run_id, registry)


def md_section(md: str) -> str:
    heads = ("## 参加団体間の比較", "## Comparison among participants")
    start = next(md.index(h) for h in heads if h in md)
    ends = [md.find(f"\n{h}", start + 1) for h in ("## ", "凡例: ", "Legend: ")]
    end = min((e for e in ends if e >= 0), default=len(md))
    return md[start:end].rstrip("\n") + "\n"


def html_section(html: str) -> str:
    match = re.search(r'<section id="standing".*?</section>\n', html, re.S)
    assert match, "no comparison section"
    return match.group(0)


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_markdown_golden(big_card, small_card, lang):
    check_golden(f"standing.{lang}.md", md_section(to_markdown(big_card, lang)))
    check_golden(f"standing-too-few.{lang}.md", md_section(to_markdown(small_card, lang)))


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_html_golden(big_card, small_card, lang):
    check_golden(f"standing.{lang}.html", html_section(render_html(big_card, lang, charts=False)))
    small = html_section(render_html(small_card, lang, charts=False))
    check_golden(f"standing-too-few.{lang}.html", small)


def test_the_big_drill_is_compared(big_card):
    pops = big_card["standing"]
    assert (pops["score"]["n"], pops["score"]["compared"]) == (12, True)
    assert pops["latency"]["webhook"]["p50"]["n"] == 11  # 目黒区's chat never arrived
    assert pops["latency"]["mail"]["p95"]["n"] == 10
    assert not pops["latency"]["twilio"]["p50"]["compared"]  # 3 by SMS
    by = {m["code"]: m for m in big_card["municipalities"]}
    chiyoda, shinjuku = by["131016"]["standing"], by["131041"]["standing"]
    # the same deliveries score the same and share the rank (and 偏差値)
    assert chiyoda["score"]["value"] != shinjuku["score"]["value"]  # 千代田区 also has SMS
    assert chiyoda["latency"]["webhook"]["p50"]["rank"] == 1
    assert shinjuku["latency"]["webhook"]["p50"]["rank"] == 1
    assert by["131024"]["standing"]["latency"]["webhook"]["p50"]["rank"] == 3
    assert by["131130"]["score"] is None and by["131130"]["standing"]["score"] is None
    assert "webhook" not in by["131105"]["standing"]["latency"]
    # the 偏差値 follow from the population's mean and σ shown in the card
    mean, sd = pops["score"]["mean"], pops["score"]["sd"]
    for m in big_card["municipalities"]:
        s = m["standing"]["score"]
        if s is not None:
            assert s["deviation"] == pytest.approx(50 + 10 * (s["value"] - mean) / sd, abs=0.06)
    json.dumps(big_card, ensure_ascii=False)  # JSON-ready


def test_the_small_drill_says_too_few(small_card):
    for lang, words in (
        ("ja", "比較するには参加団体が少なすぎます（3 団体、10 団体以上で比較）"),
        ("en", "Too few to compare (3 municipalities; comparison needs 10)"),
    ):
        assert words in to_markdown(small_card, lang)
        assert words in render_html(small_card, lang, charts=False)
        assert words in _terminal(small_card, lang)
    assert all(m["standing"]["score"]["rank"] is None for m in small_card["municipalities"])


def _terminal(card: dict, lang: str) -> str:
    buf = io.StringIO()
    console_for(buf).print(scorecard_renderable(card, lang))
    return buf.getvalue()


def test_terminal_shows_the_tables(big_card):
    text = _terminal(big_card, "en")
    assert "Comparison among participants" in text and "Deviation score" in text
    row = next(line for line in text.splitlines() if "目黒区" in line and "12/12" in line)
    assert "19.4" in row and "4.2" in row
    mail = text[text.index("mail latency") : text.index("webhook latency")]
    row = next(line for line in mail.splitlines() if "中央区" in line)
    assert [c.strip() for c in row.split("│")[3:-1]] == [
        *("359.0", "3/10", "75.0", "61.3"),
        *("367.1", "1/10", "95.0", "62.6"),
    ]
    assert "twilio latency: too few to compare (3 municipalities" in text


def _by_hand_p95(values: list[float]) -> float:
    """Linear interpolation between the order statistics around 0.95 × (n − 1)."""
    xs = sorted(values)
    pos = 0.95 * (len(xs) - 1)
    lo = int(pos)
    return xs[lo] + (xs[min(lo + 1, len(xs) - 1)] - xs[lo]) * (pos - lo)


def test_a_latency_deviation_and_percentile_redone_by_hand(big_card):
    """From the raw mail latencies of the sample (not through drills.core.standing)."""
    p95 = {}
    for code, _name, _chat, mail in WARDS:
        if mail is not None:
            base, step = mail
            p95[code] = round(_by_hand_p95([base + i * step for i in range(10)]) * 1000, 1)
    assert len(p95) == 10
    mean = sum(p95.values()) / 10
    sd = math.sqrt(sum((x - mean) ** 2 for x in p95.values()) / 10)
    # 中央区 (131024): the fastest p95; faster is better, so z = (mean − x) / σ
    deviation = 50 + 10 * (mean - p95["131024"]) / sd
    # 千代田区 (131016) ties 新宿区: 7 are slower, 2 tied → (7 + 2/2) / 10
    slower = sum(1 for x in p95.values() if x > p95["131016"])
    tied = sum(1 for x in p95.values() if x == p95["131016"])
    percentile = 100 * (slower + tied / 2) / 10
    assert (p95["131024"], f"{deviation:.1f}", slower, tied, percentile) == (
        367.1, "62.6", 7, 2, 80.0,
    )  # fmt: skip
    for lang in ("ja", "en"):
        md = md_section(to_markdown(big_card, lang))
        mail = md[md.index("### mail") : md.index("### webhook")]
        rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in mail.splitlines()[6:]}
        assert rows["131024"][6:9] == ["367.1", "1/10", "95.0"]
        assert rows["131024"][9] == f"{deviation:.1f} |"
        assert rows["131016"][6:9] == [f"{p95['131016']:.1f}", "2/10", f"{percentile:.1f}"]
        html = html_section(render_html(big_card, lang, charts=False))
        table = re.search(r'<table data-figure="latency:mail">.*?</table>', html, re.S)
        assert table
        row = re.search(r'<tr data-code="131024">(.*?)</tr>', table.group(0))
        assert row
        cells = re.findall(r"<td[^>]*>([^<]*)</td>", row.group(1))
        assert cells[6:] == ["367.1", "1/10", "95.0", f"{deviation:.1f}"]
