"""Golden files: the Markdown and CSV of the sample journal, byte for byte.

After an intended change of the output, rewrite them and review the diff:
``TSUNAGARI_UPDATE_GOLDEN=1 pytest tests/scorecard/test_golden.py``.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pytest

from drills.reporting.console import console_for, scorecard_renderable
from drills.reporting.html import render_html
from drills.reporting.scorecard import build_scorecard
from drills.reporting.text import CSV_COLUMNS, to_csv, to_markdown

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("TSUNAGARI_UPDATE_GOLDEN") == "1"


def check_golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_bytes(actual.encode("utf-8"))
    expected = path.read_bytes().decode("utf-8")
    assert actual == expected, f"{name} differs from the golden file (see the module docstring)"


@pytest.fixture
def card(sample_journal, registry):
    journal, run_id = sample_journal
    return build_scorecard(journal, run_id, registry)


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_markdown_golden(card, lang):
    check_golden(f"scorecard.{lang}.md", to_markdown(card, lang))


def test_markdown_summary_golden(card):
    check_golden("summary.ja.md", to_markdown(card, "ja", summary=True))


def test_csv_golden(card):
    check_golden("scorecard.csv", to_csv(card))


def test_markdown_opens_with_what_got_worse(card):
    for lang, heading in (
        ("ja", "## 前回から悪化した項目"),
        ("en", "## What got worse since the last drill"),
    ):
        sections = [line for line in to_markdown(card, lang).splitlines() if line.startswith("## ")]
        assert sections[0] == heading


def test_csv_parses_and_never_calls_accepted_delivered(card):
    rows = list(csv.DictReader(io.StringIO(to_csv(card))))
    assert list(rows[0]) == CSV_COLUMNS
    sms = next(r for r in rows if r["municipality_code"] == "131211" and r["channel_id"] == "sms")
    assert (sms["status"], sms["delivered"], sms["accepted_only"], sms["slo_met"]) == (
        "unconfirmed",
        "0",
        "10",
        "false",
    )
    assert {r["municipality_code"] for r in rows if r["status"] == "not_drilled"} == {
        "132012",
        "133086",
    }
    # one row per municipality × channel, plus one per municipality not in the drill
    assert len(rows) == sum(len(m["channels"]) for m in card["municipalities"]) + 2


@pytest.fixture
def evidence_card(evidence_journal, registry):
    journal, run_id = evidence_journal
    return build_scorecard(journal, run_id, registry)


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_evidence_markdown_golden(evidence_card, lang):
    check_golden(f"evidence.{lang}.md", to_markdown(evidence_card, lang))


def test_evidence_csv_golden(evidence_card):
    check_golden("evidence.csv", to_csv(evidence_card))


def test_receipts_and_drill_outages_are_shown_apart(evidence_card):
    ja, en = to_markdown(evidence_card, "ja"), to_markdown(evidence_card, "en")
    row = {line.split(" | ")[1]: line for line in ja.splitlines() if line.startswith("| 13")}
    # a receipt is named as such; the drill's outage is shown, outside the count, never lost
    assert "✔ 8/8 p95 0.32s 訓練による停止2" in row["足立区"]
    assert "9/10 p95 2.08s 受信報告9 不達1" in row["足立区"]
    assert "— 0/0 訓練による停止3" in row["千代田区"]
    assert "不達" not in row["千代田区"]
    assert "receipt 9 lost 1" in en and "drill outage 3" in en
    rows = {
        (r["municipality_code"], r["channel_id"]): r
        for r in csv.DictReader(io.StringIO(to_csv(evidence_card)))
    }
    sms, outage = rows[("131211", "sms")], rows[("131016", "chat")]
    assert (sms["evidence_seen"], sms["evidence_receipt"], sms["channel_score"]) == (
        "0",
        "9",
        "74.3",
    )
    assert (outage["drill_outage"], outage["lost"], outage["status"]) == ("3", "0", "untested")
    assert outage["channel_score"] == ""


def test_receipts_and_drill_outages_in_json_html_and_terminal(evidence_card):
    adachi = evidence_card["municipalities"][0]
    sms = next(c for c in adachi["channels"] if c["id"] == "sms")
    assert sms["evidence"] == {"seen": 0, "receipt": 9, "accepted": 0}
    assert (sms["confirmed"], sms["drill_outage"], sms["score"]) == (9, 0, 74.3)
    assert evidence_card["summary"]["drill_outage"] == 5
    assert evidence_card["summary"]["evidence"] == {"seen": 18, "receipt": 9, "accepted": 0}
    assert evidence_card["model"]["weights"]["receipt"] == 0.8
    for lang, receipt, outage, model in (
        ("ja", "受信報告9", "訓練による停止3", "受信報告のみ 0.8"),
        ("en", "receipt 9", "drill outage 3", "a provider or carrier receipt only 0.8"),
    ):
        html = render_html(evidence_card, lang, charts=False)
        assert receipt in html and outage in html and model in html
        buf = io.StringIO()
        console_for(buf).print(scorecard_renderable(evidence_card, lang))
        assert receipt in buf.getvalue() and outage in buf.getvalue()
