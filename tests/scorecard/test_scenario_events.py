"""Fallback and roll-call events: recorded in a real journal, read defensively."""

from __future__ import annotations

from scorecard_samples import Ch, write_run

from drills.journal import Journal
from drills.scenario_events import read_ratios
from drills.scorecard import build_scorecard
from drills.scoring import Ratio


def test_shapes_understood(tmp_path):
    with Journal(tmp_path / "j.sqlite") as j:
        run = j.begin_run("s")
        for data in (
            {"municipality": "131211", "ok": True},
            {"municipality_code": "131211", "outcome": "lost"},
            {
                "municipality": {"code": "131016", "name": "千代田区"},
                "expected": 20,
                "responded": 18,
            },
            {"target": "134210/chat", "asked": ["a", "b", "c"], "answered": ["a"]},
            {
                "results": [
                    {"municipality": "132012", "passed": True},
                    {"municipality": "132012", "passed": False},
                ]
            },
            {"results": {"133086": True, "130001": {"expected": 4, "replied": 4}}},
            {"municipality": 131211, "delivered": True},  # a number instead of a quoted code
        ):
            j.record_event(run, "roll_call", data)
        ratios, unreadable = read_ratios(j.events(run, "roll_call"))
    assert unreadable == 0
    assert ratios == {
        "131211": Ratio(2.0, 3.0),
        "131016": Ratio(18.0, 20.0),
        "134210": Ratio(1.0, 3.0),
        "132012": Ratio(1.0, 2.0),
        "133086": Ratio(1.0, 1.0),
        "130001": Ratio(4.0, 4.0),
    }


def test_unreadable_events_are_counted_not_guessed():
    events = [
        {"data": {"ok": True}},  # no municipality
        {"data": {"municipality": "131211", "outcome": "maybe"}},  # unknown word
        {"data": "free text"},
        {"data": None},
        {"data": {"municipality": "131211", "expected": 3}},  # counts without answers
    ]
    ratios, unreadable = read_ratios(events)
    assert ratios == {} and unreadable == 5


def test_harness_error_outcome_is_skipped_not_counted_against():
    ratios, unreadable = read_ratios(
        [
            {"data": {"municipality": "131211", "outcome": "error"}},
            {"data": {"municipality": "131211", "ok": True}},
        ]
    )
    assert ratios == {"131211": Ratio(1.0, 1.0)} and unreadable == 0


def test_events_reach_the_scorecard(tmp_path, registry):
    with Journal(tmp_path / "j.sqlite") as j:
        run = write_run(
            j,
            "r1",
            1_800_000_000.0,
            [
                Ch("131211", "足立区", "chat", "webhook", delivered=[0.2] * 4),
                Ch("131211", "足立区", "mail", "mail", rejected=4),
            ],
            events=[
                (
                    "fallback",
                    {"municipality": "131211", "primary": "chat", "fallback": "mail", "ok": False},
                ),
                (
                    "fallback",
                    {"municipality": "131211", "primary": "mail", "fallback": "chat", "ok": True},
                ),
                ("roll_call", {"municipality": "131211", "expected": 10, "responded": 5}),
                ("roll_call", {"nonsense": 1}),
            ],
        )
        card = build_scorecard(j, run, registry)
    m = card["municipalities"][0]
    assert m["fallback"] == {"passed": 1.0, "total": 2.0}
    assert m["roll_call"] == {"responded": 5.0, "expected": 10.0}
    assert card["summary"]["unreadable_events"] == 1
    # channels (100 + 0)/2 = 0.5; redundancy 1/2; freshness 1; fallback 0.5; roll call 0.5
    # (0.25 + 0.1 + 0.1 + 0.05 + 0.05) / 1.0 = 0.55 → 55.0
    assert m["score"] == 55.0 and m["grade"] == "C"
