"""A real surge, then its metrics and scorecard: both read what the surge journalled.

One small surge (Locust in its own process) of a simulated chat channel; the
exporter's ``tsunagari_surge_*`` gauges and the scorecard's surge section must
say what the surge measured, number for number, and the exposition must stay
``promtool``-clean.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from drills.core.journal import Journal
from drills.core.registry import load_registry
from drills.core.runner import Drill
from drills.metrics.collector import exposition
from drills.reporting.scorecard import build_scorecard
from drills.reporting.text import to_markdown
from drills.surge.report import verdict
from drills.surge.runner import surge
from tests.metrics.support import sample_set
from tests.servers.prometheus import PROMTOOL
from tests.surge.conftest import CHAT_FAST


@pytest.mark.servers  # promtool
async def test_a_real_surge_reaches_the_metrics_and_the_scorecard(
    write_registry: Callable[[str], Path], journal: Journal
) -> None:
    registry = load_registry(write_registry(CHAT_FAST))
    async with Drill(registry, journal, scenario="輻輳の確認", vantage="hq", seed=3) as drill:
        target = drill.targets()[0]
        result = await surge(drill, target, [5, 20], step_s=1.0, rest_s=1.0, timeout=5.0)
        run_id = drill.run_id
    assert run_id is not None and result.stop_reason == "completed"
    event = result.event
    assert journal.events(run_id, "surge")[0]["data"] == event

    text = exposition(journal, registry).decode()
    done = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), done.stdout
    gauges = {
        name.removeprefix("tsunagari_surge_"): value
        for (name, labels), value in sample_set(text).items()
        if name.startswith("tsunagari_surge_")
        and dict(labels)["channel_id"] == "chat"
        and dict(labels)["scenario"] == "輻輳の確認"
        and dict(labels)["vantage"] == "hq"
    }
    peak = event["steps"][-1]
    assert gauges["offered_peak_messages_per_second"] == 20.0
    assert gauges["achieved_messages_per_second"] == peak["load"]["rps"] > 0
    assert gauges["failure_ratio"] == event["totals"]["failure_ratio"]
    assert gauges["load_latency_p95_seconds"] == event["totals"]["response_p95_ms"] / 1000
    assert gauges["last_start_timestamp_seconds"] == event["started_at"]
    if result.breaking_point is None:
        assert gauges["slo_held"] == 1.0 and "breaking_point_messages_per_second" not in gauges
        assert gauges["held_up_to_messages_per_second"] == result.curve.held_up_to
    else:  # a noisy machine may break the 2 s SLO; the metrics must then say where
        assert gauges["slo_held"] == 0.0
        assert gauges["breaking_point_messages_per_second"] == result.breaking_point.step.rate

    card = build_scorecard(journal, run_id, registry)
    (entry,) = card["surge"]
    assert entry["steps"] == event["steps"] and entry["held"] is (result.breaking_point is None)
    assert entry["municipality_name"] == "千代田区" and entry["step"] == "surge 1"
    markdown = to_markdown(card, "en")
    assert verdict(event, "en") in markdown and "## Surge (load test)" in markdown
    channel = card["municipalities"][0]["channels"][0]
    assert channel["sent"] == sum(s["probes"]["sent"] for s in event["steps"]) == 9
