"""Fallback and roll-call events: written as typed events, read back through drills.core.events."""

from __future__ import annotations

from scorecard_samples import Ch, write_run

from drills.core.events import (
    FallbackAttempt,
    FallbackEvent,
    FallbackMunicipality,
    RollCallEvent,
    RollCallParticipant,
)
from drills.core.journal import Journal
from drills.core.scoring import Ratio
from drills.reporting.scenario_events import read_ratios
from drills.reporting.scorecard import build_scorecard


def fallback(step: str, **reached: bool | str) -> FallbackEvent:
    """A fallback step; a value ``"error"`` is a chain the harness failed on."""
    munis = []
    for code, how in reached.items():
        c = code.removeprefix("m")
        if how == "error":
            attempt = FallbackAttempt("chat", "webhook", "error", "harness", 0.0, None)
            munis.append(FallbackMunicipality(c, "", False, None, None, (attempt,)))
        else:
            ok = bool(how)
            lost = FallbackAttempt("chat", "webhook", "lost", "timeout", 0.0, None)
            munis.append(
                FallbackMunicipality(
                    c, "", ok, "chat" if ok else None, 1.0 if ok else None, () if ok else (lost,)
                )
            )
    return FallbackEvent(
        step=step, order=("chat", "mail"), within_s=4.0, escalate_after_s=2.0,
        municipalities=tuple(munis),
    )  # fmt: skip


def roll_call(step: str, *, delivered: bool = True, **answered: int) -> RollCallEvent:
    return RollCallEvent(
        step=step, room="130001/chat", within_s=5.0, delivered=delivered,
        municipalities=tuple(
            RollCallParticipant(c.removeprefix("m"), "", 1, a, 1.5 if a else None)
            for c, a in answered.items()
        ),
    )  # fmt: skip


def test_every_step_counts_summed(tmp_path):
    with Journal(tmp_path / "j.sqlite") as j:
        run = j.begin_run("s")
        for event in (
            fallback("fb", m131211=False, m131016=True),
            fallback("fb#2", m131211=True, m134210="error"),
        ):
            j.record_event(run, event.kind, event.to_data())
        for event in (roll_call("rc", m131211=1, m131016=0), roll_call("rc#2", m131211=0)):
            j.record_event(run, event.kind, event.to_data())
        fb, bad_fb = read_ratios(j.events(run, "fallback"))
        rc, bad_rc = read_ratios(j.events(run, "roll_call"))
    assert bad_fb == bad_rc == 0
    # 134210: the harness failed on its only chain: not counted for or against it
    assert fb == {"131211": Ratio(1.0, 2.0), "131016": Ratio(1.0, 1.0)}
    assert rc == {"131211": Ratio(1.0, 2.0), "131016": Ratio(0.0, 1.0)}


def test_a_roll_call_that_never_reached_its_room_counts_for_nobody():
    rows = [
        {"kind": "roll_call", "data": roll_call("rc", delivered=False, m131211=0).to_data()},
        {"kind": "roll_call", "data": roll_call("rc#2", m131211=1).to_data()},
    ]
    assert read_ratios(rows) == ({"131211": Ratio(1.0, 1.0)}, 0)


def test_unreadable_events_are_counted_not_guessed():
    # ad-hoc shapes the old defensive reader accepted: no code ever wrote them
    rows = [
        {"kind": "fallback", "data": {"municipality": "131211", "ok": True}},
        {"kind": "fallback", "data": {"municipality_code": "131211", "outcome": "lost"}},
        {"kind": "roll_call", "data": {"municipality": "131211", "expected": 3, "responded": 2}},
        {"kind": "roll_call", "data": "free text"},
        {"kind": "roll_call", "data": None},
        {"kind": "roll_call", "data": {**roll_call("rc", m131211=1).to_data(), "v": 99}},
    ]
    ratios, unreadable = read_ratios(rows)
    assert ratios == {} and unreadable == 6


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
                ("fallback", fallback("fb", m131211=False).to_data()),
                ("fallback", fallback("fb#2", m131211=True).to_data()),
                ("roll_call", roll_call("rc", m131211=1).to_data()),
                ("roll_call", roll_call("rc#2", m131211=0).to_data()),
                ("roll_call", {"nonsense": 1}),
            ],
        )
        card = build_scorecard(j, run, registry)
    m = card["municipalities"][0]
    assert m["fallback"] == {"passed": 1.0, "total": 2.0}
    assert m["roll_call"] == {"responded": 1.0, "expected": 2.0}
    assert card["summary"]["unreadable_events"] == 1
    # channels (100 + 0)/2 = 0.5; redundancy 1/2; freshness 1; fallback 0.5; roll call 0.5
    # (0.25 + 0.1 + 0.1 + 0.05 + 0.05) / 1.0 = 0.55 → 55.0
    assert m["score"] == 55.0 and m["grade"] == "C"
