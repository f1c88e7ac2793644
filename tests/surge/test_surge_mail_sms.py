"""Surge load over SMTP and the Twilio API: Locust's counts against what the far end received."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from drills.surge.config import SurgeConfig
from drills.surge.endpoint import Endpoint, endpoint_for
from drills.surge.plan import SurgePlan
from drills.surge.process import LocustRun, Progress, Topology
from drills.surge.runner import LOAD_TEXT
from drills.surge.stats import LoadStats, by_step
from probes.base import DEFAULT_MARKER, find_tokens
from probes.settings import SecretRef
from tests.surge.sinks import SmtpSink, TwilioSink


async def _load(
    endpoint: Endpoint, plan: SurgePlan, workdir: Path
) -> tuple[Progress, dict[int, LoadStats]]:
    config = SurgeConfig(
        endpoint.load,
        endpoint.params,
        DEFAULT_MARKER,
        LOAD_TEXT,
        plan.to_dict(),
        str(workdir / "progress.jsonl"),
    )
    run = LocustRun(config, endpoint.host, Topology(), workdir, endpoint.secrets)
    progress = await run.drive(plan)
    return progress, by_step(run.stats())


async def test_smtp_surge_delivers_marked_mail_counted_exactly(
    smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    smtp = SimpleNamespace(
        host="127.0.0.1", port=smtp_sink.port, security="plain", user=None, password=None
    )
    settings = SimpleNamespace(
        smtp=smtp, sender="drill@adachi.example.lg.jp", to=["watch@adachi.example.lg.jp"]
    )
    plan = SurgePlan.of([20, 40], step_s=1.5, users=8)
    progress, steps = await _load(endpoint_for("mail", settings), plan, tmp_path)  # type: ignore[arg-type]

    assert progress.stop_reason == "completed" and progress.steps_seen == [0, 1]
    total = LoadStats.merge(steps.values())
    assert total.failures == 0 and total.requests == len(smtp_sink.subjects)
    assert 25 <= steps[0].requests <= 35 and 50 <= steps[1].requests <= 70
    assert all(s.startswith(DEFAULT_MARKER) for s in smtp_sink.subjects)
    assert len(set(smtp_sink.tokens)) == total.requests  # one fresh drill token per mail
    assert progress.tallies[0]["requests"] == total.requests


async def test_twilio_surge_creates_messages_counted_exactly(
    twilio_sink: TwilioSink, tmp_path: Path
) -> None:
    numbers = ["+819011110001", "+819011110002"]
    settings = SimpleNamespace(
        account_sid=twilio_sink.sid,
        auth_token=SecretRef.inline(twilio_sink.token),
        from_="+815012345678",
        to=numbers,
        api_base=twilio_sink.base_url,
    )
    plan = SurgePlan.of([20, 40], step_s=1.5, users=8)
    progress, steps = await _load(endpoint_for("twilio", settings), plan, tmp_path)  # type: ignore[arg-type]

    total = LoadStats.merge(steps.values())
    assert total.failures == 0 and twilio_sink.refused == 0
    assert total.requests == len(twilio_sink.bodies) == progress.tallies[0]["requests"]
    assert 50 <= steps[1].requests <= 70
    assert set(twilio_sink.recipients) == set(numbers)
    assert all(
        b.startswith(DEFAULT_MARKER) and len(find_tokens(b)) == 1 for b in twilio_sink.bodies
    )


async def test_refused_load_is_counted_as_failures(twilio_sink: TwilioSink, tmp_path: Path) -> None:
    settings = SimpleNamespace(
        account_sid=twilio_sink.sid,
        auth_token=SecretRef.inline("not-the-token"),
        from_="+815012345678",
        to=["+819011110001"],
        api_base=twilio_sink.base_url,
    )
    plan = SurgePlan.of([20], step_s=1.0, users=4)
    _, steps = await _load(endpoint_for("twilio", settings), plan, tmp_path)  # type: ignore[arg-type]
    assert steps[0].requests == steps[0].failures == twilio_sink.refused > 0
    assert twilio_sink.bodies == []
