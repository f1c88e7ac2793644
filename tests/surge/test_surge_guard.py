"""The guard: no surge on a live channel without --live *and* the registry's surge allowance."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from drills.cli import main
from drills.core.journal import Journal
from drills.core.registry import load_registry
from drills.core.runner import Drill
from drills.surge.plan import SurgePlan, SurgeRefused
from drills.surge.process import LocustRun
from drills.surge.runner import run_surge
from probes.sim.base import closed_port
from tests.surge.sinks import HttpCounter


def _registry(url: str, allowance: str = "") -> str:
    return f"""
municipalities:
  - code: "131211"
    name: 足立区
    channels:
      - id: live
        kind: webhook
        url: "{url}"
        {allowance}
"""


@pytest.mark.parametrize(
    "live, allowance, plan, why",
    [
        (False, "", SurgePlan.of([10], 1.0), "needs --live"),
        (True, "", SurgePlan.of([10], 1.0), "no surge allowance"),
        (False, "surge: {rate: 20, duration: 10s}", SurgePlan.of([10], 1.0), "needs --live"),
        (
            True,
            "surge: {rate: 20, duration: 10s}",
            SurgePlan.of([10, 30], 1.0),
            "rate 30 msg/s exceeds",
        ),
        (
            True,
            "surge: {rate: 20, duration: 10s}",
            SurgePlan.of([10], 6.0, 6.0),
            "duration 12 s exceeds",
        ),
    ],
)
async def test_live_channel_is_refused_before_anything_starts(
    http_counter: HttpCounter,
    write_registry: Callable[[str], Path],
    journal: Journal,
    monkeypatch: pytest.MonkeyPatch,
    live: bool,
    allowance: str,
    plan: SurgePlan,
    why: str,
) -> None:
    registry = load_registry(write_registry(_registry(http_counter.url, allowance)))
    started: list[object] = []

    async def no_start(self: LocustRun) -> None:
        started.append(self)

    monkeypatch.setattr(LocustRun, "start", no_start)
    async with Drill(registry, journal, live=live) as drill:
        with pytest.raises(SurgeRefused) as info:
            await run_surge(drill, drill.targets()[0], plan)
        run_id = drill.run_id
    assert why in str(info.value)
    assert started == []  # refused before any Locust process
    assert http_counter.requests == 0
    assert run_id is not None and journal.deliveries(run_id) == [] and journal.events(run_id) == []


async def test_live_channel_with_allowance_and_live_is_loaded(
    http_counter: HttpCounter, write_registry: Callable[[str], Path], journal: Journal
) -> None:
    text = _registry(http_counter.url, "surge: {rate: 20, duration: 10s}")
    registry = load_registry(write_registry(text))
    async with Drill(registry, journal, live=True) as drill:
        result = await run_surge(
            drill, drill.targets()[0], SurgePlan.of([20], 1.5), probes_per_step=2
        )
    assert result.stop_reason == "completed"
    assert result.totals.requests > 20 and result.totals.failures == 0
    # No read-back on this channel: probes are accepted-only and the curve says so.
    assert result.curve.points[0].probes.accepted_only
    assert http_counter.requests == result.totals.requests + 2
    assert result.event["live"] is True


def test_cli_refuses_with_exit_2_and_touches_nothing(
    write_registry: Callable[[str], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_registry(_registry(f"http://127.0.0.1:{closed_port()}/hooks/x"))
    journal = tmp_path / "out" / "journal.sqlite"
    common = [str(path), "--channel", "131211/live", "--rates", "10", "--journal", str(journal)]
    assert main(["--lang", "en", "surge", *common, "--live"]) == 2
    err = capsys.readouterr().err
    assert "surge refused" in err and "no surge allowance" in err
    assert main(["--lang", "ja", "surge", *common]) == 2
    err = capsys.readouterr().err
    assert "サージを拒否しました" in err and "--live" in err
    assert not journal.exists()


async def test_a_live_sms_surge_must_fit_the_channels_cost_caps(
    write_registry: Callable[[str], Path],
    journal: Journal,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SURGE_TWILIO_TOKEN", "not-used")
    started: list[object] = []

    async def no_start(self: LocustRun) -> None:
        started.append(self)

    monkeypatch.setattr(LocustRun, "start", no_start)
    text = f"""
municipalities:
  - code: "131211"
    name: 足立区
    channels:
      - id: sms
        kind: twilio
        account_sid: "AC{"0" * 32}"
        auth_token: env:SURGE_TWILIO_TOKEN
        from: "+815012345678"
        to: ["+819011110001", "+819011110002"]
        api_base: "http://127.0.0.1:{closed_port()}"
        surge: {{rate: 100, duration: 5m}}
"""
    registry = load_registry(write_registry(text))  # default caps: 100 messages per run
    async with Drill(registry, journal, live=True) as drill:
        with pytest.raises(SurgeRefused) as info:
            # 10 msg/s for 30 s = 300 SMS over two numbers (150 each) + probes: over the cap.
            await run_surge(drill, drill.targets()[0], SurgePlan.of([10], 30.0))
    assert "cap is 100" in str(info.value) and started == []
