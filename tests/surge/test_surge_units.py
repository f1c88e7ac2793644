"""Pure parts of the surge: plan, guard, Locust stats, the curve, endpoints, config, report."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from drills.core.delivery import Delivery, Outcome
from drills.core.errors import DrillSafetyError, ScenarioError
from drills.core.registry import parse_registry
from drills.surge.config import SurgeConfig, append_progress, read_progress
from drills.surge.curve import ProbeSummary, SurgeCurve
from drills.surge.endpoint import endpoint_for, scrub
from drills.surge.plan import (
    HARD_MAX_DURATION_S,
    HARD_MAX_RATE,
    SurgePlan,
    SurgeRefused,
    allowance_problems,
    check_surge_allowed,
)
from drills.surge.process import LocustRun, Topology
from drills.surge.report import progress_line, verdict
from drills.surge.stats import LoadStats, by_step, histogram_percentile, steady_rate
from probes.chat.webhook import WebhookSettings
from probes.mail.probe import MailSettings
from probes.settings import SecretRef
from probes.sms.probe import TwilioSettings

REGISTRY = """
municipalities:
  - code: "131211"
    name: 足立区
    channels:
      - {id: sim, kind: webhook, sim: {latency: 10ms}}
      - {id: live-bare, kind: webhook, url: "http://127.0.0.1:9/hooks/a"}
      - id: live-ok
        kind: webhook
        url: "http://127.0.0.1:9/hooks/b"
        surge: {rate: 50, duration: 2m}
"""


@pytest.fixture(scope="module")
def targets() -> dict[str, object]:
    reg = parse_registry(REGISTRY, "test.yaml")
    return {t.channel.id: t for t in reg.targets()}


# --------------------------------------------------------------------------- plan


def test_plan_starts_at_rest_and_ramps() -> None:
    plan = SurgePlan.ramp(start=10, peak=40, steps=4, step_s=5, rest_s=2)
    assert [s.rate for s in plan.steps] == [0.0, 10.0, 20.0, 30.0, 40.0]
    assert plan.steps[0].at_rest and not plan.steps[1].at_rest
    assert plan.duration_s == 22.0
    assert plan.peak_rate == 40.0
    assert plan.users == 8
    assert plan.per_user_rate(plan.steps[4]) == 5.0
    assert [s.name for s in plan.steps][:2] == ["step 0", "step 1"]
    assert SurgePlan.from_dict(plan.to_dict()) == plan


def test_plan_without_rest_and_explicit_users() -> None:
    plan = SurgePlan.of([100], step_s=3, users=7)
    assert [(s.index, s.rate) for s in plan.steps] == [(0, 100.0)]
    assert plan.users == 7


@pytest.mark.parametrize(
    "rates, step_s, rest_s",
    [
        ([], 1.0, 0.0),
        ([10, -1], 1.0, 0.0),
        ([10], 0.0, 0.0),
        ([10], 1.0, -1.0),
        ([float("nan")], 1, 0),
    ],
)
def test_plan_rejects_nonsense(rates: list[float], step_s: float, rest_s: float) -> None:
    with pytest.raises(ScenarioError):
        SurgePlan.of(rates, step_s, rest_s)


def test_hard_caps_apply_to_simulated_channels_too(targets: dict[str, object]) -> None:
    too_fast = SurgePlan.of([HARD_MAX_RATE * 2], step_s=1)
    too_long = SurgePlan.of([1], step_s=HARD_MAX_DURATION_S + 1)
    for plan in (too_fast, too_long):
        with pytest.raises(SurgeRefused) as info:
            check_surge_allowed(targets["sim"], plan, live=True)  # type: ignore[arg-type]
        assert len(info.value.problems) == 1
    check_surge_allowed(targets["sim"], SurgePlan.of([HARD_MAX_RATE], 10), live=False)  # type: ignore[arg-type]


def test_guard_on_live_channels(targets: dict[str, object]) -> None:
    plan = SurgePlan.of([20, 50], step_s=30, rest_s=30)
    bare, ok = targets["live-bare"], targets["live-ok"]
    not_live = allowance_problems(ok, plan, live=False)  # type: ignore[arg-type]
    assert [en for _, en in not_live] == ["131211/live-ok is a live channel: a surge needs --live"]
    no_allowance = allowance_problems(bare, plan, live=True)  # type: ignore[arg-type]
    assert "no surge allowance" in no_allowance[0][1]
    assert allowance_problems(ok, plan, live=True) == []  # type: ignore[arg-type]
    over = allowance_problems(ok, SurgePlan.of([60], step_s=200), live=True)  # type: ignore[arg-type]
    assert [en.split(" exceeds")[0] for _, en in over] == ["rate 60 msg/s", "duration 200 s"]
    with pytest.raises(DrillSafetyError) as info:
        check_surge_allowed(bare, plan, live=False)  # type: ignore[arg-type]
    assert info.value.render("ja").startswith("サージを拒否しました")  # type: ignore[attr-defined]
    assert "--live" in str(info.value) and "allowance" in str(info.value)


# --------------------------------------------------------------------------- stats


def test_histogram_percentiles_and_steady_rate() -> None:
    hist = {1: 90, 5: 9, 400: 1}
    assert histogram_percentile(hist, 50) == 1
    assert histogram_percentile(hist, 95) == 5
    assert histogram_percentile(hist, 100) == 400
    assert steady_rate({100: 3, 101: 50, 102: 52, 103: 51, 104: 7}) == 51.0
    assert steady_rate({100: 3, 101: 7}) == 5.0
    assert steady_rate({}) == 0.0


def test_stats_are_grouped_per_step_across_methods() -> None:
    entries = [
        {"name": "step 1", "method": "POST", "num_requests": 10, "num_failures": 2,
         "response_times": {"3": 8, "30": 2}, "num_reqs_per_sec": {"7": 10},
         "total_response_time": 84, "max_response_time": 31},
        {"name": "step 1", "method": "GET", "num_requests": 5, "num_failures": 0,
         "response_times": {"3": 5}, "num_reqs_per_sec": {"7": 5},
         "total_response_time": 15, "max_response_time": 3},
        {"name": "step 2", "method": "POST", "num_requests": 4, "num_failures": 4,
         "response_times": {"1": 4}, "num_reqs_per_sec": {"8": 4}},
        {"name": "/other", "method": "GET", "num_requests": 99, "num_failures": 0},
    ]  # fmt: skip
    steps = by_step(entries)
    assert sorted(steps) == [1, 2]
    one = steps[1]
    assert (one.requests, one.failures, one.max_response_ms) == (15, 2, 31.0)
    assert one.percentile_ms(50) == 3 and one.percentile_ms(99) == 30
    summary = one.summary(duration_s=5.0)
    assert summary["rps"] == 3.0 and summary["failures_per_s"] == 0.4
    assert summary["response_mean_ms"] == round(99 / 15, 2)
    assert steps[2].failure_ratio == 1.0
    assert LoadStats.merge(steps.values()).requests == 19


# --------------------------------------------------------------------------- curve


def _delivery(
    step: str, outcome: Outcome, latency: float | None, accept: float | None = 0.01
) -> Delivery:
    return Delivery(
        run_id="r", step=step, municipality_code="131211", municipality_name="足立区",
        channel_id="chat", kind="webhook", token="TSG-0000000000AB", outcome=outcome,
        latency_s=latency, accept_latency_s=accept, slo_latency_s=1.0,
    )  # fmt: skip


def test_breaking_point_is_the_first_step_that_misses_the_slo() -> None:
    plan = SurgePlan.of([10, 20, 40, 80], step_s=1, rest_s=1)
    probes = {
        0: [_delivery("a", Outcome.DELIVERED, 0.05)] * 3,
        1: [_delivery("b", Outcome.DELIVERED, 0.06)] * 3,
        2: [_delivery("c", Outcome.DELIVERED, 0.3), _delivery("c", Outcome.ERROR, None)],
        3: [_delivery("d", Outcome.DELIVERED, 0.5), _delivery("d", Outcome.LATE, 2.5)],
        4: [_delivery("e", Outcome.LOST, None)],
    }
    curve = SurgeCurve.build(plan.steps, {1: LoadStats(requests=10)}, probes, 1.0, 0.99)
    assert [p.holds for p in curve.points] == [True, True, True, False, False]
    assert curve.breaking_point is not None and curve.breaking_point.step.rate == 40.0
    assert curve.held_up_to == 20.0
    data = curve.to_dict()
    assert data["breaking_point"]["index"] == 3
    assert data["steps"][3]["probes"]["late"] == 1
    assert data["steps"][3]["probes"]["latency_max_s"] == 2.5
    assert data["steps"][1]["load"]["requests"] == 10


def test_a_step_without_counted_probes_neither_holds_nor_breaks() -> None:
    plan = SurgePlan.of([10], step_s=1, rest_s=1)
    curve = SurgeCurve.build(plan.steps, {}, {1: [_delivery("x", Outcome.ERROR, None)]}, 1.0, 0.99)
    assert [p.holds for p in curve.points] == [None, None]
    assert curve.breaking_point is None and curve.held_up_to is None


def test_accepted_only_channels_are_judged_on_acceptance_and_say_so() -> None:
    fast = ProbeSummary.of([_delivery("x", Outcome.ACCEPTED, None, accept=0.2)], 1.0)
    slow = ProbeSummary.of([_delivery("x", Outcome.ACCEPTED, None, accept=3.0)], 1.0)
    assert fast.accepted_only and fast.holds(0.99) is True
    assert slow.holds(0.99) is False and slow.latency(50) == 3.0


# --------------------------------------------------------------------------- endpoints, config


def test_webhook_endpoint_reveals_the_token_only_into_params() -> None:
    settings = WebhookSettings(
        url="https://chat.example.lg.jp/hooks/abc?room=1",
        auth=SecretRef.inline("s3cret"),
        format="form",
    )
    ep = endpoint_for("webhook", settings)
    assert (ep.load, ep.host) == ("webhook", "https://chat.example.lg.jp")
    assert ep.params == {
        "path": "/hooks/abc?room=1",
        "format": "form",
        "field": "text",
        "token": "s3cret",
    }
    assert "s3cret" not in repr(ep)
    assert scrub("Authorization: Bearer s3cret", ep.secrets) == "Authorization: Bearer ***"
    with pytest.raises(ScenarioError, match="embeds credentials"):
        endpoint_for("webhook", WebhookSettings(url="https://u:pw@chat.example.lg.jp/hooks/abc"))


def test_mail_and_twilio_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SURGE_TEST_SMTP_PW", "pw-123")
    monkeypatch.setenv("SURGE_TEST_TWILIO", "tok-456")
    mail = endpoint_for(
        "mail",
        MailSettings.model_validate(
            {
                "smtp": {
                    "host": "smtp.example.lg.jp",
                    "user": "drill",
                    "password": "env:SURGE_TEST_SMTP_PW",
                },
                "from": "drill@example.lg.jp",
                "to": ["staff@example.lg.jp"],
            }
        ),
    )
    assert (mail.load, mail.host) == ("smtp", "")
    assert mail.params["port"] == 587 and mail.params["security"] == "starttls"
    assert mail.params["password"] == "pw-123" and mail.secrets == ("pw-123",)
    raw = {
        "account_sid": "AC" + "0" * 32,
        "auth_token": "env:SURGE_TEST_TWILIO",
        "from": "+815012345678",
        "to": ["+819012345678"],
    }
    live = endpoint_for("twilio", TwilioSettings.model_validate(raw))
    assert live.host == "https://api.twilio.com"
    assert live.params["path"] == f"/2010-04-01/Accounts/AC{'0' * 32}/Messages.json"
    assert live.params["token"] == "tok-456" and "tok-456" in live.secrets
    local = endpoint_for(
        "twilio", TwilioSettings.model_validate({**raw, "api_base": "http://127.0.0.1:8931"})
    )
    assert local.host == "http://127.0.0.1:8931"
    with pytest.raises(ScenarioError, match="no surge load for kind 'matrix'"):
        endpoint_for("matrix", TwilioSettings.model_validate(raw))


def test_config_file_is_private_and_progress_tolerates_partial_lines(tmp_path: Path) -> None:
    cfg = SurgeConfig(
        "webhook", {"token": "s3cret"}, "【訓練】", "t", {"users": 1, "steps": []}, "p"
    )
    cfg.write(tmp_path / "c.json")
    assert stat.S_IMODE((tmp_path / "c.json").stat().st_mode) == 0o600
    assert SurgeConfig.read(tmp_path / "c.json") == cfg
    assert "s3cret" not in repr(cfg)
    progress = tmp_path / "progress.jsonl"
    append_progress(progress, {"event": "clock", "wall": 1.0, "users": 2})
    with open(progress, "a", encoding="utf-8") as fh:
        fh.write('{"event": "st')  # a line being written
    events, offset = read_progress(progress)
    assert events == [{"event": "clock", "wall": 1.0, "users": 2}]
    with open(progress, "a", encoding="utf-8") as fh:
        fh.write('ep", "index": 0, "rate": 0.0, "wall": 2.0}\n')
    events, _ = read_progress(progress, offset)
    assert events == [{"event": "step", "index": 0, "rate": 0.0, "wall": 2.0}]


def test_locust_command_lines_bind_loopback_and_carry_no_secret(tmp_path: Path) -> None:
    cfg = SurgeConfig(
        "webhook", {"token": "s3cret"}, "【訓練】", "t", SurgePlan.of([5], 2).to_dict(), "p"
    )
    master = LocustRun(cfg, "http://127.0.0.1:1", Topology(master=True, local_workers=2), tmp_path)
    cmd = master.master_command()
    assert cmd[cmd.index("--master-bind-host") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--expect-workers") + 1] == "2"
    assert cmd[-1] == "WebhookSurge"
    assert not any("s3cret" in part for part in cmd)
    local = LocustRun(cfg, "http://127.0.0.1:1", Topology(processes=3), tmp_path).master_command()
    assert "--master" not in local and local[local.index("--processes") + 1] == "3"
    assert Topology(master=True, local_workers=2).to_dict()["mode"] == "distributed"
    with pytest.raises(ScenarioError):
        Topology(master=True)
    with pytest.raises(ScenarioError):
        Topology(master=True, local_workers=1, processes=2)


def test_the_harness_never_imports_locust() -> None:
    code = (
        "import sys, drills.cli, drills.commands.surge, drills.surge.runner, drills.surge.process\n"
        "drills.cli.build_parser('en')\n"
        "bad = sorted(m for m in ('locust', 'gevent') if m in sys.modules)\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --------------------------------------------------------------------------- report


def test_verdict_and_progress_lines() -> None:
    base = {
        "slo": {"latency_s": 1.0, "reachability": 0.99},
        "plan": {"peak_rate": 80.0},
        "steps_run": 4,
    }
    point = {"rate": 80.0, "index": 3, "at_rest": False, "latency_p95_s": 3.2}
    broke = {**base, "stop_reason": "completed", "breaking_point": point}
    assert verdict(broke, "en") == "breaking point: 80 msg/s (step 3, delivered p95 3.20s, SLO 1 s)"
    assert verdict(broke, "ja").startswith("破綻点: 80 通/秒")
    held = {**base, "stop_reason": "stopped", "steps_run": 2, "breaking_point": None,
            "held_up_to_rate": 20.0}  # fmt: skip
    assert verdict(held, "en") == (
        "no breaking point: the SLO held up to 20 msg/s  (stopped early after 2 steps)"
    )
    assert verdict({**held, "held_up_to_rate": None}, "en").startswith("no verdict")
    at_rest = {**broke, "breaking_point": {**broke["breaking_point"], "at_rest": True}}
    assert "already missed at rest" in verdict(at_rest, "en")
    assert (
        progress_line({"event": "step", "index": 2, "rate": 40.0}, 4, "en") == "step 2/3: 40 msg/s"
    )
    assert progress_line({"event": "tally"}, 4, "en") is None


def test_read_surge_reads_through_the_typed_event():
    from drills.core.events import SCHEMA_VERSION, EventError, SurgeEvent
    from drills.surge.summary import read_surge, read_surges

    step = {"index": 1, "rate": 20.0, "at_rest": False, "ran_s": 2.0, "slo_met": True,
            "load": {"requests": 40, "failures": 0, "rps": 20.0},
            "probes": {"sent": 3, "within_slo": 3}}  # fmt: skip
    data = {"seq": 2, "municipality_code": "131211", "channel_id": "chat", "kind": "webhook",
            "stop_reason": "completed", "steps_run": 1, "steps": [step],
            "slo": {"latency_s": 1.0, "reachability": 0.99}, "held_up_to_rate": 20.0}  # fmt: skip
    event = SurgeEvent.from_data(data)
    assert event.to_data()["v"] == SCHEMA_VERSION
    for written in (data, event.to_data()):  # version 0 (no "v") and version 1
        surge = read_surge(written)
        assert surge is not None and surge.held is True and surge.key == ("131211", "chat")
        assert surge.name == "131211" and surge.peak_rate == 20.0
    broken = {**data, "steps": [{**step, "probes": {"sent": 3}}]}
    with pytest.raises(EventError, match=r"steps\[0\]\.probes\.within_slo"):
        SurgeEvent.from_data(broken)
    assert read_surges([{"data": broken}, {"data": data}])[1] == 1
