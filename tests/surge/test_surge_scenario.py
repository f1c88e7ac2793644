"""The surge step of the scenario API (``drill.surge``), and how ``expect`` judges it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from drills.core.delivery import Delivery, Outcome
from drills.core.journal import Journal
from drills.core.registry import parse_registry
from drills.core.requirements import RequirementMissed, ScenarioMistake, Status
from drills.operator.scenario import open_drill
from drills.steps.surge import Surge, SurgeStep, parse_rate
from drills.surge.curve import SurgeCurve
from drills.surge.plan import SurgePlan
from drills.surge.process import Topology
from drills.surge.runner import SurgeResult
from drills.surge.stats import LoadStats
from tests.surge.conftest import CHAT_FAST


def test_a_scenario_surges_a_channel_and_expects_it_to_hold(
    write_registry: Callable[[str], Path], tmp_path: Path
) -> None:
    reg = write_registry(CHAT_FAST)
    db = tmp_path / "journal.sqlite"
    with open_drill(str(reg), str(db), scenario="輻輳訓練") as drill:
        surge = drill.surge(
            [10, 20], channels="chat", each="1s", rest="0.5s", probes=2, step="輻輳"
        )
        surge.expect()
        surge.expect(holds_up_to="20/s")
        (result,) = surge.results
        with pytest.raises(ScenarioMistake, match="holds_up_to"):
            surge.expect(holds_up_to="fast")
    assert result.stop_reason == "completed" and result.totals.requests > 20
    with Journal(db) as journal:
        run = journal.latest_run()
        assert run is not None
        (event,) = journal.events(run["run_id"], "surge")
        steps = {d.step for d in journal.deliveries(run["run_id"])}
    assert event["data"]["step"] == "輻輳" and event["data"]["scenario"] == "輻輳訓練"
    assert steps == {"輻輳.0 (at rest)", "輻輳.1 (10 msg/s)", "輻輳.2 (20 msg/s)"}


def test_a_scenario_surge_on_a_live_channel_is_refused_before_anything_starts(
    write_registry: Callable[[str], Path],
) -> None:
    reg = write_registry(
        CHAT_FAST + '      - {id: live, kind: webhook, url: "http://127.0.0.1:9/h"}\n'
    )
    with open_drill(str(reg), live=True) as drill:
        with pytest.raises(ScenarioMistake) as info:
            drill.surge([10], channels=["chat", "live"], each="1s")
    assert "no surge allowance" in info.value.en and info.value.where is not None


# --------------------------------------------------------------------------- judging


REG = parse_registry(
    """
municipalities:
  - code: "131211"
    name: 足立区
    channels: [{id: chat, kind: webhook, sim: {}}, {id: chat2, kind: webhook, sim: {}}]
  - code: "131016"
    name: 千代田区
    channels: [{id: chat, kind: webhook, sim: {}}]
""",
    "t.yaml",
)
PLAN = SurgePlan.of([10, 50, 100], step_s=1.0, rest_s=1.0)


def _result(latencies: list[float | None], stop: str = "completed") -> SurgeResult:
    """A surge whose probe in step i took latencies[i] (None: a harness error)."""
    probes = {
        i: [
            Delivery(
                run_id="r", step="s", municipality_code="x", municipality_name="x", channel_id="c",
                kind="webhook", token="TSG-0000000000AB",
                outcome=Outcome.ERROR if lat is None else Outcome.DELIVERED if lat <= 1 else Outcome.LATE,
                latency_s=lat, slo_latency_s=1.0,
            )
        ]
        for i, lat in enumerate(latencies)
    }  # fmt: skip
    curve = SurgeCurve.build(PLAN.steps, {}, probes, 1.0, 0.99)
    return SurgeResult("r", "x", PLAN, Topology(), curve, LoadStats(), [], stop)


def test_expect_judges_each_municipality_against_the_load_it_must_hold() -> None:
    adachi_chat, adachi_chat2, chiyoda = REG.targets()
    step = SurgeStep(
        "s",
        PLAN,
        [
            (adachi_chat, _result([0.1, 0.1, 0.2, 0.3])),
            (adachi_chat2, _result([0.1, 0.2, 3.0, 5.0])),  # breaks at 50 msg/s
            (chiyoda, _result([0.1, 0.1, 0.1, 4.0])),  # breaks at 100 msg/s
        ],
    )
    by_code = {v.code: v for v in step.verdicts()}
    assert by_code["131211"].status is Status.MISSED and by_code["131016"].status is Status.MISSED
    row = next(r for r in by_code["131211"].rows if r.outcome == "late")
    assert row.channel == "chat2" and "50 msg/s" in row.reason and row.latency_s == 3.0
    up_to_50 = {v.code: v.status for v in step.verdicts(holds_up_to=50)}
    assert up_to_50 == {"131211": Status.MISSED, "131016": Status.MET}
    assert {v.status for v in step.verdicts(holds_up_to=10)} == {Status.MET}


def test_a_stopped_or_unmeasurable_surge_cannot_be_judged() -> None:
    adachi_chat, _, chiyoda = REG.targets()
    step = SurgeStep(
        "s",
        PLAN,
        [
            (adachi_chat, _result([0.1, 0.1], stop="stopped")),
            (chiyoda, _result([0.1, None, 0.1, 0.1])),
        ],
    )
    verdicts = {v.code: v for v in step.verdicts()}
    assert verdicts["131211"].status is Status.HARNESS
    assert "stopped" in verdicts["131211"].rows[0].reason
    assert verdicts["131016"].status is Status.HARNESS


def test_parse_rate() -> None:
    assert parse_rate("50/s") == parse_rate("50 msg/s") == parse_rate("50通/秒") == 50.0
    for bad in ("fast", "-5/s", 0, True):
        with pytest.raises(ScenarioMistake):
            parse_rate(bad)


def test_a_missed_surge_raises_outside_pytest() -> None:
    """Without pytest's subtests, a municipality that missed raises RequirementMissed."""
    adachi_chat, _, _ = REG.targets()
    step = SurgeStep("s", PLAN, [(adachi_chat, _result([0.1, 5.0, 5.0, 5.0]))])
    with open_drill(REG) as drill:
        with pytest.raises(RequirementMissed, match="足立区"):
            Surge(drill, step).expect()
