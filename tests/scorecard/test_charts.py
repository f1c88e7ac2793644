"""Charts: inline SVG from matplotlib, deterministic, self-contained, with a font fallback."""

from __future__ import annotations

import re

import pytest

from drills.reporting import charts
from drills.reporting.scorecard import build_scorecard


@pytest.fixture
def card(sample_journal, registry):
    journal, run_id = sample_journal
    return build_scorecard(journal, run_id, registry)


def test_svgs_are_inline_ready_and_deterministic(card):
    lat, trend = charts.latency_svg(card, "ja"), charts.trend_svg(card, "ja")
    for svg, prefix in ((lat, "lat"), (trend, "trend")):
        assert svg.startswith('<svg role="img" aria-label=')
        assert "<?xml" not in svg and "<!DOCTYPE" not in svg
        ids = re.findall(r'\bid="([^"]+)"', svg)
        assert ids and all(
            i.startswith(prefix + "-") for i in ids
        )  # two charts in one page never clash
        assert not re.search(r'(href|src)="(?!#)', svg)  # nothing outside the SVG is referenced
    assert charts.latency_svg(card, "ja") == lat and charts.trend_svg(card, "ja") == trend
    assert 'aria-label="チャネル種別ごとの遅延分布"' in lat


def test_no_chart_without_data(card):
    empty = {
        **card,
        "latency_by_kind": {"twilio": {**card["latency_by_kind"]["twilio"]}},
        "trend": [],
    }
    assert charts.latency_svg(empty, "ja") is None
    assert charts.trend_svg(empty, "ja") is None


def test_without_a_japanese_font_charts_fall_back_to_english(card, monkeypatch):
    assert charts.cjk_font() is not None, "bootstrap installs fonts-ipaexfont-gothic"
    monkeypatch.setattr(charts, "cjk_font", lambda: None)
    lat = charts.latency_svg(card, "ja")
    assert 'aria-label="Latency distribution by channel kind"' in lat
    assert charts.trend_svg(card, "ja").startswith(
        '<svg role="img" aria-label="Readiness over time'
    )
