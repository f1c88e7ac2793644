"""The comparison gauges: rank, percentile and 偏差値 of the score and of each kind's p50/p95
latency, as the scorecard shows them, absent when few.

Journals written by hand (tests/scorecard): a 13-ward drill (12 scored) and the
3-municipality sample drill.
"""

from __future__ import annotations

from pathlib import Path

from drills.core.journal import Journal
from drills.core.registry import parse_registry
from drills.metrics.collector import Scope, exposition
from drills.reporting.scorecard import build_scorecard
from tests.metrics.support import sample_set
from tests.scorecard.scorecard_samples import REGISTRY_YAML, fill_sample
from tests.scorecard.standing_sample import fill_standing_drill

GAUGES = ("rank", "percentile", "deviation_score")


def _by_code(text: str, gauge: str) -> dict[str, float]:
    return {
        dict(labels)["municipality_code"]: value
        for (name, labels), value in sample_set(text).items()
        if name == f"tsunagari_readiness_{gauge}"
    }


def test_gauges_match_the_scorecard(tmp_path: Path) -> None:
    with Journal(tmp_path / "journal.sqlite") as journal:
        run_id = fill_standing_drill(journal)
        card = build_scorecard(journal, run_id)
        vantage = card["vantage"]
        text = exposition(journal).decode()
        one = exposition(journal, scope=Scope(municipalities=frozenset({"131041"}))).decode()
    expected = {
        m["code"]: m["standing"]["score"] for m in card["municipalities"] if m["score"] is not None
    }
    assert len(expected) == 12
    for gauge, key in zip(GAUGES, ("rank", "percentile", "deviation"), strict=True):
        assert _by_code(text, gauge) == {c: float(s[key]) for c, s in expected.items()}
    assert "131130" not in _by_code(text, "rank")  # untested: no rank at all
    samples = sample_set(text)
    run = (("scenario", "区部 一斉訓練"), ("vantage", vantage))
    assert samples[("tsunagari_drill_scored_municipalities", run)] == 12.0
    # a Pushgateway group of one municipality still ranks it among all twelve
    assert _by_code(one, "rank") == {"131041": 1.0}


def _latency(text: str, gauge: str) -> dict[tuple[str, str, str], float]:
    return {
        (d["municipality_code"], d["channel_kind"], d["stat"]): value
        for (name, labels), value in sample_set(text).items()
        if name == f"tsunagari_latency_standing_{gauge}" and (d := dict(labels))
    }


def test_latency_gauges_match_the_scorecard(tmp_path: Path) -> None:
    with Journal(tmp_path / "journal.sqlite") as journal:
        run_id = fill_standing_drill(journal)
        card = build_scorecard(journal, run_id)
        text = exposition(journal).decode()
    expected = {
        (m["code"], kind, q): s
        for m in card["municipalities"]
        for kind, qs in m["standing"]["latency"].items()
        for q, s in qs.items()
        if s is not None and s["rank"] is not None
    }
    # mail (10) and webhook (11) are compared, p50 and p95; SMS (3) is not
    assert {kind for _code, kind, _q in expected} == {"mail", "webhook"}
    assert len(expected) == 2 * (10 + 11)
    for gauge, key in zip(GAUGES, ("rank", "percentile", "deviation"), strict=True):
        assert _latency(text, gauge) == {k: float(s[key]) for k, s in expected.items()}
    assert _latency(text, "rank")[("131024", "mail", "p95")] == 1.0  # the fastest p95
    measured = {
        dict(labels)["channel_kind"]: v
        for (name, labels), v in sample_set(text).items()
        if name == "tsunagari_drill_latency_measured_municipalities"
    }
    assert measured == {"mail": 10.0, "twilio": 3.0, "webhook": 11.0}


def test_too_few_leaves_the_gauges_absent(tmp_path: Path) -> None:
    registry = parse_registry(REGISTRY_YAML, "test-registry.yaml", check_secrets=False)
    with Journal(tmp_path / "journal.sqlite") as journal:
        fill_sample(journal)
        text = exposition(journal, registry).decode()
    samples = sample_set(text)
    participants = {
        dict(labels)["scenario"]: v
        for (name, labels), v in samples.items()
        if name == "tsunagari_drill_scored_municipalities"
    }
    assert participants == {"首都直下地震 初動参集": 3.0, "多摩地域 通信訓練": 1.0}
    for gauge in GAUGES:
        assert _by_code(text, gauge) == {}  # absent, not 50
        assert _latency(text, gauge) == {}
        assert f"# TYPE tsunagari_latency_standing_{gauge} gauge" in text  # described
    assert any(name == "tsunagari_readiness_score" for name, _ in samples)
