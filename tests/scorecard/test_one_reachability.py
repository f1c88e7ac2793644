"""One journal, three readers — scorecard, metrics, vantage view — one reachability.

Reachability is ``(delivered + late) / counted``; harness errors and messages
sent into the drill's own outage are not counted (drills.core.scoring.reachability).
"""

from __future__ import annotations

import pytest
from scorecard_samples import RUN_START, Ch, write_run

from drills.core.events import FallbackAttempt, FallbackEvent, FallbackMunicipality
from drills.core.journal import Journal
from drills.core.scoring import Ratio
from drills.metrics.collector import exposition
from drills.metrics.digest import run_digest
from drills.reporting.scenario_events import read_ratios
from drills.reporting.scorecard import build_scorecard
from drills.reporting.vantage import vantage_view
from tests.metrics.support import sample_set

# (code, channel) → expected reachability, worked by hand
EXPECTED = {
    ("131211", "chat"): 7 / 8,  # 6 delivered + 1 late of 8 counted (2 errors, 2 drill outages)
    ("131211", "sms"): 9 / 10,  # 9 by carrier receipt, 1 lost
    ("131016", "mail"): 3 / 4,  # 3 delivered, 1 rejected (1 error not counted)
    ("134210", "chat"): 0.0,  # 5 rejected (2 drill outages not counted)
}


@pytest.fixture
def journal(tmp_path):
    with Journal(tmp_path / "j.sqlite") as j:
        run_id = write_run(
            j,
            "20261204T101500-one000",
            RUN_START,
            [
                Ch(
                    "131211",
                    "足立区",
                    "chat",
                    "webhook",
                    delivered=[0.2] * 6,
                    late=[4.0],
                    lost=1,
                    error=2,
                    drill_outage=2,
                ),
                Ch("131211", "足立区", "sms", "twilio", receipt=[2.0] * 9, lost=1),
                Ch("131016", "千代田区", "mail", "mail", delivered=[0.3] * 3, rejected=1, error=1),
                Ch("134210", "小笠原村", "chat", "webhook", rejected=5, drill_outage=2),
            ],
        )
        yield j, run_id


def test_scorecard_metrics_and_vantage_view_agree_on_reachability(journal):
    j, run_id = journal
    card = build_scorecard(j, run_id)
    from_card = {
        (m["code"], c["id"]): c["reachability"]
        for m in card["municipalities"]
        for c in m["channels"]
    }
    from_metrics = {
        (dict(labels)["municipality_code"], dict(labels)["channel_id"]): v
        for (name, labels), v in sample_set(exposition(j).decode()).items()
        if name == "tsunagari_channel_reachability_ratio"
    }
    (scenario,) = vantage_view([j])["scenarios"]
    from_vantage = {
        (m["code"], c["id"]): c["by_vantage"]["default"]["reachability"]
        for m in scenario["municipalities"]
        for c in m["channels"]
    }
    expected = {k: round(v, 4) for k, v in EXPECTED.items()}
    assert from_card == expected
    assert {k: round(v, 4) for k, v in from_metrics.items()} == expected
    assert from_vantage == expected
    adachi = next(m for m in scenario["municipalities"] if m["code"] == "131211")
    chat = next(c for c in adachi["channels"] if c["id"] == "chat")["by_vantage"]["default"]
    assert (chat["sent"], chat["counted"], chat["drill_outage"]) == (12, 8, 2)


def test_a_drill_outage_in_a_step_event_is_skipped_not_failed(tmp_path):
    with Journal(tmp_path / "j.sqlite") as j:
        run = j.begin_run("s")
        # The chain's first channel was taken down by the drill itself; it escalated and
        # the second reached the municipality: the drill's outage is what a fallback
        # drill is for, so the chain counts once, as passed.
        event = FallbackEvent(
            step="fb",
            order=("chat", "mail"),
            within_s=10.0,
            escalate_after_s=2.0,
            municipalities=(
                FallbackMunicipality(
                    "131211",
                    "足立区",
                    True,
                    "mail",
                    3.5,
                    (
                        FallbackAttempt(
                            "chat", "webhook", "drill_outage", "訓練で停止", 0.0, None, 2.0
                        ),
                        FallbackAttempt("mail", "mail", "delivered", "", 2.0, 1.5),
                    ),
                ),
                # Every channel it tried was taken away by the drill: nothing to judge.
                FallbackMunicipality(
                    "133086",
                    "奥多摩町",
                    False,
                    None,
                    None,
                    (FallbackAttempt("chat", "webhook", "drill_outage", "訓練で停止", 0.0, None),),
                ),
            ),
        )
        j.record_event(run, event.kind, event.to_data())
        ratios, unreadable = read_ratios(j.events(run, "fallback"))
        digest = run_digest(j, run)
    assert (ratios, unreadable) == ({"131211": Ratio(1.0, 1.0)}, 0)
    assert digest.municipalities["131211"].fallback == Ratio(1.0, 1.0)
    assert "133086" not in digest.municipalities  # skipped, not failed: nothing to show
