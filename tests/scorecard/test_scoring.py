"""The scoring model, case by case, against numbers computed by hand.

Each expected value is worked out in the comment above it from the formulas in
README ("Scoring model"); none is copied from the code's output.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from drills.core.delivery import Delivery, Evidence, Outcome
from drills.core.scoring import (
    DAY_S,
    WEIGHTS,
    Ratio,
    Weights,
    change_status,
    freshness,
    grade,
    grade_label,
    percentile,
    reachability,
    round_score,
    score_channel,
    score_municipality,
)


def deliveries(
    delivered=0, late=0, accepted=0, lost=0, rejected=0, error=0, latency=0.3, late_latency=5.0
):
    def one(outcome: Outcome, lat: float | None) -> Delivery:
        return Delivery(
            "r", "s", "131211", "足立区", "chat", "webhook", "TSG-X", outcome, latency_s=lat
        )

    return (
        [one(Outcome.DELIVERED, latency)] * delivered
        + [one(Outcome.LATE, late_latency)] * late
        + [one(Outcome.ACCEPTED, None)] * accepted
        + [one(Outcome.LOST, None)] * lost
        + [one(Outcome.REJECTED, None)] * rejected
        + [one(Outcome.ERROR, None)] * error
    )


# ----------------------------------------------------------------------------- channel


def test_perfect_channel_scores_100():
    # reach 10/10 → min(1, 1/0.95) = 1; on time 10/10 = 1 → 100 × (0.6 + 0.4) = 100
    cs = score_channel(deliveries(delivered=10), 0.95, 3.0)
    assert (cs.score, cs.status, cs.slo_met, cs.reachability) == (100.0, "ok", True, 1.0)


def test_worked_example_chat_one_late():
    # 9 delivered + 1 late: reach 10/10 → 1; on time 9/10 → 100 × (0.6 × 1 + 0.4 × 0.9) = 96.0
    cs = score_channel(deliveries(delivered=9, late=1), 0.95, 3.0)
    assert cs.score == 96.0
    assert cs.parts == {"reach": 1.0, "latency": 0.9}


def test_worked_example_mail_with_losses():
    # 6 delivered, 1 late, 3 lost: reach 7/10 = 0.7 → 0.7/0.95 = 0.736842; on time 0.6
    # 100 × (0.6 × 0.736842 + 0.4 × 0.6) = 44.2105 + 24 = 68.2105 → 68.2
    cs = score_channel(deliveries(delivered=6, late=1, lost=3), 0.95, 3.0)
    assert cs.score == 68.2
    assert cs.reachability == pytest.approx(0.7)
    assert cs.status == "partial" and not cs.slo_met


def test_all_accepted_only_is_unconfirmed_never_delivered():
    # 10 accepted-only: confirmed reach 0; soft reach 0.5 × 10 / 10 = 0.5 → 0.5/0.95 = 0.526316
    # on time 0 → 100 × 0.6 × 0.526316 = 31.5789 → 31.6
    cs = score_channel(deliveries(accepted=10), 0.95, 3.0)
    assert cs.score == 31.6
    assert cs.status == "unconfirmed"
    assert cs.reachability == 0.0 and cs.confirmed == 0 and not cs.slo_met
    assert cs.counts["delivered"] == 0 and cs.counts["accepted"] == 10
    assert cs.latency_p50_s is None and cs.latency_p95_s is None


def test_channel_with_zero_sends_is_untested_without_a_score():
    cs = score_channel([], 0.95, 3.0)
    assert (cs.sent, cs.score, cs.status, cs.slo_met, cs.reachability) == (
        0,
        None,
        "untested",
        False,
        0.0,
    )


def test_harness_errors_are_not_counted_against_the_channel():
    # 9 delivered + 1 error: counted 9, reach 9/9 → score 100, not 94
    cs = score_channel(deliveries(delivered=9, error=1), 0.95, 3.0)
    assert (cs.counted, cs.score, cs.status) == (9, 100.0, "ok")
    # only errors: nothing was measured
    only = score_channel(deliveries(error=4), 0.95, 3.0)
    assert (only.score, only.status, only.sent) == (None, "untested", 4)


def _sms(outcome: Outcome, evidence: Evidence | None, n: int, latency: float | None = 2.0):
    return [
        Delivery(
            "r",
            "s",
            "131211",
            "足立区",
            "sms",
            "twilio",
            "TSG-X",
            outcome,
            latency_s=latency if outcome.reached else None,
            evidence=evidence,
        )
    ] * n


def test_drill_outage_is_not_counted_against_the_channel():
    # 8 delivered + 2 sent into the drill's own outage: counted 8, reach 8/8 → 100, not 88
    cs = score_channel(deliveries(delivered=8) + _sms(Outcome.DRILL_OUTAGE, None, 2), 0.95, 3.0)
    assert (cs.sent, cs.counted, cs.reachability, cs.score, cs.status) == (10, 8, 1.0, 100.0, "ok")
    assert cs.counts["drill_outage"] == 2 and cs.counts["lost"] == 0
    # only drill outages: nothing was measured, as with harness errors
    only = score_channel(_sms(Outcome.DRILL_OUTAGE, None, 3), 0.95, 3.0)
    assert (only.score, only.status, only.counted, only.counts["drill_outage"]) == (
        None,
        "untested",
        0,
        3,
    )


def test_receipt_counts_less_than_seen():
    # 10 delivered on the carrier's receipt alone: reach credit 0.8 × 10 / 10 = 0.8
    # → min(1, 0.8 / 0.95) = 0.842105; on time 0.8 → 100 × (0.6 × 0.842105 + 0.4 × 0.8)
    # = 50.5263 + 32 = 82.5263 → 82.5 (seen: 100)
    cs = score_channel(_sms(Outcome.DELIVERED, Evidence.RECEIPT, 10), 0.95, 3.0)
    assert (cs.score, cs.reachability, cs.confirmed, cs.status) == (82.5, 1.0, 10, "ok")
    assert cs.evidence == {"seen": 0, "receipt": 10, "accepted": 0}
    seen = score_channel(_sms(Outcome.DELIVERED, Evidence.SEEN, 10), 0.95, 3.0)
    assert seen.score == 100.0 and seen.evidence == {"seen": 10, "receipt": 0, "accepted": 0}


def test_evidence_mix_worked_by_hand():
    # 5 seen on time, 2 receipt on time, 1 receipt late, 1 accepted-only, 1 lost; n = 10
    # reach credit (5 + 0.8 × 3 + 0.5 × 1) / 10 = 0.79 → 0.79 / 0.95 = 0.831579
    # on time (5 + 0.8 × 2) / 10 = 0.66 → 100 × (0.6 × 0.831579 + 0.4 × 0.66)
    # = 49.8947 + 26.4 = 76.2947 → 76.3
    items = (
        _sms(Outcome.DELIVERED, Evidence.SEEN, 5)
        + _sms(Outcome.DELIVERED, Evidence.RECEIPT, 2)
        + _sms(Outcome.LATE, Evidence.RECEIPT, 1, 5.0)
        + _sms(Outcome.ACCEPTED, Evidence.ACCEPTED, 1)
        + _sms(Outcome.LOST, None, 1)
    )
    cs = score_channel(items, 0.95, 3.0)
    assert cs.score == 76.3
    assert cs.evidence == {"seen": 5, "receipt": 3, "accepted": 1}
    # reachability is the plain share of confirmed arrivals, whatever the evidence
    assert cs.reachability == 0.8


def test_accepted_keeps_the_unconfirmed_credit_and_a_receipt_lifts_it():
    # accepted-only with a carrier receipt (unobserved recipient): 0.8, not 0.5, of reach
    # → min(1, 0.8 / 0.95) × 0.6 = 50.5263 → 50.5; on time 0 (not delivered)
    cs = score_channel(_sms(Outcome.ACCEPTED, Evidence.RECEIPT, 4), 0.95, 3.0)
    assert (cs.score, cs.status, cs.confirmed) == (50.5, "unconfirmed", 0)
    # legacy accepted rows (no evidence recorded) derive `accepted`: 0.5 → 31.6
    assert score_channel(deliveries(accepted=4), 0.95, 3.0).score == 31.6


def test_reachability_is_one_formula():
    counts = {"delivered": 3, "late": 1, "lost": 2, "rejected": 2, "error": 5, "drill_outage": 4}
    # (3 + 1) / (3 + 1 + 2 + 2) = 0.5: errors and drill outages left out
    assert reachability(counts) == 0.5
    assert reachability({"error": 2, "drill_outage": 1}) == 0.0
    items = [
        Delivery("r", "s", "1", "n", "c", "k", "T", Outcome(o), latency_s=0.1)
        for o, n in counts.items()
        for _ in range(n)
    ]
    assert score_channel(items, 0.9, 1.0).reachability == 0.5


def test_rejected_channel_is_down_and_scores_zero():
    cs = score_channel(deliveries(rejected=5), 0.95, 3.0)
    assert (cs.score, cs.status, cs.reachability) == (0.0, "down", 0.0)


def test_reach_above_slo_is_capped():
    # SLO 0.8, reach 8/10 → min(1, 0.8/0.8) = 1; on time 0.8 → 60 + 32 = 92.0
    cs = score_channel(deliveries(delivered=8, lost=2), 0.8, 10.0)
    assert cs.score == 92.0 and cs.slo_met


def test_slo_met_needs_the_p95_latency_within_the_slo():
    # all reached, but p95 of [0.3]*5 + [5.0]*5 = 5.0 > 3.0 s
    cs = score_channel(deliveries(delivered=5, late=5), 0.95, 3.0)
    assert not cs.slo_met and cs.status == "partial"
    # 100 × (0.6 × 1 + 0.4 × 0.5) = 80.0
    assert cs.score == 80.0


def test_scores_round_half_up_like_by_hand():
    assert round_score(32.25) == 32.3 and round_score(93.75) == 93.8 and round_score(0.05) == 0.1
    assert round_score(-1.05) == -1.1  # away from zero, so a change reads the same both ways


def test_percentile_is_linear_interpolation():
    assert percentile([1.0, 2.0, 3.0, 4.0], 95) == pytest.approx(3.85)  # 3 + 0.85 × (4 − 3)
    assert percentile([], 50) is None
    assert percentile([7.0], 95) == 7.0


# ----------------------------------------------------------------------------- municipality


def _ch(kind: str, **kw) -> tuple[str, object]:
    return kind, score_channel(deliveries(**kw), 0.95, 3.0)


def test_worked_example_municipality():
    # channels 96.0, 68.2, 31.6 → mean 65.2667 → 0.652667
    # redundancy: webhook and mail confirmed → 2/2 = 1; freshness 1; roll call 18/20 = 0.9
    # (0.5 × 0.652667 + 0.2 × 1 + 0.1 × 1 + 0.1 × 0.9) / 0.9 = 0.716333 / 0.9 = 0.795926 → 79.6
    chans = [
        _ch("webhook", delivered=9, late=1),
        _ch("mail", delivered=6, late=1, lost=3),
        _ch("twilio", accepted=10),
    ]
    ms = score_municipality(chans, freshness_value=1.0, roll_call=Ratio(18, 20))
    assert ms.score == 79.6 and grade(ms.score) == "B"
    assert ms.confirmed_kinds == ("mail", "webhook")  # accepted-only twilio does not count
    assert ms.parts["channels"] == pytest.approx(0.652667, abs=1e-6)
    # without the roll call the weights are rescaled over 0.8:
    # (0.326333 + 0.2 + 0.1) / 0.8 = 0.782917 → 78.3
    assert score_municipality(chans, freshness_value=1.0).score == 78.3


def test_municipality_with_no_channels_has_no_score():
    ms = score_municipality([], freshness_value=1.0, roll_call=Ratio(5, 5))
    assert ms.score is None and ms.parts == {} and grade(ms.score) is None


def test_municipality_whose_channels_are_all_untested_has_no_score():
    ms = score_municipality([_ch("webhook"), _ch("mail", error=3)], freshness_value=1.0)
    assert ms.score is None


def test_all_accepted_only_municipality():
    # one twilio channel, accepted-only: channel 31.6; redundancy 0/2 = 0; freshness 1
    # (0.5 × 0.316 + 0 + 0.1 × 1) / 0.8 = 0.258 / 0.8 = 0.3225 → 32.3 (half up; D)
    ms = score_municipality([_ch("twilio", accepted=10)], freshness_value=1.0)
    assert ms.score == 32.3 and grade(ms.score) == "D"
    assert ms.confirmed_kinds == ()


def test_redundancy_counts_kinds_not_channels():
    # two webhook channels both perfect: one kind → redundancy 1/2
    # (0.5 × 1 + 0.2 × 0.5 + 0.1 × 1) / 0.8 = 0.7 / 0.8 = 0.875 → 87.5
    ms = score_municipality(
        [_ch("webhook", delivered=3), _ch("webhook", delivered=3)], freshness_value=1.0
    )
    assert ms.score == 87.5 and ms.parts["redundancy"] == 0.5


def test_fallback_part_is_used_only_when_present():
    chans = [_ch("webhook", delivered=5), _ch("mail", rejected=5)]
    # channels (100 + 0)/2 = 0.5; redundancy 1/2; freshness 1; fallback 1/2
    # (0.25 + 0.1 + 0.1 + 0.05) / 0.9 = 0.5 / 0.9 = 0.5556 → 55.6
    assert score_municipality(chans, freshness_value=1.0, fallback=Ratio(1, 2)).score == 55.6
    # a fallback with nothing checked is "absent", not zero: (0.25 + 0.1 + 0.1) / 0.8 = 56.25 → 56.3
    assert score_municipality(chans, freshness_value=1.0, fallback=Ratio(0, 0)).score == 56.3


# ----------------------------------------------------------------------------- freshness


def test_freshness_bands():
    interval = 30 * DAY_S
    assert freshness(0.0, interval) == 1.0
    assert freshness(30 * DAY_S, interval) == 1.0
    assert freshness(45 * DAY_S, interval) == 0.5  # 1 − 15/30
    assert freshness(60 * DAY_S, interval) == 0.0
    assert freshness(400 * DAY_S, interval) == 0.0


def test_never_drilled_municipality_has_zero_freshness():
    assert freshness(None, 30 * DAY_S) == 0.0


def test_stale_drill_lowers_the_score():
    chans = [_ch("webhook", delivered=5), _ch("mail", delivered=5)]
    # all perfect but freshness 0.5: (0.5 + 0.2 + 0.05) / 0.8 = 0.9375 → 93.75 → 93.8 (half up)
    assert score_municipality(chans, freshness_value=0.5).score == 93.8


# ------------------------------------------------------------------ grades, changes, weights


def test_grade_bands_and_labels():
    assert [grade(x) for x in (100, 90, 89.9, 75, 74.9, 50, 49.9, 0)] == [
        "A",
        "A",
        "B",
        "B",
        "C",
        "C",
        "D",
        "D",
    ]
    assert grade_label("A", "ja") == "良好" and grade_label("D", "en") == "at risk"
    assert grade_label(None, "ja") == "—"


def test_change_status_uses_the_shown_delta():
    assert change_status(69.3, 68.3) == "worsened"  # −1.0 exactly, despite float noise
    assert change_status(68.3, 69.3) == "improved"
    assert change_status(80.0, 79.1) == "unchanged"
    assert change_status(None, 50.0) == "new"
    assert change_status(50.0, None) == "missing"


def test_weights_live_in_one_place():
    heavy_latency = dataclasses.replace(WEIGHTS, reach=0.2, latency=0.8)
    cs = score_channel(deliveries(delivered=6, late=1, lost=3), 0.95, 3.0, heavy_latency)
    # 100 × (0.2 × 0.736842 + 0.8 × 0.6) = 14.7368 + 48 = 62.7368 → 62.7
    assert cs.score == 62.7
    assert isinstance(WEIGHTS, Weights) and WEIGHTS.as_dict()["channels"] == 0.5
    # the receipt credit is a weight too: at 1.0 a receipt counts as fully as a sight
    trusting = dataclasses.replace(WEIGHTS, receipt=1.0)
    assert (
        score_channel(_sms(Outcome.DELIVERED, Evidence.RECEIPT, 10), 0.95, 3.0, trusting).score
        == 100.0
    )
    assert WEIGHTS.as_dict()["receipt"] == 0.8 and WEIGHTS.as_dict()["unconfirmed"] == 0.5


def test_readme_table_of_outcomes_and_evidence_matches_the_model():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Outcomes and evidence / アウトカムと証拠レベル")[1]
    section = section.split("\n### ")[0]
    rows = {
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
        for line in section.splitlines()
        if line.startswith("| `") or line.startswith("| evidence `")
    }
    assert set(rows) == {f"`{o.value}`" for o in Outcome} | {
        f"evidence `{e.value}`" for e in Evidence
    }
    # the counted column says "no" exactly for the outcomes scoring does not count
    for outcome in Outcome:
        counted = rows[f"`{outcome.value}`"][1]
        assert counted.startswith("yes") == outcome.counted, outcome
    # the credits shown are the weights
    assert rows["evidence `seen`"][2] == "**1**"
    assert rows["evidence `receipt`"][2].startswith(f"**{WEIGHTS.receipt}**")
    assert rows["evidence `accepted`"][2].startswith(f"**{WEIGHTS.unconfirmed}**")
    assert WEIGHTS.credit(Evidence.SEEN) == 1.0
