"""Steps record what really happened: fallback arrivals after escalation, roll-call
participants without the room's channel, answer times on the monotonic clock.

Times are judged against the simulators' ground-truth ledgers (drills.core.truth).
"""

from __future__ import annotations

import pytest

from drills.core.delivery import Outcome
from drills.core.journal import Journal
from drills.core.registry import parse_registry
from drills.core.runner import Drill
from drills.core.truth import compare
from drills.steps.fallback import run_fallback

# The case, shortened: mail (3 s → 0.6 s) escalated after 2.67 s (→ 0.3 s).
FALLBACK = """\
defaults: {slo: {latency: 5s}}
municipalities:
  - {code: "131211", name: 足立区, channels: [
      {id: mail, kind: webhook, sim: {latency: 600ms}},
      {id: sms, kind: webhook, sim: {latency: 900ms}}]}
  - {code: "131016", name: 千代田区, channels: [
      {id: mail, kind: webhook, sim: {latency: 700ms}},
      {id: sms, kind: webhook, sim: {latency: 50ms}}]}
"""


@pytest.fixture
def journal(tmp_path):
    j = Journal(tmp_path / "journal.sqlite")
    yield j
    j.close()


def ledgers(drill: Drill):
    return [sim.ledger for sim in drill.sims.running.values()]


async def test_fallback_arrival_after_escalation_is_recorded_arrived_not_lost(journal):
    reg = parse_registry(FALLBACK, "reg.yaml")
    plan = [(m, reg.targets(select=[m.code])) for m in reg.municipalities]
    async with Drill(reg, journal, seed=4) as drill:
        result = await run_fallback(
            drill, "代替連絡", plan, order=["mail", "sms"], within=1.6, escalate_after=0.3,
            step="fb",
        )  # fmt: skip
    chains = {c.municipality.code: c for c in result.chains}
    records = {(d.municipality_code, d.channel_id): d for d in journal.deliveries(drill.run_id)}
    # 足立区: mail was escalated at 0.3 s and arrived at ~0.6 s: first, and journalled late
    adachi = chains["131211"]
    mail, sms = adachi.attempts
    assert sms.channel == "sms" and sms.started_s >= 0.3
    assert mail.escalated_s is not None and mail.escalated_s < 0.6
    assert mail.outcome == "late" and mail.latency_s is not None and mail.latency_s >= 0.6
    assert adachi.reached_via == "mail" and adachi.time_to_first_s == pytest.approx(
        mail.started_s + mail.latency_s, abs=1e-3
    )
    assert records[("131211", "mail")].outcome is Outcome.LATE
    assert records[("131211", "sms")].outcome.reached  # watched to the end: arrived too
    # 千代田区: sms (tried at 0.3 s, 50 ms) came first; mail still arrived and says so
    chiyoda = chains["131016"]
    assert chiyoda.reached_via == "sms"
    assert records[("131016", "mail")].outcome is Outcome.LATE
    assert records[("131016", "mail")].latency_s >= 0.7
    event = result.event()
    row = next(m for m in event.municipalities if m.code == "131211")
    assert row.reached_via == "mail" and row.attempts[0].outcome == "late"
    assert row.attempts[0].escalated_s == mail.escalated_s
    data = event.to_data()
    assert data["municipalities"][0]["attempts"][0]["escalated_s"] == mail.escalated_s
    assert type(event).from_data(data) == event
    # and every record agrees with what the far end's ledger says happened
    assert compare(journal.deliveries(drill.run_id), ledgers(drill)) == []


async def test_fallback_into_the_drills_own_outage_is_not_lost(journal):
    reg = parse_registry(FALLBACK, "reg.yaml")
    plan = [(m, reg.targets(select=[m.code])) for m in reg.municipalities[:1]]
    async with Drill(reg, journal, seed=4) as drill:
        (mail,) = reg.targets(select=["131211"], channels=["mail"])
        await drill.take_down(mail)
        result = await run_fallback(
            drill, "x", plan, order=["mail", "sms"], within=1.5, escalate_after=0.5, step="fb"
        )
        await drill.restore(mail)
    (chain,) = result.chains
    assert [a.outcome for a in chain.attempts] == ["drill_outage", "delivered"]
    assert chain.attempts[0].escalated_s is not None and chain.attempts[0].escalated_s < 0.3
    assert chain.reached_via == "sms"
    assert compare(journal.deliveries(drill.run_id), ledgers(drill), outages=drill.outages()) == []


# ---------------------------------------------------------------- roll call, answers, seeds

ROOM = """\
defaults: {slo: {latency: 2s}}
municipalities:
  - {code: "130001", name: 東京都, channels: [{id: chat, kind: webhook, sim: {latency: 20ms}}]}
  - {code: "131211", name: 足立区, channels: [{id: chat, kind: webhook, sim: {latency: 20ms}}]}
  - {code: "131016", name: 千代田区, name_en: Chiyoda City, channels: [
      {id: mail, kind: webhook, sim: {latency: 20ms}}]}
"""


def test_roll_call_participant_without_the_rooms_channel_cannot_answer(tmp_path):
    from drills.core.requirements import RequirementMissed
    from drills.operator.scenario import open_drill

    reg = tmp_path / "reg.yaml"
    reg.write_text(ROOM, encoding="utf-8")
    jpath = tmp_path / "j.sqlite"
    with open_drill(str(reg), str(jpath), scenario="rc", seed=3, lang="en") as drill:
        call = drill.roll_call(
            "点呼です", room="東京都/chat", within="1s", simulated={"delay": "100ms"}
        )
        assert set(call.answered) == {"131211"}  # never a simulated answer from 千代田区
        assert call.unable.keys() == {"131016"} and call.never == []
        assert call.all_answered_s is None
        with pytest.raises(RequirementMissed) as info:
            call.expect()
    text = str(info.value)
    assert "Chiyoda City (131016)" in text and "cannot take part" in text
    assert "no channel 'chat' is registered" in text
    with Journal(jpath) as j:
        (run,) = j.runs()
        (event,) = [e["data"] for e in j.events(run["run_id"], "roll_call")]
    row = next(m for m in event["municipalities"] if m["code"] == "131016")
    assert row["able"] is False and row["answered"] == 0 and row["answered_s"] is None
    assert "チャネル chat" in row["reason"]
    assert event["unable"] == ["131016"] and event["never"] == []


def test_answer_times_are_monotonic_not_wall_clock():
    from drills.steps.acknowledgement import answer_times as ack_times
    from drills.steps.rollcall import answer_times as roll_times
    from probes.replies import Reply

    # the wall clock was stepped by NTP between send and answer: it must not matter
    replies = [
        Reply("TSG-7K3Q9XW2M4PD", "131211", at=101.5, wall=5_000.0),
        Reply("TSG-7K3Q9XW2M4PD", "131211", at=102.0, wall=1.0),
        Reply("TSG-7K3Q9XW2M4PD", "131016", at=100.25, wall=-3.0),
    ]
    assert roll_times(replies, 100.0, 3.0, {"131211", "131016"}) == {
        "131016": 0.25,
        "131211": 1.5,
    }
    assert ack_times(replies, 100.0, 1.8) == [0.25, 1.5]


def test_seeded_streams_are_independent():
    import random

    from drills.steps.answers import AnswerDesk

    a, b = Drill.__new__(Drill), Drill.__new__(Drill)
    a.seed = b.seed = 7
    assert a.stream("answers:x").random() == b.stream("answers:x").random()  # reproducible
    draws = {name: a.stream(name).random() for name in ("context", "answers:a", "answers:b")}
    assert len(set(draws.values())) == 3
    assert random.Random(7).random() not in draws.values()  # never the bare seed
    desk = AnswerDesk(a.stream("answers:a"), "【訓練】")
    assert desk.rng.random() == draws["answers:a"]


def test_scenario_rng_is_derived_from_the_seed(tmp_path):
    import random

    from drills.operator.scenario import open_drill

    reg = tmp_path / "reg.yaml"
    reg.write_text(ROOM, encoding="utf-8")
    with open_drill(str(reg), seed=11) as drill:
        assert drill.ctx.rng.random() != random.Random(11).random()


# ---------------------------------------------------------------- runs, summaries, outages


def test_run_refused_for_missing_live_leaves_no_run_in_the_journal(tmp_path):
    from drills.core.requirements import ScenarioMistake
    from drills.operator.scenario import open_drill

    reg = tmp_path / "reg.yaml"
    reg.write_text(
        'municipalities:\n  - code: "131211"\n    name: 足立区\n    channels:\n'
        "      - {id: chat, kind: webhook, url: 'http://127.0.0.1:9/hook'}\n",
        encoding="utf-8",
    )
    jpath = tmp_path / "j.sqlite"
    with pytest.raises(ScenarioMistake, match="--live"), open_drill(str(reg), str(jpath)) as d:
        d.broadcast("x")
    with Journal(jpath) as j:
        assert j.runs() == [] and j.latest_run() is None


def test_failure_summary_does_not_count_unjudged_as_missed():
    from drills.core.requirements import Status, Verdict, render_summary

    verdicts = [
        Verdict("131211", "足立区", "Adachi", Status.MISSED, "未達", "missed"),
        Verdict("131016", "千代田区", "Chiyoda", Status.HARNESS, "観測不能", "observer fault"),
        Verdict("134210", "小笠原村", "Ogasawara", Status.MET, "達成", "met"),
    ]
    text = render_summary(verdicts, "en")
    assert text.splitlines()[0] == (
        "municipalities not meeting the requirement: 1 (could not be judged: 1)"
    )
    assert "Chiyoda (131016): observer fault" in text
    assert (
        render_summary(verdicts, "ja").splitlines()[0] == "要件を満たさない団体: 1（判定不能: 1）"
    )


def test_broadcast_into_the_drills_own_outage_is_shown_never_scored(small_registry, tmp_path):
    from drills.operator.scenario import open_drill

    with open_drill(str(small_registry), str(tmp_path / "j.sqlite"), seed=1) as drill:
        with drill.outage("chat", to="足立区"):
            step = drill.broadcast("x", channels="chat", to="23ku", timeout="1s")
        outcomes = {d.municipality_code: d.outcome for d in step.deliveries}
        assert outcomes == {"131211": Outcome.DRILL_OUTAGE, "131016": Outcome.DELIVERED}
        assert step.reachability() == 1.0 and step.missed() == []
        step.expect(reached="100%")  # the drill's own outage is not the channel's miss
