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

from drills.report_text import CSV_COLUMNS, to_csv, to_markdown
from drills.scorecard import build_scorecard

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
