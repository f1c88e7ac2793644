"""``/probe`` in the world: scraped by a real Prometheus through the documented relabelling.

The world's Prometheus scrapes ``tsunagari serve``'s ``/probe`` every second as
the job in ``dashboards/prometheus/prometheus.preflight.yml`` does
(:mod:`tests.metrics.preflight_world`); the panels and the alert rules are
evaluated against it by ``test_prometheus_integration``. Here: what reached
Prometheus, the cache (counted at the far end), the scrape-timeout header, and
the 400s.
"""

from __future__ import annotations

import time

import httpx
import pytest

from drills.metrics.probe import TIMEOUT_HEADER, TIMEOUT_MARGIN_S
from tests.metrics.conftest import World
from tests.metrics.preflight_world import FAILING, HEALTHY, TARGETS
from tests.metrics.support import sample_set

pytestmark = [pytest.mark.servers, pytest.mark.slow]


def _by_instance(world: World, expr: str) -> dict[str, float]:
    result = world.stack.prometheus.query(expr)
    return {r["metric"]["instance"]: float(r["value"][1]) for r in result}


def test_prometheus_scrapes_each_target_through_the_relabelling(world: World) -> None:
    up = _by_instance(world, 'up{job="tsunagari-preflight"}')
    assert up == dict.fromkeys(TARGETS, 1.0)  # instance = the registry key, every scrape fine
    checks = _by_instance(world, "tsunagari_check_up")
    assert checks == {**dict.fromkeys(TARGETS, 1.0), FAILING: 0.0}
    series = world.stack.prometheus.query(f'tsunagari_check_up{{instance="{HEALTHY}"}}')
    assert series[0]["metric"]["municipality_name"] == "足立区"
    assert series[0]["metric"]["channel_kind"] == "webhook"
    # where the failing one broke, and why it is not the network
    broken = world.stack.prometheus.query("tsunagari_check_phase_ok == 0")
    assert [
        (r["metric"]["instance"], r["metric"]["stage"], r["metric"]["phase"]) for r in broken
    ] == [(FAILING, "sender.auth", "auth")]
    assert _by_instance(world, "tsunagari_check_auth_ok") == {
        "131211/sms": 1.0,
        FAILING: 0.0,
    }  # the webhooks have no login to check


def test_twilio_balance_and_certificate_expiry_reach_prometheus(world: World) -> None:
    assert _by_instance(world, "tsunagari_check_twilio_cost_cap") == {"131211/sms": 5.0}
    balance = _by_instance(world, "tsunagari_check_twilio_balance")
    assert set(balance) == {"131211/sms"} and balance["131211/sms"] > 5.0
    expiry = world.stack.prometheus.query("tsunagari_check_tls_cert_expiry_timestamp_seconds")
    assert [(r["metric"]["instance"], r["metric"]["endpoint"]) for r in expiry] == [
        ("131016/web", "health")
    ]
    # exactly the notAfter the test server's certificate was issued with
    assert float(expiry[0]["value"][1]) == world.stack.health.not_after.timestamp()


def test_scrapes_within_the_minimum_interval_are_served_from_the_cache(world: World) -> None:
    prom = world.stack.prometheus
    # Prometheus has scraped 131016/web several times (every second) …
    prom.wait_for(
        'count_over_time(up{instance="131016/web"}[5m]) >= 3', lambda r: len(r) == 1, timeout=10
    )
    # … and the health URL was asked once: the other scrapes were answered from the cache
    assert world.stack.health.hits == 1
    answer = world.stack.probes.probe(("target", "131016/web"))
    assert "# 前回のチェック結果" in answer.text and "cached result" in answer.text
    age = sample_set(answer.text)
    (value,) = [v for (name, _), v in age.items() if name == "tsunagari_check_cache_age_seconds"]
    assert value > 0
    assert world.stack.health.hits == 1


def test_the_check_gets_the_scrape_timeout_minus_the_margin(world: World) -> None:
    scrape_timeout = 1.3
    t0 = time.monotonic()
    answer = world.stack.probes.probe(
        ("target", "131016/hole"), **{TIMEOUT_HEADER: str(scrape_timeout)}
    )
    wall = time.monotonic() - t0
    limit = scrape_timeout - TIMEOUT_MARGIN_S
    assert answer.status_code == 200
    assert f"did not finish within {limit:g} s" in answer.text  # the phase that ran out
    samples = sample_set(answer.text)
    assert [v for (n, _), v in samples.items() if n == "tsunagari_check_up"] == [0.0]
    # answered before Prometheus would give up on the scrape
    assert limit <= wall < scrape_timeout


@pytest.mark.parametrize(
    ("params", "headers", "says"),
    [
        ([("target", "999999/nope")], {}, "unknown target 999999/nope: not in the registry"),
        # a long or odd target is quoted shortened and escaped, never echoed whole
        ([("target", "9" * 3000)], {}, "unknown target " + "9" * 80 + ": not in"),
        ([("target", "131211/チャット\x1b[2J")], {}, "unknown target 131211/\\u30c1"),
        ([], {}, "give exactly one target"),
        ([("target", HEALTHY), ("target", FAILING)], {}, "give exactly one target"),
        ([("target", HEALTHY)], {TIMEOUT_HEADER: "soon"}, "must be a positive number"),
        ([("target", HEALTHY)], {TIMEOUT_HEADER: "-1"}, "must be a positive number"),
    ],
    ids=["unknown", "long", "escaped", "missing", "two", "bad-header", "negative-header"],
)
def test_bad_requests_get_a_clear_400(
    world: World, params: list[tuple[str, str]], headers: dict[str, str], says: str
) -> None:
    answer = world.stack.probes.probe(*params, **headers)
    assert answer.status_code == 400
    assert says in answer.text
    ja, _, en = answer.text.partition(" / ")
    assert ja.startswith("400 ") and not ja.isascii() and en  # Japanese first, then English
    assert "Traceback" not in world.stack.probes.stderr.read_text(encoding="utf-8")


def test_probe_needs_a_registry(world: World) -> None:
    from tests.metrics.test_serve import Exporter

    exporter = Exporter("--journal", str(world.stack.probes.journal))
    try:
        exporter.start()
        answer = httpx.get(f"http://127.0.0.1:{exporter.port}/probe?target={HEALTHY}")
        assert answer.status_code == 400
        assert "/probe needs tsunagari serve --registry" in answer.text
    finally:
        exporter.kill()
