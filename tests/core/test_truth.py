"""drills.core.truth: every rule of the ground-truth comparison, on hand-built ledgers."""

from __future__ import annotations

from typing import Any

from drills.core.delivery import Delivery, Evidence, Outcome
from drills.core.truth import Disagreement, compare, summary_line
from probes.sim.ledger import Ledger, Outage

KEY = "131211/chat"
TOK = "TSG-0000000000AB"


def rec(outcome: Outcome, **kw: Any) -> Delivery:
    extra = {"sent_mono": 100.0, "watched_until_mono": 105.0, **kw.pop("extra", {})}
    return Delivery(
        "run", "step", "131211", "足立区", "chat", "webhook", kw.pop("token", TOK), outcome,
        extra=extra, **kw,
    )  # fmt: skip


def visible_at(at: float | None, received: float = 100.01) -> Ledger:
    ledger = Ledger("webhook")
    e = ledger.received(KEY, TOK, at=received)
    if at is not None:
        ledger.visible(e, at=at)
    return ledger


def rules(found: list[Disagreement]) -> list[str]:
    return [d.rule for d in found]


def test_delivered_within_bound_agrees():
    d = rec(Outcome.DELIVERED, latency_s=0.305, error_bound_s=0.004)
    assert compare([d], [visible_at(100.3)]) == []


def test_delivered_earlier_than_visible_disagrees():
    d = rec(Outcome.DELIVERED, latency_s=0.297, error_bound_s=0.004)
    assert rules(compare([d], [visible_at(100.3)])) == ["earlier-than-visible"]


def test_delivered_later_than_its_bound_disagrees():
    d = rec(Outcome.DELIVERED, latency_s=0.33, error_bound_s=0.005)
    assert rules(compare([d], [visible_at(100.3)])) == ["later-than-bound"]


def test_reached_but_never_visible_disagrees():
    d = rec(Outcome.LATE, latency_s=2.0, error_bound_s=0.0)
    assert rules(compare([d], [visible_at(None)])) == ["reached-not-visible"]
    assert rules(compare([d], [Ledger("webhook")])) == ["reached-not-visible"]


def test_lost_but_visible_while_watched_disagrees():
    d = rec(Outcome.LOST)
    assert rules(compare([d], [visible_at(103.0)])) == ["visible-not-reached"]
    # visible only after the harness stopped watching: lost is the truth
    assert compare([d], [visible_at(105.5)]) == []


def test_lost_grace_is_the_channels_own_reported_bound():
    seen = rec(Outcome.DELIVERED, token="TSG-0000000000AC", latency_s=0.3, error_bound_s=0.5)
    ledger = visible_at(104.6)
    e = ledger.received(KEY, "TSG-0000000000AC", at=100.0)
    ledger.visible(e, at=100.3)
    # visible 0.4 s before the end, observer bound 0.5 s: it may honestly be lost
    assert compare([rec(Outcome.LOST), seen], [ledger]) == []
    assert rules(compare([rec(Outcome.LOST)], [ledger])) == ["visible-not-reached"]


def test_receipt_for_never_visible_disagrees():
    d = rec(Outcome.ACCEPTED, evidence=Evidence.RECEIPT)
    assert rules(compare([d], [visible_at(None)])) == ["receipt-not-visible"]
    assert compare([rec(Outcome.ACCEPTED)], [visible_at(None)]) == []


def test_refused_must_be_rejected():
    ledger = Ledger("webhook")
    for _ in range(3):
        ledger.refused(KEY, TOK, code="429", final=False)
    assert rules(compare([rec(Outcome.LOST)], [ledger])) == ["refused-not-rejected"]
    assert compare([rec(Outcome.REJECTED, throttled=3)], [ledger]) == []
    assert rules(compare([rec(Outcome.REJECTED)], [visible_at(100.2)])) == ["rejected-but-visible"]


def test_a_rejected_record_counts_every_refusal():
    ledger = Ledger("webhook")
    for _ in range(3):
        ledger.refused(KEY, TOK, code="429", final=False)
    assert rules(compare([rec(Outcome.REJECTED, throttled=2)], [ledger])) == ["throttle-count"]
    assert rules(compare([rec(Outcome.REJECTED, throttled=4)], [ledger])) == ["throttle-count"]


def test_lost_with_its_last_retry_unanswered():
    """Cut while a retry was on its way: the far end may have taken it (visible after the
    harness stopped watching) or refused it once more — the record said neither."""
    unread = {"reason_code": "rate_limited"}
    refused = Ledger("webhook")
    for _ in range(3):
        refused.refused(KEY, TOK, code="429", final=False)
    assert compare([rec(Outcome.LOST, throttled=2, extra=unread)], [refused]) == []
    assert compare([rec(Outcome.LOST, throttled=3, extra=unread)], [refused]) == []
    assert rules(compare([rec(Outcome.LOST, throttled=1, extra=unread)], [refused])) == [
        "throttle-count"
    ]
    taken = visible_at(105.08, received=104.99)
    taken.refused(KEY, TOK, code="429", final=False)
    taken.refused(KEY, TOK, code="429", final=False)
    assert compare([rec(Outcome.LOST, throttled=2, extra=unread)], [taken]) == []
    # taken and visible while the harness was still watching: lost is not the truth
    early = visible_at(103.0, received=102.9)
    assert rules(compare([rec(Outcome.LOST, throttled=0, extra=unread)], [early])) == [
        "visible-not-reached"
    ]


def test_drill_outage_rules():
    made = [Outage(KEY, 99.0, 101.0)]
    nothing = Ledger("webhook")
    assert compare([rec(Outcome.DRILL_OUTAGE)], [nothing], outages=made) == []
    assert rules(compare([rec(Outcome.LOST)], [nothing], outages=made)) == ["drill-outage-as-lost"]
    assert rules(compare([rec(Outcome.DRILL_OUTAGE)], [nothing])) == ["drill-outage-without-outage"]
    other = [Outage("131211/mail", 99.0, 101.0)]
    assert rules(compare([rec(Outcome.DRILL_OUTAGE)], [nothing], outages=other)) == [
        "drill-outage-without-outage"
    ]


def test_errors_are_never_judged():
    assert compare([rec(Outcome.ERROR)], [visible_at(100.3)]) == []


def test_wall_times_are_converted_without_sent_mono():
    d = Delivery(
        "run", "s", "131211", "足立区", "chat", "webhook", TOK, Outcome.DELIVERED,
        sent_at=1_000_100.0, latency_s=0.301, error_bound_s=0.0,
    )  # fmt: skip
    assert compare([d], [visible_at(100.3)], wall_minus_mono=1_000_000.0) == []
    assert rules(compare([d], [visible_at(100.35)], wall_minus_mono=1_000_000.0)) == [
        "earlier-than-visible"
    ]


def test_summary_line_counts_records():
    d = rec(Outcome.LOST)
    found = compare([d], [visible_at(101.0)])
    assert summary_line(found, 10, "en") == "ground truth: 9 records agree / 1 disagree"
    assert "9 件一致 / 1 件不一致" in summary_line(found, 10, "ja")
