"""Drill steps through the operator API, against simulators (and one loopback far end)."""

from __future__ import annotations

import itertools

import pytest

from drills.core.journal import Journal
from drills.core.requirements import RequirementMissed, ScenarioMistake
from drills.operator.scenario import open_drill
from drills.reporting.vantage import vantage_view
from drills.steps.selection import resolve_room


def events(path, kind):
    with Journal(path) as j:
        return [e["data"] for run in j.runs() for e in j.events(run["run_id"], kind)]


def test_fallback_escalates_past_a_refused_and_a_taken_away_channel(small_registry, tmp_path):
    jpath = tmp_path / "j.sqlite"
    with open_drill(str(small_registry), str(jpath), scenario="fb", seed=1) as drill:
        with drill.outage("chat", to="足立区"):
            step = drill.fallback(
                "代替連絡", order=["chat", "mail"], within="4s", escalate_after="2s"
            )
        step.expect(within="4s")
        chains = {c.municipality.code: c for c in step.chains}
        assert chains["131211"].reached_via == "mail"  # chat taken away: fails fast, then mail
        assert chains["131211"].attempts[0].outcome == "drill_outage"  # the drill's, not lost
        assert chains["131016"].reached_via == "chat"
        assert chains["134210"].reached_via == "mail"  # chat refused (401)
        assert chains["134210"].attempts[0].outcome == "rejected"
        assert chains["130001"].reached_via == "chat"
        # escalation after a refusal is immediate: time to first ≈ mail's own latency
        assert chains["134210"].time_to_first_s < 1.5
        assert step.reached_via() == {"mail": 2, "chat": 2}
        # the outage ended with the block: chat works again
        drill.broadcast("復旧確認", channels="chat", to="足立区").expect(reached="100%")
    (event,) = events(jpath, "fallback")
    assert event["order"] == ["chat", "mail"] and event["within_s"] == 4.0
    row = next(m for m in event["municipalities"] if m["code"] == "131211")
    assert row["reached_via"] == "mail" and [a["channel"] for a in row["attempts"]] == [
        "chat",
        "mail",
    ]
    assert {"started_s", "latency_s", "outcome", "reason", "kind"} <= set(row["attempts"][0])
    (outage,) = events(jpath, "outage")
    assert outage["channels"] == ["131211/chat"] and outage["ended_at"] >= outage["started_at"]


def test_fallback_miss_names_every_attempt(small_registry):
    with open_drill(str(small_registry), scenario="fb", lang="en") as drill:
        step = drill.fallback("x", order=["mail"], to="千代田区", within="1s")
        with pytest.raises(RequirementMissed) as info:
            step.expect()
    text = str(info.value)
    assert (
        "Chiyoda City (131016): requirement missed — no channel reached it within 1 s (mail)"
        in text
    )
    assert "mail [webhook] lost" in text


def test_outage_of_a_live_channel_skips_it(far_end, tmp_path):
    reg = tmp_path / "live.yaml"
    reg.write_text(
        'municipalities:\n  - code: "131211"\n    name: 足立区\n    channels:\n'
        f"      - {far_end.channel('chat', 'chat')}\n      - {far_end.channel('mail', 'mail')}\n",
        encoding="utf-8",
    )
    with (
        pytest.raises(ScenarioMistake, match="live channels"),
        open_drill(str(reg), lang="en") as drill,
    ):
        drill.broadcast("x")
    with open_drill(str(reg), live=True) as drill:
        with drill.outage("chat"):
            step = drill.fallback("代替連絡", order=["chat", "mail"], within="3s")
        step.expect()
    (chain,) = step.chains
    assert [(a.channel, a.outcome) for a in chain.attempts] == [
        ("chat", "skipped"),
        ("mail", "delivered"),
    ]
    assert "chat" not in far_end.posts  # nothing was sent to the channel taken away
    assert len(far_end.posts["mail"]) == 1 and far_end.posts["mail"][0].startswith("【訓練】")


def test_roll_call_answers_travel_through_the_shared_room(small_registry, tmp_path):
    jpath = tmp_path / "j.sqlite"
    with open_drill(str(small_registry), str(jpath), scenario="rc", seed=2) as drill:
        call = drill.roll_call(
            "点呼です",
            room="東京都/chat",
            within="3s",
            simulated={"delay": {"dist": "uniform", "low": "100ms", "high": "400ms"}},
        )
        assert set(call.answered) == {"131211", "131016"}
        assert [m.code for m in call.never] == ["134210"]  # its own chat refuses: it cannot answer
        assert call.all_answered_s is None
        for t in call.answered.values():
            assert 0.1 < t < 3.0
        with pytest.raises(RequirementMissed, match="小笠原村"):
            call.expect()
        # during an outage of 足立区's chat, 足立区 cannot answer either
        with drill.outage("chat", to="足立区"):
            call = drill.roll_call(
                "点呼です", room="東京都/chat", to="23ku", within="2s", simulated={"delay": "200ms"}
            )
        assert set(call.answered) == {"131016"} and [m.code for m in call.never] == ["131211"]
        # the answers were posted into the shared room and read back by its observer
        room = resolve_room(drill.ctx.registry, "東京都/chat")
        probe = drill.ctx.loop.run(drill.ctx.drill.probe(room))
        assert {r.responder for r in probe.replies.replies(call.delivery.token)} == {"131016"}
    first, second = events(jpath, "roll_call")
    assert first["room"] == "130001/chat" and first["delivered"] is True
    assert first["never"] == ["134210"] and first["all_answered_s"] is None
    assert {(m["code"], m["answered"]) for m in first["municipalities"]} == {
        ("131211", 1),
        ("131016", 1),
        ("134210", 0),
    }
    assert second["never"] == ["131211"]


def test_roll_call_everyone_answers(small_registry):
    with open_drill(str(small_registry), seed=3) as drill:
        call = drill.roll_call(
            "点呼です", room="130001/chat", to="23ku", within="5s", simulated={"delay": "200ms"}
        )
        call.expect(within="5s")
        assert call.all_answered_s == max(call.answered.values())
        assert call.all_answered_s < 2.0  # ended as soon as everyone had answered


def test_roll_call_mistakes(small_registry):
    with open_drill(str(small_registry), lang="en") as drill:
        with pytest.raises(ScenarioMistake, match="did you mean 'chat'"):
            drill.roll_call("x", room="東京都/chta", within="1s")
        with pytest.raises(ScenarioMistake, match="nobody to answer"):
            drill.roll_call("x", room="東京都/chat", to="東京都", within="1s")
        with pytest.raises(ScenarioMistake) as info:
            drill.roll_call("x", room="東京都/chat")
        assert "give within=" in str(info.value) and info.value.where.endswith(
            ".py:" + str(info.tb.tb_lineno)
        )


def test_acknowledgement_curve_and_quartiles(small_registry, tmp_path):
    jpath = tmp_path / "j.sqlite"
    with open_drill(str(small_registry), str(jpath), scenario="ack", seed=4) as drill:
        ack = drill.acknowledge(
            "安否確認",
            channels="chat",
            to="23ku",
            staff=8,
            window="4s",
            simulated={"delay": {"dist": "uniform", "low": "200ms", "high": "800ms"}},
        )
        ack.expect(answered="100%", within="4s")
        assert ack.expected == 16 and ack.answered_share() == 1.0
        curve = ack.curve()
        assert len(curve) == 16 and curve[-1][1] == 1.0
        assert all(a[0] <= b[0] and a[1] < b[1] for a, b in itertools.pairwise(curve))
        assert 0.2 < ack.t25 <= ack.t50 <= ack.t75 < 1.5  # delay + the room's latency
        half = drill.acknowledge(
            "安否確認",
            channels="chat",
            to="足立区",
            staff=20,
            window="2s",
            simulated={"delay": "300ms", "rate": 0.5},
        )
        with pytest.raises(RequirementMissed, match="足立区"):
            half.expect(answered="90%")
        assert 0 < half.answered_share() < 0.9 and half.t75 is None
    first, second = events(jpath, "acknowledgement")
    assert (
        first["staff"] == 8
        and first["overall"]["expected"] == 16
        and first["overall"]["answered"] == 16
    )
    assert first["overall"]["t50_s"] == pytest.approx(ack.t50)
    row = first["channels"][0]
    assert {
        "code",
        "channel",
        "kind",
        "token",
        "outcome",
        "expected",
        "answered",
        "times_s",
        "t25_s",
        "t50_s",
        "t75_s",
    } <= set(row)
    assert second["overall"]["answered"] < 20


def test_acknowledgement_on_a_refused_channel(small_registry):
    with open_drill(str(small_registry), lang="en") as drill:
        ack = drill.acknowledge("x", channels="chat", to="islands", staff=3, window="1s")
        with pytest.raises(RequirementMissed) as info:
            ack.expect(answered="50%")
    assert "answered within 1 s: 0/3" in str(info.value) and "chat [webhook] rejected" in str(
        info.value
    )


def test_acknowledgement_needs_a_kind_that_reads_replies(small_registry, far_end, tmp_path):
    reg = tmp_path / "blind.yaml"
    reg.write_text(
        'municipalities:\n  - code: "131211"\n    name: 足立区\n    channels:\n'
        f'      - {{id: hook, kind: webhook, url: "http://127.0.0.1:{far_end.port}/hook/x"}}\n',
        encoding="utf-8",
    )
    with open_drill(str(reg), live=True, lang="en") as drill:
        step = drill.broadcast("x")
        assert step.deliveries[0].outcome.value == "accepted"  # no observer: accepted only
        with pytest.raises(ScenarioMistake, match="staff= must be an integer"):
            drill.acknowledge("x", staff=0, window="1s")


def test_vantage_label_on_every_record_and_combined_view(small_registry, tmp_path):
    a, b = tmp_path / "lan.sqlite", tmp_path / "mobile.sqlite"
    for path, vantage in ((a, "庁内LAN"), (b, "モバイル")):
        with open_drill(
            str(small_registry), str(path), scenario="場所比較", vantage=vantage, seed=5
        ) as drill:
            drill.broadcast("x", channels="chat", to="23ku")
            drill.roll_call(
                "点呼", room="東京都/chat", to="23ku", within="3s", simulated={"delay": "100ms"}
            )
    with Journal(a) as ja, Journal(b) as jb:
        for j, vantage in ((ja, "庁内LAN"), (jb, "モバイル")):
            (run,) = j.runs()
            assert run["vantage"] == vantage
            assert {d.vantage for d in j.deliveries(run["run_id"])} == {vantage}
            assert {e["data"]["vantage"] for e in j.events(run["run_id"])} == {vantage}
        view = vantage_view([ja, jb])
    (scenario,) = view["scenarios"]
    assert scenario["scenario"] == "場所比較" and scenario["vantages"] == ["モバイル", "庁内LAN"]
    adachi = next(m for m in scenario["municipalities"] if m["code"] == "131211")
    chat = next(c for c in adachi["channels"] if c["id"] == "chat")
    assert set(chat["by_vantage"]) == {"庁内LAN", "モバイル"}
    assert chat["by_vantage"]["庁内LAN"]["reached"] >= 1
    assert scenario["steps"]["モバイル"]["roll_call"][0]["never"] == []
