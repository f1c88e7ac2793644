"""Surge results as metrics: the journal's ``surge`` events through the one collector (no servers)."""

from __future__ import annotations

import copy
import math
import time
from typing import Any

import pytest

from drills.core.journal import Journal
from drills.core.registry import Registry, Target, parse_registry
from drills.metrics.catalogue import CATALOGUE
from drills.metrics.collector import Scope, exposition
from drills.metrics.push import grouping_keys
from drills.metrics.state import JournalView
from drills.surge.summary import SURGE_GAUGES, read_surge
from tests.metrics.support import sample_set
from tests.surge.samples import record_sample_surge

S, V = "サージ訓練", "hq"
REGISTRY = """
defaults:
  slo: {latency: 1s, reachability: 0.99}
municipalities:
  - code: "131211"
    name: 足立区
    channels:
      - {id: chat, kind: webhook, sim: {latency: 20ms}}
      - {id: mail, kind: webhook, sim: {latency: 20ms}}
  - code: "131016"
    name: 千代田区
    channels:
      - {id: chat, kind: webhook, sim: {latency: 20ms}}
"""
NAMES = [f"tsunagari_surge_{name}" for name, _, _ in SURGE_GAUGES]


@pytest.fixture
def registry() -> Registry:
    return parse_registry(REGISTRY, "surge-registry.yaml", check_secrets=False)


@pytest.fixture
def journal() -> Journal:
    j = Journal(":memory:")
    yield j
    j.close()


def target(registry: Registry, key: str) -> Target:
    return next(t for t in registry.targets() if t.key == key)


def surged_run(
    journal: Journal, registry: Registry, key: str = "131211/chat", finish: bool = True, **kw: Any
) -> str:
    run_id = journal.begin_run(scenario=S, vantage=V)
    options = {"rates": [10, 40, 80], "breaks_at": 80, "started_at": time.time(), **kw}
    record_sample_surge(
        journal, run_id, target(registry, key), scenario=S, vantage=V, **options
    )  # fmt: skip
    if finish:
        journal.finish_run(run_id)
    return run_id


def surge_values(
    journal: Journal, registry: Registry | None = None, scope: Scope | None = None
) -> dict:
    """{(metric name without the prefix, municipality_code, channel_id): value} of surge gauges."""
    out = {}
    text = exposition(journal, registry, scope or Scope()).decode()
    for (name, labels), value in sample_set(text).items():
        if name.startswith("tsunagari_surge_"):
            lab = dict(labels)
            assert (lab["scenario"], lab["vantage"]) == (S, V)
            key = (
                name.removeprefix("tsunagari_surge_"),
                lab["municipality_code"],
                lab["channel_id"],
            )
            out[key] = value
    return out


def of(values: dict, code: str = "131211", channel: str = "chat") -> dict[str, float]:
    return {n: v for (n, c, ch), v in values.items() if (c, ch) == (code, channel)}


def test_the_catalogue_has_every_surge_gauge_with_channel_labels() -> None:
    for name in NAMES:
        spec = CATALOGUE[name]
        assert spec.type == "gauge"
        assert spec.labels == (
            "municipality_code", "municipality_name", "channel_id", "channel_kind",
            "scenario", "vantage",
        )  # fmt: skip


def test_a_surge_that_broke_is_exported_as_its_event_says(
    journal: Journal, registry: Registry
) -> None:
    started = time.time()
    run_id = surged_run(journal, registry, started_at=started)
    event = journal.events(run_id, "surge")[0]["data"]
    got = of(surge_values(journal, registry))
    peak = event["steps"][-1]
    assert got == {
        "offered_peak_messages_per_second": 80.0,
        "achieved_messages_per_second": peak["load"]["rps"],
        "failure_ratio": event["totals"]["failure_ratio"],
        "load_latency_p50_seconds": event["totals"]["response_p50_ms"] / 1000,
        "load_latency_p95_seconds": event["totals"]["response_p95_ms"] / 1000,
        "slo_held": 0.0,
        "held_up_to_messages_per_second": 40.0,
        "breaking_point_messages_per_second": 80.0,
        "last_start_timestamp_seconds": pytest.approx(started),
    }
    # the sample's numbers, worked out by hand: 80 msg/s for 2 s, 10 % of it never sent
    assert peak["load"]["rps"] == 72.0 and got["failure_ratio"] > 0
    assert got["load_latency_p95_seconds"] == 0.18


def test_a_surge_that_held_has_no_breaking_point_and_no_nan(
    journal: Journal, registry: Registry
) -> None:
    surged_run(journal, registry, breaks_at=None)
    got = of(surge_values(journal, registry))
    assert got["slo_held"] == 1.0 and got["held_up_to_messages_per_second"] == 80.0
    assert "breaking_point_messages_per_second" not in got
    assert got["failure_ratio"] == 0.0
    text = exposition(journal, registry).decode()
    assert not any(math.isnan(v) for v in sample_set(text).values())


def sample_event(registry: Registry) -> dict[str, Any]:
    """The event a surge that broke at 80 msg/s journals (for editing by hand)."""
    with Journal(":memory:") as other:
        return copy.deepcopy(other.events(surged_run(other, registry), "surge")[0]["data"])


def _record(journal: Journal, data: dict[str, Any]) -> str:
    run_id = journal.begin_run(scenario=S, vantage=V)
    journal.record_event(run_id, "surge", data)
    journal.finish_run(run_id)
    return run_id


def test_hand_built_events_no_verdict_at_rest_and_stopped_early(
    journal: Journal, registry: Registry
) -> None:
    base = sample_event(registry)
    # no probe counted: no verdict, so neither held nor broken (and nothing NaN)
    blind = copy.deepcopy(base)
    for step in blind["steps"]:
        step["slo_met"] = None
    blind.update(breaking_point=None, held_up_to_rate=None)
    _record(journal, blind)
    got = of(surge_values(journal))
    assert {"slo_held", "breaking_point_messages_per_second"} & set(got) == set()
    assert "held_up_to_messages_per_second" not in got and got["offered_peak_messages_per_second"]

    # broken already at rest: breaking point 0 msg/s, nothing held
    rest = copy.deepcopy(base)
    rest.update(breaking_point={**rest["breaking_point"], "index": 0, "rate": 0.0, "at_rest": True},
                held_up_to_rate=None)  # fmt: skip
    _record(journal, rest)
    got = of(surge_values(journal))
    assert got["breaking_point_messages_per_second"] == 0.0 and got["slo_held"] == 0.0
    assert "held_up_to_messages_per_second" not in got

    # stopped before the last step ran: the peak is the highest step that ran
    stopped = copy.deepcopy(base)
    stopped["steps"][-1].update(ran_s=0.0)
    stopped["steps"][-1]["load"].update(rps=0.0, requests=0)
    stopped.update(stop_reason="stopped", steps_run=3, breaking_point=None, held_up_to_rate=40.0)
    _record(journal, stopped)
    got = of(surge_values(journal))
    assert got["offered_peak_messages_per_second"] == 40.0
    assert got["achieved_messages_per_second"] == base["steps"][2]["load"]["rps"]
    assert got["slo_held"] == 1.0 and "breaking_point_messages_per_second" not in got


def test_the_latest_ended_surge_of_each_channel_wins(journal: Journal, registry: Registry) -> None:
    surged_run(journal, registry, breaks_at=None)  # held
    surged_run(journal, registry, key="131016/chat", rates=[5, 10], breaks_at=10)
    first = surge_values(journal, registry)
    assert of(first)["slo_held"] == 1.0 and of(first, "131016")["slo_held"] == 0.0
    # a later drill surges 足立区/chat twice: the second surge (seq 2) is the latest
    run_id = surged_run(journal, registry, finish=False, breaks_at=40)
    record_sample_surge(journal, run_id, target(registry, "131211/chat"), rates=[10, 20],
                        breaks_at=20, started_at=time.time(), seq=2, scenario=S, vantage=V)  # fmt: skip
    running = surge_values(journal, registry)
    assert running == first, "a running drill must not replace the latest gauges"
    journal.finish_run(run_id)
    now = of(surge_values(journal, registry))
    assert now["breaking_point_messages_per_second"] == 20.0
    assert now["offered_peak_messages_per_second"] == 20.0
    assert of(surge_values(journal, registry), "131016")["breaking_point_messages_per_second"] == 10
    assert of(surge_values(journal, registry), "131211", "mail") == {}


@pytest.mark.parametrize(
    "broken",
    [
        {"steps": []},
        {"steps": [{"index": 0}]},
        {"slo": None},
        {"municipality_code": None},
        {"breaking_point": {"rate": "fast"}},
        {"steps_run": "4"},
    ],
    ids=lambda b: next(iter(b)),
)
def test_unreadable_surge_events_are_ignored_and_counted(
    journal: Journal, registry: Registry, broken: dict[str, Any]
) -> None:
    good = sample_event(registry)
    assert read_surge(good) is not None
    run_id = _record(journal, {**good, **broken})
    assert surge_values(journal, registry) == {}
    from drills.reporting.scorecard import build_scorecard

    card = build_scorecard(journal, run_id, registry)
    assert card["surge"] == [] and card["summary"]["unreadable_events"] == 1


def test_a_surge_only_run_pushes_its_municipality_group(
    journal: Journal, registry: Registry
) -> None:
    # No probe deliveries at all (probes_per_step=0 does that): the surge alone must still
    # put the municipality into its own Pushgateway group, with its surge gauges.
    run_id = surged_run(journal, registry, key="131016/chat", journal_probes=False)
    assert journal.deliveries(run_id) == []
    groups = grouping_keys(JournalView(journal, registry), run_id)
    assert [key for key, _ in groups] == [
        {"scenario": S, "vantage": V},
        {"scenario": S, "vantage": V, "municipality_code": "131016"},
    ]
    run_level, muni_level = (scope for _, scope in groups)
    assert surge_values(journal, registry, run_level) == {}
    assert set(of(surge_values(journal, registry, muni_level), "131016")) == {
        name for name, _, _ in SURGE_GAUGES
    }
