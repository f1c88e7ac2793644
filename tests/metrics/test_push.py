"""Pushgateway: grouping keys that never overwrite each other, pruning stale groups."""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from drills.core.journal import Journal
from drills.core.registry import parse_registry
from drills.metrics.collector import Scope, exposition
from drills.metrics.push import JOB, PushFailed, prune_gateway, push_run
from probes.settings import SecretRef
from probes.sim.base import closed_port, free_port
from tests.metrics.support import (
    REGISTRY_YAML,
    SCENARIO,
    VANTAGE,
    one_drill,
    run_drills,
    sample_set,
    write_registry,
)
from tests.servers.prometheus import Pushgateway

pytestmark = [pytest.mark.servers, pytest.mark.slow]


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Pushgateway]:
    gw = Pushgateway(tmp_path / "pushgateway")
    try:
        yield gw.start()
    finally:
        gw.stop()


def _groups(gw: Pushgateway) -> dict[tuple[tuple[str, str], ...], float]:
    """grouping labels -> push time."""
    return {
        tuple(sorted(g["labels"].items())): float(g["push_time_seconds"]["metrics"][0]["value"])
        for g in gw.groups()
    }


def _key(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"job": JOB, **labels}.items()))


def _gateway_samples(gw: Pushgateway, **grouping: str) -> dict:
    text = httpx.get(gw.url + "/metrics", timeout=5.0).text
    out = {}
    for (name, labels), value in sample_set(text).items():
        lab = dict(labels)
        if (
            name.startswith("tsunagari_")
            and lab.pop("job", None) == JOB
            and all(lab.get(k) == v for k, v in grouping.items())
        ):
            lab.pop("instance", None)
            out[(name, tuple(sorted(lab.items())))] = value
    return out


def test_groups_per_municipality_scenario_and_vantage(gateway: Pushgateway, tmp_path: Path) -> None:
    registry = write_registry(tmp_path)
    with Journal(tmp_path / "journal.sqlite") as journal:
        run = one_drill(registry, journal)
        pushed = push_run(journal, run, gateway.url, registry)
        base = {"scenario": SCENARIO, "vantage": VANTAGE}
        assert pushed == [base] + [
            {**base, "municipality_code": c} for c in ("131211", "133086", "134210")
        ]
        groups = _groups(gateway)
        assert set(groups) == {_key(**k) for k in pushed}

        # The same scenario from another vantage point, and another scenario: new groups only.
        [other_vantage] = run_drills(registry, journal, count=1, vantage="tama-backup")
        [other_scenario] = run_drills(registry, journal, count=1, scenario="別シナリオ")
        push_run(journal, other_vantage, gateway.url, registry)
        push_run(journal, other_scenario, gateway.url, registry)
        after = _groups(gateway)
        assert len(after) == 12
        assert all(after[k] == t for k, t in groups.items()), "a push overwrote another group"

        # What sits in the gateway is exactly what the collector says for that group.
        pushed_muni = _gateway_samples(
            gateway, scenario=SCENARIO, vantage=VANTAGE, municipality_code="133086"
        )
        # (drill_interval is in the run-level group; /metrics merges groups)
        interval = [
            k for k in pushed_muni if k[0] == "tsunagari_municipality_drill_interval_seconds"
        ]
        assert len(interval) == 1 and pushed_muni.pop(interval[0]) == 30 * 86_400
        # (so is where its office is: tsunagari_municipality_info)
        place = [k for k in pushed_muni if k[0] == "tsunagari_municipality_info"]
        assert len(place) == 1 and pushed_muni.pop(place[0]) == 1.0
        scope = Scope(SCENARIO, VANTAGE, frozenset({"133086"}), drill_level=False, schedule=False)
        assert pushed_muni == sample_set(exposition(journal, registry, scope).decode())
        assert any(n == "tsunagari_channel_reachable" for n, _ in pushed_muni)


def test_a_partial_run_leaves_other_municipalities_alone(
    gateway: Pushgateway, tmp_path: Path
) -> None:
    registry = write_registry(tmp_path)
    with Journal(tmp_path / "journal.sqlite") as journal:
        run = one_drill(registry, journal)
        push_run(journal, run, gateway.url, registry)
        before = _groups(gateway)
        okutama_before = _gateway_samples(gateway, municipality_code="133086")

        async def only_adachi() -> str:
            from drills.core.runner import Drill

            async with Drill(registry, journal, scenario=SCENARIO, vantage=VANTAGE) as drill:
                await drill.broadcast("参集", drill.targets(["131211"]), timeout=2.0)
                assert drill.run_id is not None
                return drill.run_id

        partial = asyncio.run(only_adachi())
        pushed = push_run(journal, partial, gateway.url, registry)
        assert [k.get("municipality_code") for k in pushed] == [None, "131211"]
        after = _groups(gateway)
        okutama = _key(scenario=SCENARIO, vantage=VANTAGE, municipality_code="133086")
        adachi = _key(scenario=SCENARIO, vantage=VANTAGE, municipality_code="131211")
        assert after[okutama] == before[okutama] and after[adachi] > before[adachi]
        assert _gateway_samples(gateway, municipality_code="133086") == okutama_before


def test_prune_removes_stale_groups(gateway: Pushgateway, tmp_path: Path) -> None:
    registry = write_registry(tmp_path)
    with Journal(tmp_path / "journal.sqlite") as journal:
        run = one_drill(registry, journal)
        push_run(journal, run, gateway.url, registry)
        push_run(journal, run, gateway.url, registry, job="someone-else")
        # 奥多摩町 leaves the registry.
        head, rest = REGISTRY_YAML.split('  - code: "133086"')
        smaller = parse_registry(head + '  - code: "134210"' + rest.split('  - code: "134210"')[1])
        assert [m.code for m in smaller.municipalities] == ["131211", "134210", "131016"]
        removed = prune_gateway(gateway.url, registry=smaller)
        assert [g.get("municipality_code") for g in removed] == ["133086"]
        groups = _groups(gateway)
        assert _key(scenario=SCENARIO, vantage=VANTAGE, municipality_code="133086") not in groups
        assert _key(scenario=SCENARIO, vantage=VANTAGE, municipality_code="131211") in groups
        # A journal without this scenario: its groups are stale.
        with Journal(tmp_path / "other.sqlite") as other:
            removed = prune_gateway(gateway.url, journal=other)
        assert len(removed) == 3
        assert all(dict(k)["job"] == "someone-else" for k in _groups(gateway)), (
            "only our job is pruned"
        )
        assert len(_groups(gateway)) == 4


def test_prune_by_age(gateway: Pushgateway, tmp_path: Path) -> None:
    registry = write_registry(tmp_path)
    with Journal(tmp_path / "journal.sqlite") as journal:
        push_run(journal, one_drill(registry, journal), gateway.url, registry)
    assert prune_gateway(gateway.url, older_than_s=3600) == []
    assert len(prune_gateway(gateway.url, older_than_s=0)) == 4
    assert _groups(gateway) == {}


def test_push_failure_is_a_harness_error_without_credentials(tmp_path: Path) -> None:
    registry = write_registry(tmp_path)
    with Journal(tmp_path / "journal.sqlite") as journal:
        run = one_drill(registry, journal)
        url = f"http://drill:hunter2@127.0.0.1:{closed_port()}"
        with pytest.raises(PushFailed) as caught:
            push_run(journal, run, url, registry, timeout=2.0)
    assert "hunter2" not in str(caught.value)
    assert f"127.0.0.1:{url.rsplit(':', 1)[1]}" in str(caught.value)


def test_push_with_basic_auth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A recording stand-in for a Pushgateway behind basic auth (Pushgateway's
    # --web.config.file needs a bcrypt hash, which this machine cannot make).
    seen: list[tuple[str, str, str | None]] = []
    port = free_port()
    ready = threading.Event()
    loop = asyncio.new_event_loop()

    async def record(request: web.Request) -> web.Response:
        await request.read()
        seen.append((request.method, request.path, request.headers.get("Authorization")))
        return web.Response(status=200)

    async def serve() -> web.AppRunner:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", record)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        return runner

    runner = loop.run_until_complete(serve())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("TSG_TEST_GATEWAY_PW", "gw-secret")
        registry = write_registry(tmp_path)
        with Journal(tmp_path / "journal.sqlite") as journal:
            run = one_drill(registry, journal)
            push_run(
                journal,
                run,
                f"http://127.0.0.1:{port}",
                registry,
                username="pusher",
                password=SecretRef.parse("env:TSG_TEST_GATEWAY_PW"),
            )
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.run_until_complete(runner.cleanup())
        loop.close()
    expected = "Basic " + base64.b64encode(b"pusher:gw-secret").decode()
    assert len(seen) == 4 and all(m == "PUT" and auth == expected for m, _, auth in seen)
    assert seen[0][1].startswith("/metrics/job/tsunagari/")
