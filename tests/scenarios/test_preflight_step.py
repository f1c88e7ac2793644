"""``drill.preflight()``: checks every channel without sending, stops the drill on a failure."""

from __future__ import annotations

import sqlite3

import pytest

from drills.core.journal import Journal
from drills.core.preflight import PreflightFailed
from drills.operator.scenario import open_drill

STOPPED = '''\
"""事前確認で止まる訓練"""
import pytest

pytestmark = [pytest.mark.scenario("事前確認"), pytest.mark.deadline("3s")]


def test_23区(drill):
    drill.preflight(to="23ku")
    drill.broadcast("参集してください", to="23ku").expect(reached="100%", within="2s")
'''


def preflight_events(path):
    with Journal(path) as j:
        return [e["data"] for run in j.runs() for e in j.events(run["run_id"], "preflight")]


def deliveries(path) -> int:
    return sqlite3.connect(path).execute("SELECT count(*) FROM deliveries").fetchone()[0]


def test_healthy_channels_pass_and_the_drill_goes_on(small_registry, tmp_path):
    jpath = tmp_path / "j.sqlite"
    with open_drill(str(small_registry), str(jpath), scenario="pf", seed=1) as drill:
        reports = drill.preflight(to="足立区")
        assert [(r.target, r.ok) for r in reports] == [("131211/chat", True), ("131211/mail", True)]
        assert all(r.phase("observer.read").ok for r in reports)
        step = drill.broadcast("参集してください", to="足立区")
        step.expect(reached="100%", within="2s")
        assert step.result.name == "pf"  # the preflight did not take the first step's name
    (event,) = preflight_events(jpath)
    assert event["step"] == "preflight" and event["stopped"] is False
    assert [c["channel"] for c in event["channels"]] == ["131211/chat", "131211/mail"]
    assert deliveries(jpath) == 2  # the broadcast after it, one per channel


def test_a_channel_that_cannot_work_stops_the_drill_before_sending(small_registry, tmp_path):
    jpath = tmp_path / "j.sqlite"
    with open_drill(str(small_registry), str(jpath), scenario="pf", lang="en") as drill:
        with pytest.raises(PreflightFailed) as info:
            drill.preflight(to="23ku")
        sims = list(drill.ctx.drill.sims.running.values())
    exc = info.value
    assert [r.target for r in exc.reports] == ["131016/mail"]  # sim: {outage: true}
    assert "131016/mail (webhook) at observer.connect [connect]" in exc.en
    assert "131016/mail（webhook）の observer.connect［connect］" in exc.ja
    assert "test_preflight_step.py:" in exc.where  # the line that asked
    (event,) = preflight_events(jpath)
    assert event["stopped"] is True
    failing = [c for c in event["channels"] if not c["ok"]]
    assert [(c["channel"], c["phase"], c["phase_class"]) for c in failing] == [
        ("131016/mail", "observer.connect", "connect")
    ]
    assert deliveries(jpath) == 0
    assert sims and all(len(sim.ledger) == 0 for sim in sims)  # nothing reached a far end


def test_a_scenario_run_stops_with_the_message_and_exit_2(helpers, small_registry, tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "test_pf.py").write_text(STOPPED, encoding="utf-8")
    done = helpers.tsunagari(
        "--lang", "en", "run", "s/test_pf.py", "--registry", "registry.yaml",
        "--journal", "j.sqlite", cwd=tmp_path,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 2, out
    assert "131016/mail (webhook) at observer.connect [connect]" in out
    assert "test_pf.py:8" in out  # the scenario line that asked
    assert "Traceback" not in out
    assert deliveries(tmp_path / "j.sqlite") == 0
