"""build_scorecard: the JSON contract, what got worse, freshness, the trend — from real journals."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from pathlib import Path

import pytest
from scorecard_samples import RUN_START, SIM_REGISTRY, Ch, write_run

from drills.core.journal import Journal
from drills.core.registry import parse_registry
from drills.core.runner import Drill
from drills.core.scoring import DAY_S, WEIGHTS
from drills.reporting.scorecard import build_scorecard, write_json
from drills.reporting.text import to_markdown

README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_contract_keys() -> tuple[set[str], set[str], set[str]]:
    """The keys the README's scorecard.json example promises (top, municipality, channel)."""
    text = README.read_text(encoding="utf-8")
    block = (
        text.split("<!-- section:scorecard-json -->", 1)[1]
        .split("```json", 1)[1]
        .split("```", 1)[0]
    )
    example = json.loads(block.replace("…", ""))
    muni = example["municipalities"][0]
    return set(example), set(muni), set(muni["channels"][0])


def test_contract_keys_stay(sample_journal, registry):
    journal, run_id = sample_journal
    card = build_scorecard(journal, run_id, registry)
    top, muni, chan = _readme_contract_keys()
    assert top <= set(card)
    for m in card["municipalities"]:
        assert muni <= set(m)
        for ch in m["channels"]:
            assert chan <= set(ch)
    json.dumps(card)  # JSON-ready as it is
    assert card["started_at"] == "2026-11-27T19:15:00+09:00"  # Asia/Tokyo


def test_worked_example_numbers(sample_journal, registry):
    journal, run_id = sample_journal
    card = build_scorecard(journal, run_id, registry)
    adachi = card["municipalities"][0]
    assert (adachi["code"], adachi["score"], adachi["grade"]) == ("131211", 79.6, "B")
    assert [c["score"] for c in adachi["channels"]] == [96.0, 68.2, 31.6]
    sms = adachi["channels"][2]
    # accepted-only: shown as unconfirmed, never delivered
    assert (sms["status"], sms["delivered"], sms["accepted_only"], sms["reachability"]) == (
        "unconfirmed",
        0,
        10,
        0.0,
    )
    ogasawara = card["municipalities"][2]
    # chat 0 (rejected), mail 92.0 → 0.46; redundancy 1/2; freshness 1; fallback 1/1
    # (0.23 + 0.1 + 0.1 + 0.1) / 0.9 = 0.5889 → 58.9
    assert (ogasawara["score"], ogasawara["grade"]) == (58.9, "C")
    # overall: mean of 79.6, 100.0, 58.9 = 79.5
    assert card["summary"]["score"] == 79.5
    assert card["summary"]["channels"] == {
        "ok": 4,
        "partial": 1,
        "unconfirmed": 1,
        "down": 1,
        "untested": 0,
    }


def test_what_got_worse_comes_first_with_reasons(sample_journal, registry):
    journal, run_id = sample_journal
    card = build_scorecard(journal, run_id, registry)
    comp = card["comparison"]
    assert comp["previous_run_id"] == "20261120T101500-prev00"
    worse = [(e["code"], e["channel"]) for e in comp["worsened"]]
    # the largest fall first (小笠原村 −31.4), each municipality followed by its channels
    assert worse == [
        ("134210", None),
        ("134210", "chat"),
        ("131211", None),
        ("131211", "mail"),
        ("131211", "chat"),
    ]
    chat = comp["worsened"][1]
    assert (chat["before"], chat["after"], chat["delta"]) == (100.0, 0.0, -100.0)
    assert {"ja": "到達率 100% → 0%", "en": "reachability 100% → 0%"} in chat["reasons"]
    improved = {(e["code"], e["channel"]) for e in comp["improved"]}
    assert improved == {("131016", None), ("131016", "chat"), ("134210", "mail")}
    assert ("131211", "sms") in {(e["code"], e["channel"]) for e in comp["unchanged"]}
    assert card["municipalities"][0]["change"]["status"] == "worsened"
    assert card["summary"]["worsened"] == 5


def test_first_drill_of_a_scenario_has_nothing_to_compare(tmp_path, registry):
    with Journal(tmp_path / "j.sqlite") as j:
        run = write_run(
            j, "only", RUN_START, [Ch("131211", "足立区", "chat", "webhook", delivered=[0.2])]
        )
        card = build_scorecard(j, run, registry)
    assert card["comparison"]["previous_run_id"] is None
    assert card["comparison"]["worsened"] == [] and card["municipalities"][0]["change"] is None
    assert [p["run_id"] for p in card["trend"]] == ["only"]


def test_not_drilled_municipalities_and_freshness(sample_journal, registry):
    journal, run_id = sample_journal
    card = build_scorecard(journal, run_id, registry)
    nd = {n["code"]: n for n in card["not_drilled"]}
    # 八王子市: last drilled 2026-10-18 19:15 by another scenario,
    # 40.0 days before the run ended (2026-11-27 19:15:08)
    assert nd["132012"]["last_drilled_at"] == "2026-10-18T19:15:00+09:00"
    assert nd["132012"]["age_days"] == 40.0 and nd["132012"]["status"] == "overdue"
    assert nd["132012"]["value"] == pytest.approx(
        1 - (40 * DAY_S + 8 - 30 * DAY_S) / (30 * DAY_S), abs=1e-4
    )
    # 奥多摩町: never drilled
    assert nd["133086"] == {
        "code": "133086",
        "name": "奥多摩町",
        "name_en": "Okutama Town",
        "last_drilled_at": None,
        "age_days": None,
        "drill_interval_days": 30.0,
        "value": 0.0,
        "status": "never",
    }


def test_freshness_is_judged_as_of_a_given_time(sample_journal, registry):
    journal, run_id = sample_journal
    later = RUN_START + 8 + 45 * DAY_S  # 45 days after the run ended
    card = build_scorecard(journal, run_id, registry, as_of=later)
    adachi = card["municipalities"][0]
    assert adachi["freshness"]["value"] == 0.5 and adachi["freshness"]["status"] == "overdue"
    # (0.5 × 0.652667 + 0.2 + 0.1 × 0.5 + 0.1 × 0.9) / 0.9 = 0.666333 / 0.9 = 0.74037 → 74.0 (C)
    assert (adachi["score"], adachi["grade"]) == (74.0, "C")
    # by default the card is as of the run's end, so the same journal gives the same card
    assert build_scorecard(journal, run_id, registry) == build_scorecard(journal, run_id, registry)


def test_changing_weights_changes_only_scores(sample_journal, registry):
    journal, run_id = sample_journal
    base = build_scorecard(journal, run_id, registry)
    other = build_scorecard(
        journal,
        run_id,
        registry,
        weights=dataclasses.replace(
            WEIGHTS, reach=0.3, latency=0.7, unconfirmed=0.2, channels=0.8, roll_call=0.3
        ),
    )
    assert base["municipalities"][0]["score"] != other["municipalities"][0]["score"]

    def strip(card):
        card = copy.deepcopy(card)
        for key in ("comparison", "trend", "model"):
            card.pop(key)
        card["standing"].pop("score")  # the score's standing follows the scores
        for key in ("score", "grade", "grades", "worsened", "improved"):
            card["summary"].pop(key)
        for m in card["municipalities"]:
            for key in ("score", "grade", "parts", "change"):
                m.pop(key)
            m["standing"].pop("score")
            for ch in m["channels"]:
                for key in ("score", "parts", "change"):
                    ch.pop(key)
        return card

    assert strip(base) == strip(other)


def test_trend_and_latency_by_kind(sample_journal, registry):
    journal, run_id = sample_journal
    card = build_scorecard(journal, run_id, registry)
    # only runs of the same scenario: the older "多摩地域" drill is not in the trend
    assert [(p["run_id"], p["score"]) for p in card["trend"]] == [
        ("20261120T101500-prev00", card["comparison"]["previous_score"]),
        (run_id, 79.5),
    ]
    lat = card["latency_by_kind"]
    assert set(lat) == {"webhook", "mail", "twilio"}
    assert lat["twilio"]["count"] == 0  # accepted-only: no latency
    assert lat["webhook"]["count"] == 20 and lat["webhook"]["p100_s"] == 3.5
    assert lat["mail"]["slo_latency_s"] == [3.0, 10.0]


def test_write_json_round_trips(sample_journal, registry, tmp_path):
    journal, run_id = sample_journal
    card = build_scorecard(journal, run_id, registry)
    write_json(card, tmp_path / "scorecard.json")
    assert json.loads((tmp_path / "scorecard.json").read_text(encoding="utf-8")) == card


async def _two_real_drills(tmp_path, second_registry=None, take_down=None):
    """Two real drills on the local chat simulator; the card of the second one."""
    first = parse_registry(SIM_REGISTRY, "sim.yaml")
    with Journal(tmp_path / "j.sqlite") as journal:
        for second, registry in ((False, first), (True, second_registry or first)):
            async with Drill(registry, journal, scenario="outage drill", seed=1) as drill:
                targets = drill.targets()
                if take_down and second:
                    await drill.take_down(next(t for t in targets if t.key == take_down))
                await drill.broadcast(
                    "参集してください", targets, timeout=3.0, repeat=3, step="call-up"
                )
                run_id = drill.run_id
        return build_scorecard(journal, run_id, second_registry or first)


async def test_real_drill_then_outage_shows_as_worse(tmp_path):
    """In the second drill a channel's provider refuses every message: the channel's fault."""
    refusing = SIM_REGISTRY.replace(
        "- {id: chat, kind: webhook, sim: {latency: 20ms}}\n      - {id: backup",
        "- {id: chat, kind: webhook, sim: {reject: auth}}\n      - {id: backup",
    )
    assert refusing != SIM_REGISTRY
    card = await _two_real_drills(tmp_path, parse_registry(refusing, "sim.yaml"))
    adachi = card["municipalities"][0]
    chat = next(c for c in adachi["channels"] if c["id"] == "chat")
    assert (chat["status"], chat["rejected"], chat["score"]) == ("down", 3, 0.0)
    worse = {(e["code"], e["channel"]) for e in card["comparison"]["worsened"]}
    assert ("131211", "chat") in worse and ("131211", None) in worse
    assert ("131016", None) not in worse
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+09:00", card["started_at"])
    assert len(card["trend"]) == 2


async def test_real_drill_own_outage_is_shown_never_scored(tmp_path):
    """The drill takes 足立区/chat down itself: shown as drill outage, not lost, not worse."""
    card = await _two_real_drills(tmp_path, take_down="131211/chat")
    adachi = card["municipalities"][0]
    chat = next(c for c in adachi["channels"] if c["id"] == "chat")
    assert (chat["drill_outage"], chat["lost"], chat["counted"]) == (3, 0, 0)
    assert (chat["status"], chat["score"]) == ("untested", None)
    # backup (webhook) 100, one kind of 2 → (0.5 × 1 + 0.2 × 0.5 + 0.1 × 1) / 0.8 = 87.5,
    # as in the first drill: the drill's own outage costs the municipality nothing
    assert (adachi["score"], adachi["change"]["status"]) == (87.5, "unchanged")
    worse = {(e["code"], e["channel"]) for e in card["comparison"]["worsened"]}
    assert ("131211", "chat") not in worse and ("131211", None) not in worse
    assert card["summary"]["drill_outage"] == 3
    row = next(x for x in to_markdown(card, "ja").splitlines() if x.startswith("| 131211 "))
    assert "訓練による停止3" in row and "不達" not in row


def test_trend_keeps_the_last_runs_up_to_this_one(tmp_path, registry):
    with Journal(tmp_path / "j.sqlite") as j:
        ids = [
            write_run(
                j,
                f"r{i:02d}",
                RUN_START + i * DAY_S,
                [Ch("131211", "足立区", "chat", "webhook", delivered=[0.2])],
            )
            for i in range(14)
        ]
        card = build_scorecard(j, ids[-2], registry, trend_limit=5)
    # runs after the reported one are not in its trend
    assert [p["run_id"] for p in card["trend"]] == ids[8:13]
