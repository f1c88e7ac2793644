"""Typed step events: round trips, clear errors, one formula per result, old journals."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from drills.core.events import (
    EVENT_TYPES,
    SCHEMA_VERSION,
    AckChannel,
    AcknowledgementEvent,
    AckOverall,
    EventError,
    FallbackAttempt,
    FallbackEvent,
    FallbackMunicipality,
    OutageEvent,
    RequirementEvent,
    RequirementVerdict,
    RollCallEvent,
    RollCallParticipant,
    RunEvents,
    SurgeEvent,
    decode,
    read_events,
    run_events,
)
from drills.core.journal import Journal
from drills.core.scoring import Ratio
from drills.surge.summary import read_surge

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "journal-v0.sqlite"

ATTEMPT = FallbackAttempt("chat", "webhook", "drill_outage", "outage", 0.0, None, 0.003)
FALLBACK = FallbackEvent(
    step="fb", scenario="s", vantage="LGWAN", order=("chat", "mail"), within_s=4.0,
    escalate_after_s=2.0,
    municipalities=(
        FallbackMunicipality("131211", "足立区", True, "mail", 0.15, (
            ATTEMPT, FallbackAttempt("mail", "webhook", "delivered", "", 0.003, 0.147))),
        FallbackMunicipality("131016", "千代田区", False, None, None, (
            FallbackAttempt("chat", "webhook", "lost", "timeout", 0.0, None, 2.0),)),
    ),
)  # fmt: skip
ROLL_CALL = RollCallEvent(
    step="rc", room="130001/chat", within_s=5.0, delivered=True, token="TSG-0", sent_at=1.0,
    municipalities=(
        RollCallParticipant("131211", "足立区", 1, 1, 0.41),
        RollCallParticipant("131016", "千代田区", 1, 0, None),
        RollCallParticipant("134210", "小笠原村", 1, 0, None, able=False, reason="no chat"),
    ),
)  # fmt: skip
ACK = AcknowledgementEvent(
    step="ack", window_s=2.0, staff=2,
    channels=(
        AckChannel("131211", "足立区", "chat", "webhook", "delivered", 2, 1, (0.4,), "TSG-1",
                   0.4, 0.4, None),
        AckChannel("131211", "足立区", "mail", "webhook", "drill_outage", 2, 0),
        AckChannel("131016", "千代田区", "chat", "webhook", "error", 2, 0),
    ),
    overall=AckOverall(6, 1, 0.4, None, None, ((0.4, 0.1667),)),
)  # fmt: skip
OUTAGE = OutageEvent(channels=("131211/chat",), started_at=10.0, ended_at=12.5)
REQUIREMENT = RequirementEvent(
    step="rc", where="scenario.py:12",
    verdicts=(RequirementVerdict("131211", "met", "ok"), RequirementVerdict("131016", "missed")),
)  # fmt: skip
SURGE_DATA = {
    "seq": 1, "municipality_code": "131211", "municipality_name": "足立区",
    "channel_id": "chat", "kind": "webhook", "started_at": 1764230100.0,
    "stop_reason": "completed", "steps_run": 1,
    "steps": [{"index": 1, "rate": 20.0, "at_rest": False, "ran_s": 2.0, "slo_met": False,
               "load": {"requests": 40, "failures": 2, "rps": 20.0},
               "probes": {"sent": 3, "within_slo": 0, "latency_p95_s": 3.1}}],
    "slo": {"latency_s": 1.0, "reachability": 0.99},
    "totals": {"requests": 40, "failures": 2, "failure_ratio": 0.05},
    "breaking_point": {"index": 1, "rate": 20.0, "at_rest": False, "achieved_rps": 19.5,
                       "latency_p95_s": 3.1},
    "held_up_to_rate": None,
}  # fmt: skip
EVENTS = [FALLBACK, ROLL_CALL, ACK, OUTAGE, REQUIREMENT, SurgeEvent.from_data(SURGE_DATA)]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.kind)
def test_round_trip_through_json_and_the_journal(event, tmp_path):
    data = event.to_data()
    assert data["v"] == SCHEMA_VERSION
    assert type(event).from_data(data) == event
    assert decode(event.kind, data) == event
    with Journal(tmp_path / "j.sqlite") as j:
        run = j.begin_run("s")
        j.record_event(run, event.kind, data)
        (back,) = run_events(j, run)
    assert back == event
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.step = "other"  # type: ignore[misc]


def test_surge_keeps_what_record_surge_wrote():
    data = SurgeEvent.from_data(SURGE_DATA).to_data()
    assert data["breaking_point"] == SURGE_DATA["breaking_point"]
    assert {k: data[k] for k in SURGE_DATA} == SURGE_DATA


def test_doctests():
    import doctest

    import drills.core.events

    assert doctest.testmod(drills.core.events).failed == 0


def test_every_kind_has_its_class():
    assert set(EVENT_TYPES) == {
        "fallback", "roll_call", "acknowledgement", "outage", "surge", "requirement",
        "preflight",
    }  # fmt: skip
    assert decode("something_new", {"x": 1}) is None


@pytest.mark.parametrize(
    ("kind", "change", "message"),
    [
        ("fallback", {"order": None}, "fallback event: field 'order' is missing"),
        (
            "fallback",
            {"within_s": "4s"},
            "fallback event: field 'within_s' must be a number, not str",
        ),
        (
            "fallback",
            {"municipalities": [{"code": "131211", "reached": "yes"}]},
            "fallback event: field 'municipalities[0].reached' must be true or false, not str",
        ),
        (
            "roll_call",
            {"municipalities": [{"code": 131211, "expected": 1, "answered": 1}]},
            "roll_call event: field 'municipalities[0].code' must be a string, not int",
        ),
        ("acknowledgement", {"overall": None}, "acknowledgement event: field 'overall' is missing"),
        ("outage", {"channels": "131211/chat"}, "outage event: field 'channels' must be a list"),
        (
            "requirement",
            {"verdicts": [{"code": "131211", "status": "fine"}]},
            "requirement event: field 'verdicts[0].status' must be met, missed or harness",
        ),
        ("surge", {"steps": []}, "surge event: field 'steps' must not be empty"),
        (
            "surge",
            {"steps": [{**SURGE_DATA["steps"][0], "probes": {"sent": 3}}]},  # type: ignore[index]
            "surge event: field 'steps[0].probes.within_slo' is missing",
        ),
        ("roll_call", {"v": SCHEMA_VERSION + 1}, "written by a newer tsunagari"),
        ("roll_call", {"v": "1"}, "roll_call event: field 'v' must be a schema version"),
    ],
)
def test_a_malformed_event_names_its_kind_and_field(kind, change, message):
    event = next(e for e in EVENTS if e.kind == kind)
    data = {**event.to_data(), **change}
    with pytest.raises(EventError, match=message.replace("[", r"\[").replace("]", r"\]")) as info:
        decode(kind, data)
    assert info.value.kind == kind and isinstance(info.value, ValueError)


def test_not_an_object():
    with pytest.raises(EventError, match="fallback event: field 'data' must be an object, not str"):
        FallbackEvent.from_data("reached")


def test_one_formula_every_step_summed():
    again = dataclasses.replace(
        ROLL_CALL,
        step="rc#2",
        municipalities=(RollCallParticipant("131016", "千代田区", 1, 1, 0.9),),
    )
    unheard = dataclasses.replace(ROLL_CALL, step="rc#3", delivered=False)
    errored = dataclasses.replace(
        FALLBACK,
        step="fb#2",
        municipalities=(
            FallbackMunicipality("131016", "千代田区", False, None, None, (
                FallbackAttempt("chat", "webhook", "error", "harness", 0.0, None),)),
            FallbackMunicipality("131211", "足立区", True, "chat", 0.3),
            FallbackMunicipality("134210", "小笠原村", False, None, None, (ATTEMPT,)),
        ),
    )  # fmt: skip
    run = RunEvents("r", (FALLBACK, errored, ROLL_CALL, again, unheard, ACK, OUTAGE))
    # 131016: missed the first chain; the harness failed on the second: not counted.
    # 134210: the drill took away the only channel its chain tried: nothing to judge
    assert run.fallback_ratios() == {"131211": Ratio(2.0, 2.0), "131016": Ratio(0.0, 1.0)}
    # unable to take part counts as not answered; a roll call that never got out counts for nobody
    assert run.roll_call_ratios() == {
        "131211": Ratio(1.0, 1.0),
        "131016": Ratio(1.0, 2.0),
        "134210": Ratio(0.0, 1.0),
    }
    # channels sent into the drill's outage or failed by the harness are left out
    assert run.acknowledgement_ratios() == {"131211": Ratio(1.0, 2.0)}
    assert run.fallback_time_to_first() == {"131211": 0.3, "131016": None}
    assert run.roll_call_answered_s() == {"131211": 0.41, "131016": None, "134210": None}
    assert [m.reached_via for m in run.fallbacks()["131211"]] == ["mail", "chat"]
    assert [e.step for e in run.of(RollCallEvent)] == ["rc", "rc#2", "rc#3"]
    assert ROLL_CALL.never == ("131016",) and ROLL_CALL.unable == ("134210",)
    assert FALLBACK.reached_count == 1
    assert run.names()["134210"] == "小笠原村"


def test_unreadable_events_are_kept_aside_never_counted():
    rows = [
        {
            "kind": "roll_call",
            "data": {"municipality_code": "131211", "expected": 1, "answered": 1},
        },
        {"kind": "roll_call", "data": ROLL_CALL.to_data()},
        {"kind": "checkpoint", "data": {"anything": True}},  # a kind not known here: passed over
    ]
    run = read_events("r", rows)
    assert run.of(RollCallEvent) == [ROLL_CALL] and len(run) == 1
    assert run.unreadable_of(RollCallEvent) == 1 and run.unreadable_of(FallbackEvent) == 0
    assert "roll_call event: field 'step' is missing" in str(run.unreadable[0])


def test_journal_written_by_the_old_code_still_loads(tmp_path):
    path = tmp_path / "journal-v0.sqlite"
    shutil.copy(FIXTURE, path)
    with Journal(path) as j:
        (row,) = j.runs()
        assert all("v" not in e["data"] for e in j.events(row["run_id"]))
        run = run_events(j, row["run_id"])
    assert run.unreadable == ()
    kinds = [e.kind for e in run]
    assert kinds == [
        "requirement", "fallback", "outage", "requirement", "roll_call", "requirement",
        "acknowledgement", "requirement", "surge",
    ]  # fmt: skip
    assert run.fallback_ratios() == {"131211": Ratio(1.0, 1.0), "131016": Ratio(1.0, 1.0)}
    assert run.roll_call_ratios() == {
        "131211": Ratio(1.0, 1.0),
        "131016": Ratio(1.0, 1.0),
        "134210": Ratio(0.0, 1.0),
    }
    assert run.acknowledgement_ratios() == {"131211": Ratio(4.0, 4.0)}
    (fb,) = run.of(FallbackEvent)
    adachi = next(m for m in fb.municipalities if m.code == "131211")
    assert adachi.reached_via == "mail" and adachi.time_to_first_s == 0.1549
    assert [a.outcome for a in adachi.attempts] == ["drill_outage", "delivered"]
    assert fb.scenario == "journal-v0" and fb.vantage == "default" and fb.within_s == 4.0
    (rc,) = run.of(RollCallEvent)
    assert rc.never == ("134210",) and rc.all_answered_s is None and rc.delivered
    assert run.roll_call_answered_s() == {"131211": 0.4138, "131016": 0.4138, "134210": None}
    (ack,) = run.of(AcknowledgementEvent)
    assert ack.staff == 4 and ack.overall.answered == 4 and ack.overall.curve[-1] == (0.4117, 1.0)
    (outage,) = run.of(OutageEvent)
    assert outage.channels == ("131211/chat",) and outage.ended_at > outage.started_at
    statuses = [[v.status for v in r.verdicts] for r in run.of(RequirementEvent)]
    assert statuses == [["met"], ["met", "met"], ["met", "met", "missed"], ["met"]]
    (surge,) = run.of(SurgeEvent)
    assert surge.key == ("131211", "chat") and surge.breaking_point is not None
    assert surge.breaking_point.rate == 20.0 and surge.held_up_to_rate == 10.0
    summary = read_surge(surge.to_data())
    assert summary is not None and summary.held is False and summary.peak_rate == 20.0


def test_steps_write_through_the_typed_events(tmp_path):
    """A scenario run today writes version-1 events that read back to the same values."""
    from drills.operator.scenario import open_drill

    registry = tmp_path / "registry.yaml"
    registry.write_text(
        "defaults: {slo: {latency: 2s}}\nmunicipalities:\n"
        '  - {code: "131211", name: 足立区, channels: [{id: chat, kind: webhook, '
        "sim: {latency: 20ms}}, {id: mail, kind: webhook, sim: {latency: 30ms}}]}\n"
        '  - {code: "130001", name: 東京都, channels: [{id: chat, kind: webhook, '
        "sim: {latency: 20ms}}]}\n",
        encoding="utf-8",
    )
    path = tmp_path / "j.sqlite"
    with open_drill(str(registry), str(path), scenario="typed", vantage="LGWAN", seed=3) as drill:
        with drill.outage("chat", to="足立区"):
            fb = drill.fallback("代替", order=["chat", "mail"], to="足立区", within="2s")
        fb.expect()
        drill.roll_call("点呼", room="東京都/chat", within="2s", simulated={"delay": "50ms"})
        drill.acknowledge("安否", channels="chat", to="足立区", staff=2, window="1s",
                          simulated={"delay": "50ms"})  # fmt: skip
    with Journal(path) as j:
        (row,) = j.runs()
        rows = j.events(row["run_id"])
        run = run_events(j, row["run_id"])
    assert run.unreadable == () and all(r["data"]["v"] == SCHEMA_VERSION for r in rows)
    assert {r["data"]["vantage"] for r in rows} == {"LGWAN"}
    assert [e.kind for e in run] == [
        "fallback", "outage", "requirement", "roll_call", "acknowledgement",
    ]  # fmt: skip
    assert run.fallback_ratios() == {"131211": Ratio(1.0, 1.0)}
    assert run.fallbacks()["131211"][0].reached_via == "mail"
    assert run.roll_call_ratios() == {"131211": Ratio(1.0, 1.0)}
    assert run.acknowledgement_ratios() == {"131211": Ratio(2.0, 2.0)}
    for event, r in zip(run, rows, strict=True):
        assert event.to_data() == r["data"]
