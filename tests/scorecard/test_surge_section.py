"""The surge section of the scorecard: JSON, Markdown (golden), terminal and HTML.

The journal is one surge drill recorded by the surge's own writer
(``surge_journal``, made by ``scorecard_samples.fill_surge_sample``): 足立区/chat breaks at 80 msg/s, 千代田区/chat holds
up to 80 msg/s. The HTML in a real browser is in ``test_html_chromium.py``.
"""

from __future__ import annotations

import io
import json
import re

import pytest
from scorecard_samples import SURGE_SCENARIO
from test_golden import check_golden

from drills.reporting.console import console_for, scorecard_renderable
from drills.reporting.html import render_html
from drills.reporting.scorecard import build_scorecard
from drills.reporting.text import to_markdown


@pytest.fixture
def surge_card(surge_journal, registry):
    journal, run_id = surge_journal
    return build_scorecard(journal, run_id, registry), journal.events(run_id, "surge")


def test_the_card_carries_each_surge_as_journalled(surge_card):
    card, events = surge_card
    assert card["scenario"] == SURGE_SCENARIO
    adachi, chiyoda = card["surge"]
    assert [s["seq"] for s in card["surge"]] == [1, 2]
    assert (adachi["municipality_code"], adachi["channel_id"], adachi["label"]) == (
        "131211",
        "chat",
        "庁内チャット",
    )
    assert adachi["started_at"] == "2026-12-01T19:00:00+09:00"  # ISO, Asia/Tokyo
    # the verdicts
    assert adachi["held"] is False and adachi["breaking_point"]["rate"] == 80.0
    assert adachi["held_up_to_rate"] == 40.0
    assert chiyoda["held"] is True and chiyoda["breaking_point"] is None
    assert chiyoda["held_up_to_rate"] == 80.0
    # the ramp table is the event's, step by step; per-worker tallies stay in the journal
    for entry, event in zip(card["surge"], events, strict=True):
        data = event["data"]
        assert entry["steps"] == data["steps"] and entry["totals"] == data["totals"]
        assert entry["slo"] == data["slo"] == {"latency_s": 3.0, "reachability": 0.95}
        assert "workers" not in entry
    assert [s["rate"] for s in adachi["steps"]] == [0.0, 10.0, 40.0, 80.0]
    assert [s["slo_met"] for s in adachi["steps"]] == [True, True, True, False]
    assert adachi["peak_rate"] == 80.0 and adachi["achieved_rps"] == 72.0
    assert card["summary"]["unreadable_events"] == 0
    json.dumps(card)
    # the probes are ordinary deliveries: 4 steps × 3 on each channel
    sent = {m["code"]: m["channels"][0]["sent"] for m in card["municipalities"]}
    assert sent == {"131211": 12, "131016": 12}


def test_a_card_without_surges_has_an_empty_section(sample_journal, registry):
    journal, run_id = sample_journal
    card = build_scorecard(journal, run_id, registry)
    assert card["surge"] == []
    assert "サージ" not in to_markdown(card, "ja") and "Surge" not in to_markdown(card, "en")
    assert 'id="surge"' not in render_html(card, "en", charts=False)


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_markdown_golden(surge_card, lang):
    card, _ = surge_card
    text = to_markdown(card, lang)
    check_golden(f"surge.{lang}.md", text)
    heading = {"ja": "## 負荷試験（サージ）", "en": "## Surge (load test)"}[lang]
    assert text.count(heading) == 1 and text.count("\n### ") == 2


def test_markdown_summary_says_the_verdicts(surge_card):
    card, _ = surge_card
    summary = to_markdown(card, "en", summary=True)
    section = summary.split("## Surge (load test)", 1)[1]
    lines = [line for line in section.splitlines() if line.startswith("- ")]
    assert lines == [
        "- 足立区 chat (庁内チャット, webhook) — surge 1: breaking point: 80 msg/s "
        "(step 3, delivered p95 7.05s, SLO 3 s)",
        "- 千代田区 chat (webhook) — surge 2: no breaking point: the SLO held up to 80 msg/s",
    ]
    assert "| 段 |" not in summary and "| Step |" not in summary


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_terminal_shows_each_ramp_and_verdict(surge_card, lang):
    card, _ = surge_card
    console = console_for(io.StringIO())
    console.width = 140
    console.print(scorecard_renderable(card, lang))
    out = console.file.getvalue()
    breaking, held = {
        "ja": ("破綻点: 80 通/秒", "破綻点なし: 80 通/秒 まで SLO を満たしました"),
        "en": ("breaking point: 80 msg/s", "no breaking point: the SLO held up to 80 msg/s"),
    }[lang]
    assert breaking in out and held in out
    assert out.index("足立区") < out.index(breaking) < out.index(held)
    rows = [line for line in out.splitlines() if re.match(r"^│\s+3 │\s+80 │", line)]
    assert len(rows) == 2  # the 80 msg/s step of each surge
    assert "✘" in rows[0] and "✔" in rows[1]


def test_html_has_a_surge_section_after_readiness(surge_card):
    card, _ = surge_card
    html = render_html(card, "ja", charts=False)
    assert html.index('id="readiness"') < html.index('id="surge"')
    assert html.count('class="surge"') == 2
    assert 'data-held="false"' in html and 'data-held="true"' in html
    assert "✘ 未達" in html and "✔ 達成" in html  # never colour alone
    assert "破綻点: 80 通/秒" in html
