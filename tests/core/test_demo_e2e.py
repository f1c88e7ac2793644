"""End to end: `tsunagari demo` as a user runs it, on the local simulators."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict

import pytest

from drills.core.delivery import Outcome
from drills.core.journal import Journal
from drills.core.registry import load_registry
from drills.operator.demo import demo_registry_path

CONTRACT_CHANNEL_KEYS = {
    "id",
    "kind",
    "sent",
    "delivered",
    "late",
    "lost",
    "rejected",
    "error",
    "reachability",
    "latency_p50_s",
    "latency_p95_s",
    "slo_met",
}


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    env = {**os.environ, "LANG": "ja_JP.UTF-8", "COLUMNS": "160"}
    env.pop("TSUNAGARI_LANG", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "drills.cli",
            "demo",
            "--out",
            str(out),
            "--seed",
            "1",
            "--repeat",
            "4",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    return proc, out


def test_demo_exits_0_and_prints_the_readiness_table(demo_run):
    proc, out = demo_run
    assert proc.returncode == 0, proc.stderr
    assert "即応性スコアカード" in proc.stdout
    for name in ("足立区", "千代田区", "新宿区", "八王子市", "奥多摩町", "小笠原村"):
        assert name in proc.stdout
    assert "\x1b[" not in proc.stdout  # not a TTY: no colour, no progress bar
    assert (out / "journal.sqlite").is_file() and (out / "scorecard.json").is_file()


def test_scorecard_contract_and_healthy_above_degraded(demo_run):
    _, out = demo_run
    card = json.loads((out / "scorecard.json").read_text(encoding="utf-8"))
    assert {"run_id", "started_at", "finished_at", "municipalities"} <= card.keys()
    assert card["started_at"].endswith("+09:00")  # Asia/Tokyo
    registry = load_registry(demo_registry_path())
    tags = {m.code: set(m.tags) for m in registry.municipalities}
    scores = {}
    for m in card["municipalities"]:
        assert {"code", "name", "score", "grade", "channels"} <= m.keys()
        assert 0 <= m["score"] <= 100
        for ch in m["channels"]:
            assert CONTRACT_CHANNEL_KEYS <= ch.keys()
        assert {ch["kind"] for ch in m["channels"]} == {"webhook", "mail", "twilio"}
        scores[m["code"]] = m["score"]
    healthy = [scores[c] for c, t in tags.items() if "healthy" in t]
    degraded = [scores[c] for c, t in tags.items() if "degraded" in t]
    assert len(healthy) >= 2 and len(degraded) >= 4
    assert min(healthy) > max(degraded), scores


def test_latencies_agree_with_injected_and_outages_never_deliver(demo_run):
    _, out = demo_run
    card = json.loads((out / "scorecard.json").read_text(encoding="utf-8"))
    registry = load_registry(demo_registry_path())
    channels = {(m.code, c.id): c for m in registry.municipalities for c in m.channels}
    journal = Journal(out / "journal.sqlite")
    try:
        deliveries = journal.deliveries(card["run_id"])
    finally:
        journal.close()
    by_channel = defaultdict(list)
    for d in deliveries:
        by_channel[(d.municipality_code, d.channel_id)].append(d)
    assert set(by_channel) == set(channels)
    checked = 0
    for key, items in by_channel.items():
        sim = channels[key].sim
        outcomes = {d.outcome for d in items}
        if sim.outage:
            assert outcomes <= {Outcome.LOST, Outcome.REJECTED}, key
            continue
        if sim.reject:
            assert outcomes == {Outcome.REJECTED}, key
            continue
        if sim.latency.dist != "fixed" or sim.rate_limit or sim.loss:
            continue
        injected = sim.latency.value
        latencies = [d.latency_s for d in items if d.outcome.reached]
        assert len(latencies) == len(items), (key, outcomes)
        # never earlier than the far end could show it; how much later is judged per
        # record against the simulators' ledgers (the ground-truth test below), not
        # against a guessed margin around the injected value (a loaded machine adds lag)
        assert all(lat >= injected for lat in latencies), (key, latencies)
        checked += 1
    assert checked >= 12


def test_demo_checks_every_record_against_the_ground_truth(demo_run):
    proc, out = demo_run
    line = next(ln for ln in proc.stdout.splitlines() if "ground truth" in ln)
    with Journal(out / "journal.sqlite") as j:
        total = len(j.deliveries(j.latest_run()["run_id"]))
    assert f"{total} 件一致 / 0 件不一致" in line, proc.stdout


def test_demo_is_too_small_to_compare(demo_run):
    _, out = demo_run
    card = json.loads((out / "scorecard.json").read_text(encoding="utf-8"))
    scored = sum(m["score"] is not None for m in card["municipalities"])
    assert scored == 7
    assert (card["standing"]["score"]["n"], card["standing"]["score"]["compared"]) == (7, False)
    assert all(m["standing"]["score"]["rank"] is None for m in card["municipalities"])
    html = (out / "scorecard.html").read_text(encoding="utf-8")
    assert "比較するには参加団体が少なすぎます（7 団体、10 団体以上で比較）" in html
