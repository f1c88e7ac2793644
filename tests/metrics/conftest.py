"""Fixtures: a real Prometheus + Pushgateway, and a drill world pushed to them.

Prometheus also scrapes ``tsunagari serve``'s ``/probe`` through the documented
relabelling (:mod:`tests.metrics.preflight_world`), so the preflight panels and
alert are evaluated with the others."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from drills.core.journal import Journal
from drills.core.registry import Registry
from drills.metrics.collector import exposition
from drills.metrics.push import push_run
from tests.metrics.preflight_world import TARGETS, ProbeServer, TlsHealth, preflight_job
from tests.metrics.support import SCENARIO, labels_of, one_drill, write_registry
from tests.servers.prometheus import Prometheus, Pushgateway

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "dashboards"
RULES = DASHBOARDS / "prometheus" / "tsunagari.rules.yml"
ALERTS = (
    "TsunagariReadinessLow",
    "TsunagariChannelUnreachableTwice",
    "TsunagariDrillOverdue",
    "TsunagariTLSCertificateExpiring",
    "TsunagariPreflightFailing",
    "TsunagariRollCallIncomplete",
)


@dataclass
class Stack:
    gateway: Pushgateway
    prometheus: Prometheus
    probes: ProbeServer  # tsunagari serve with /probe, scraped as job tsunagari-preflight
    health: TlsHealth


@dataclass
class World:
    """Two drills, journalled and pushed; Prometheus has scraped both."""

    journal: Journal
    registry: Registry
    run_ids: list[str]
    t0: float  # before the first push
    exposition: str  # what the exporter produces for this journal
    stack: Stack
    checks: dict[str, str]  # target → what /probe answers for it

    def exported(self) -> dict[str, set[str]]:
        """Every metric name the exporter produces (/metrics and /probe), with its labels."""
        out = labels_of(self.exposition)
        for text in self.checks.values():
            for name, labels in labels_of(text).items():
                out.setdefault(name, set()).update(labels)
        return out


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("prometheus-stack")
    gateway = Pushgateway(base / "pushgateway")
    prometheus = Prometheus(base / "prometheus", {"pushgateway": "127.0.0.1:0"}, [RULES])
    health = TlsHealth(base)
    probes = ProbeServer(base / "probes", health)
    try:
        gateway.start()
        health.start()
        probes.start()
        prometheus.targets = {"pushgateway": gateway.address}
        prometheus.jobs = [preflight_job(probes.address)]
        prometheus.start()
        prometheus.wait_for('up{job="pushgateway"} == 1')
        yield Stack(gateway, prometheus, probes, health)
    finally:
        prometheus.stop()
        probes.stop()
        health.stop()
        gateway.stop()


def _close(a: float, b: float) -> bool:
    return abs(a - b) < 1e-3


@pytest.fixture(scope="session")
def world(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("world")
    registry = write_registry(folder)
    journal = Journal(folder / "journal.sqlite")
    prom = stack.prometheus
    t0 = time.time()
    start_ts = f'tsunagari_drill_last_start_timestamp_seconds{{scenario="{SCENARIO}"}}'
    run_ids = []
    for second in (False, True):
        run_id = one_drill(registry, journal, second=second)
        run_ids.append(run_id)
        push_run(journal, run_id, stack.gateway.url, registry)
        started = journal.run(run_id)["started_at"]
        total = len(journal.deliveries())
        # Wait for the scrape that carries this run: run-level and municipality groups.
        prom.wait_for(
            start_ts, lambda r, s=started: len(r) == 1 and _close(float(r[0]["value"][1]), s)
        )
        prom.wait_for(
            "sum(tsunagari_deliveries_total)",
            lambda r, n=total: bool(r) and float(r[0]["value"][1]) == n,
        )
    # Every /probe target scraped through the relabelling (checks cached: one check each).
    prom.wait_for('tsunagari_check_up{job="tsunagari-preflight"}', lambda r: len(r) == len(TARGETS))
    # Rules are evaluated every second: wait until each alert is at least pending.
    prom_alerts = lambda: {a["labels"]["alertname"] for a in prom.alerts()}  # noqa: E731
    deadline = time.monotonic() + 20
    while not set(ALERTS) <= prom_alerts() and time.monotonic() < deadline:
        time.sleep(0.2)
    text = exposition(journal, registry).decode()
    checks = {t: stack.probes.probe(("target", t)).text for t in TARGETS}
    try:
        yield World(journal, registry, run_ids, t0, text, stack, checks)
    finally:
        journal.close()
