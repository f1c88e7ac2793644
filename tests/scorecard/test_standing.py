"""The comparison among participants (drills.core.standing): ranks, percentiles, 偏差値.

Expected numbers are worked out by hand in the comments, never copied from a run.
"""

from __future__ import annotations

import doctest
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drills.core import standing
from drills.core.standing import MIN_PARTICIPANTS, compare, drill_standing, too_few_text
from drills.reporting import standing as standing_report


@pytest.mark.parametrize("module", [standing, standing_report], ids=lambda m: m.__name__)
def test_docstring_examples(module: object) -> None:
    result = doctest.testmod(module)  # type: ignore[arg-type]
    assert result.attempted > 0 and result.failed == 0


def test_minimum_is_ten() -> None:
    assert MIN_PARTICIPANTS == 10


def test_hand_computed_deviation_scores() -> None:
    # 10 scores: 100, 90, 80, 80, 70, 70, 70, 60, 50, 30 — sum 700, mean 70.
    # squared deviations: 900 + 400 + 100 + 100 + 0 + 0 + 0 + 100 + 400 + 1600 = 3600,
    # population variance 360, σ = √360 = 18.9737.
    values = dict(zip("abcdefghij", (100, 90, 80, 80, 70, 70, 70, 60, 50, 30), strict=True))
    c = compare(values)
    assert (c.population.n, c.population.mean, c.population.sd) == (10, 70.0, 18.97)
    sd = math.sqrt(360)
    # 100: 50 + 10 × 30 / 18.9737 = 65.81 → 65.8; 30: 50 − 10 × 40 / 18.9737 = 28.92 → 28.9
    assert c.of["a"].deviation == 65.8 == round(50 + 300 / sd, 1)
    assert c.of["j"].deviation == 28.9
    assert c.of["e"].deviation == 50.0  # exactly the mean
    # 80: 50 + 100 / 18.9737 = 55.27 → 55.3
    assert c.of["c"].deviation == c.of["d"].deviation == 55.3


def test_competition_ranking_and_midrank_percentile() -> None:
    values = dict(zip("abcdefghij", (100, 90, 80, 80, 70, 70, 70, 60, 50, 30), strict=True))
    c = compare(values)
    ranks = [c.of[k].rank for k in "abcdefghij"]
    assert ranks == [1, 2, 3, 3, 5, 5, 5, 8, 9, 10]  # "1224": tied share, next skipped
    # percentile = 100 × (strictly worse + ½ × tied incl. itself) / n
    assert c.of["a"].percentile == 95.0  # (9 + 0.5) / 10
    assert c.of["c"].percentile == 70.0  # (6 + 1) / 10
    assert c.of["e"].percentile == 45.0  # (3 + 1.5) / 10
    assert c.of["j"].percentile == 5.0  # (0 + 0.5) / 10


def test_nine_are_too_few_ten_are_compared() -> None:
    nine = compare({str(i): float(i) for i in range(9)})
    assert not nine.population.compared and nine.population.n == 9
    assert all(
        s.rank is None and s.percentile is None and s.deviation is None for s in nine.of.values()
    )
    assert all(not s.compared and s.n == 9 for s in nine.of.values())
    ten = compare({str(i): float(i) for i in range(10)})
    assert ten.population.compared and ten.of["9"].rank == 1 and ten.of["0"].rank == 10
    assert (
        too_few_text(9, "ja") == "比較するには参加団体が少なすぎます（9 団体、10 団体以上で比較）"
    )
    assert too_few_text(9, "en") == "too few to compare (9 municipalities; comparison needs 10)"


def test_everyone_equal_is_fifty() -> None:
    c = compare({str(i): 80.0 for i in range(12)})
    assert c.population.sd == 0.0
    assert {(s.rank, s.percentile, s.deviation) for s in c.of.values()} == {(1, 50.0, 50.0)}


def test_untested_is_neither_ranked_nor_counted() -> None:
    values: dict[str, float | None] = {str(i): float(i) for i in range(10)}
    values["untested"] = None
    c = compare(values)
    assert "untested" not in c.of and c.population.n == 10
    # nine scored and one untested are still too few
    values.pop("0")
    assert not compare(values).population.compared


def test_latency_lower_is_better_and_deviation_oriented_to_faster() -> None:
    # p95 latencies 0.1 … 1.0 s: the fastest ranks 1 and has the highest 偏差値
    values = {f"m{i}": i / 10 for i in range(1, 11)}
    c = compare(values, lower_is_better=True, digits=4)
    fast, slow = c.of["m1"], c.of["m10"]
    assert (fast.rank, slow.rank) == (1, 10)
    assert fast.percentile == 95.0 and slow.percentile == 5.0
    # mean 0.55, σ = √(Σ(i − 5.5)² / 10) / 10 = √8.25 / 10 = 0.28723
    assert fast.deviation == round(50 + 10 * 0.45 / math.sqrt(0.0825), 1) == 65.7
    assert slow.deviation == 34.3
    # the same numbers as scores (higher better) mirror it
    as_scores = compare(values, digits=4)
    assert as_scores.of["m10"].rank == 1 and as_scores.of["m10"].deviation == 65.7


def test_figures_are_compared_as_shown() -> None:
    # 79.96 and 80.04 both show as 80.0: tied
    values = {"a": 79.96, "b": 80.04, **{str(i): float(i) for i in range(8)}}
    c = compare(values)
    assert c.of["a"].value == c.of["b"].value == 80.0
    assert c.of["a"].rank == c.of["b"].rank == 1


def test_drill_standing_blocks() -> None:
    scores: dict[str, float | None] = {f"c{i}": 50.0 + i for i in range(11)}
    scores["none"] = None
    latencies = {(f"c{i}", "webhook"): {"p50": 0.1 * i, "p95": 0.2 * i} for i in range(10)}
    latencies[("c0", "twilio")] = {"p50": 2.0, "p95": 3.0}
    pops, per = drill_standing(scores, latencies)
    assert pops["score"]["n"] == 11 and pops["score"]["compared"]
    assert pops["latency"]["webhook"]["p95"]["compared"]
    assert not pops["latency"]["twilio"]["p50"]["compared"]
    assert pops["latency"]["twilio"]["p50"]["n"] == 1
    assert per["c10"]["score"]["rank"] == 1 and per["none"]["score"] is None
    assert per["none"]["latency"] == {} and "webhook" not in per["c10"]["latency"]
    assert per["c0"]["latency"]["webhook"]["p50"]["rank"] == 1  # 0.0 s is the fastest
    assert per["c0"]["latency"]["twilio"]["p95"] == {
        "value": 3.0,
        "n": 1,
        "compared": False,
        "rank": None,
        "percentile": None,
        "deviation": None,
    }


@given(st.lists(st.integers(0, 1000), min_size=10, max_size=40))
def test_properties(raw: list[int]) -> None:
    values = {str(i): v / 10 for i, v in enumerate(raw)}
    c = compare(values)
    n = len(values)
    for k, s in c.of.items():
        better = sum(1 for v in values.values() if v > values[k])
        assert s.rank == better + 1
        assert s.percentile is not None and 0 < s.percentile < 100
        assert s.deviation is not None
    # ranks are consistent with the values, and so are 偏差値
    for a in c.of.values():
        for b in c.of.values():
            if a.value > b.value:
                assert a.rank is not None and b.rank is not None and a.rank < b.rank
                assert a.deviation is not None and b.deviation is not None
                assert a.deviation >= b.deviation
    # midrank percentiles average to 50 (up to rounding to 0.1)
    mean_pct = sum(s.percentile or 0 for s in c.of.values()) / n
    assert mean_pct == pytest.approx(50.0, abs=0.05)
