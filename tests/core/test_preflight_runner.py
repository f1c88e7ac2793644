"""The preflight runner: cache with its age, one check per target at a time, rate limits,
timeouts that name the running phase — against the simulators and a silent TCP server."""

from __future__ import annotations

import asyncio
import doctest
import importlib
import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from drills.core.preflight import PreflightRunner, RateLimit
from drills.core.registry import Target, parse_registry
from drills.core.simulators import SimulatorPool
from probes.base import Accepted, DrillMessage, Probe, ProbeEnv, Sighting

REGISTRY = """\
municipalities:
  - code: "131211"
    name: 足立区
    channels:
      - {{id: a, kind: webhook, sim: {{}}}}
      - {{id: b, kind: webhook, sim: {{}}}}
      - {{id: down, kind: webhook, sim: {{outage: true}}}}
      - id: silent
        kind: mail
        smtp: {{host: 127.0.0.1, port: {port}, security: plain}}
        from: drill@example.lg.jp
        to: staff@example.lg.jp
"""


@pytest.mark.parametrize(
    "module", ["probes.preflight", "drills.core.preflight", "drills.commands.check"]
)
def test_doctests(module: str) -> None:
    assert doctest.testmod(importlib.import_module(module)).failed == 0


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A TCP server that accepts and never says a word (an SMTP banner that never comes)."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


class Checks:
    """Targets of the test registry and a probe factory that counts fresh checks."""

    def __init__(self, port: int) -> None:
        self.registry = parse_registry(REGISTRY.format(port=port))
        self.pool = SimulatorPool()
        self.env = ProbeEnv()
        self.calls: Counter[str] = Counter()
        self.started: list[float] = []  # monotonic, as each fresh check begins

    def target(self, cid: str) -> Target:
        return next(t for t in self.registry.targets() if t.channel.id == cid)

    async def make(self, target: Target) -> Probe:
        self.calls[target.key] += 1
        self.started.append(time.monotonic())
        cls = target.channel.probe_class()
        if target.channel.simulated:
            settings = cls.Settings.model_validate(await self.pool.settings_for(target))
        else:
            settings = target.channel.settings
        return cls(target.key, settings, self.env)

    async def close(self) -> None:
        await self.env.aclose()
        await self.pool.stop()


@pytest.fixture
async def checks(silent_port: int) -> AsyncIterator[Checks]:
    c = Checks(silent_port)
    yield c
    await c.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_cache_answers_within_the_interval_and_says_its_age(checks):
    clock = Clock()
    runner = PreflightRunner(make_probe=checks.make, min_interval_s=60, clock=clock)
    a = checks.target("a")
    first = await runner.check(a)
    assert first.report.ok and not first.cached and checks.calls[a.key] == 1
    clock.now += 30
    again = await runner.check(a)
    assert again.cached and again.age_s == 30.0 and again.report is first.report
    assert again.to_dict()["cached"] is True and again.to_dict()["age_s"] == 30.0
    assert checks.calls[a.key] == 1  # no second login within the interval
    clock.now += 31
    fresh = await runner.check(a)
    assert not fresh.cached and checks.calls[a.key] == 2
    assert fresh.report.checked_at > first.report.checked_at


async def test_per_target_interval_overrides_the_default(checks):
    clock = Clock()
    runner = PreflightRunner(
        make_probe=checks.make, min_interval_s=60, intervals={"131211/a": 5}, clock=clock
    )
    await runner.check(checks.target("a"))
    clock.now += 6
    assert not (await runner.check(checks.target("a"))).cached
    assert checks.calls["131211/a"] == 2


async def test_concurrent_asks_share_one_check(checks):
    runner = PreflightRunner(make_probe=checks.make, min_interval_s=0)
    results = await asyncio.gather(*(runner.check(checks.target("a")) for _ in range(5)))
    assert checks.calls["131211/a"] == 1
    assert len({id(r.report) for r in results}) == 1


async def test_rate_limit_serves_the_last_answer_or_skips(checks):
    clock = Clock()
    runner = PreflightRunner(
        make_probe=checks.make,
        min_interval_s=0,
        limits={"webhook": RateLimit(1, 60.0)},
        timeout_s=10,
        clock=clock,
    )
    a, b = checks.target("a"), checks.target("b")
    first = await runner.check(a)
    clock.now += 1
    skipped = await runner.check(b)  # 59 s to wait > the 10 s timeout, nothing cached
    assert skipped.report.ok and skipped.report.skipped is not None
    assert "at most 1 times per 60 s" in skipped.report.skipped.en
    assert checks.calls[b.key] == 0
    clock.now += 1
    stale = await runner.check(a)  # limited, but a's last answer exists: served, aged
    assert stale.cached and stale.age_s == 2.0 and stale.report is first.report
    assert checks.calls[a.key] == 1
    clock.now += 59
    assert not (await runner.check(b)).cached and checks.calls[b.key] == 1


async def test_rate_limit_waits_for_its_turn_within_the_timeout(checks):
    runner = PreflightRunner(
        make_probe=checks.make, min_interval_s=0, limits={"webhook": RateLimit(1, 0.2)}
    )
    done = await runner.check_all([checks.target(c) for c in ("a", "b", "down")])
    assert [c.report.ok for c in done] == [True, True, False]
    gaps = [later - earlier for earlier, later in itertools.pairwise(checks.started)]
    assert len(gaps) == 2 and min(gaps) >= 0.2  # one check begins per 0.2 s, never sooner


async def test_timeout_names_the_phase_that_was_running(checks):
    runner = PreflightRunner(make_probe=checks.make, timeout_s=0.3)
    started = time.monotonic()
    checked = await runner.check(checks.target("silent"))
    took = time.monotonic() - started
    report = checked.report
    assert report.target == "131211/silent"
    failed = report.failure
    assert (failed.name, failed.phase, failed.code) == ("smtp.connect", "connect", "timeout")
    assert failed.reason.en == "did not finish within 0.3 s"
    assert 0.3 <= took < 10  # cut at the runner's limit, not SMTP's own 30 s timeout
    assert failed.seconds <= report.elapsed_s <= took


async def test_a_channel_down_fails_at_connect(checks):
    runner = PreflightRunner(make_probe=checks.make)
    (checked,) = await runner.check_all([checks.target("down")])
    assert checked.report.failure.name == "observer.connect"


class _Bare(Probe):
    kind = "bare"

    async def send(self, message: DrillMessage) -> Accepted:
        raise NotImplementedError

    async def observe(self, message: DrillMessage) -> Sighting:
        raise NotImplementedError


class _Broken(_Bare):
    async def preflight(self) -> Any:
        raise RuntimeError("boom")


async def test_kind_without_preflight_is_skipped_and_a_broken_one_fails(checks):
    target = checks.target("a")

    async def bare(_t: Target) -> Probe:
        return _Bare("x", target.channel.settings, ProbeEnv())

    async def broken(_t: Target) -> Probe:
        return _Broken("x", target.channel.settings, ProbeEnv())

    skipped = (await PreflightRunner(make_probe=bare).check(target)).report
    assert skipped.ok and skipped.skipped.en == "kind webhook has no preflight check"
    failed = (await PreflightRunner(make_probe=broken).check(target)).report
    assert not failed.ok and failed.failure.code == "error"
    assert failed.reason.en == "webhook.check: the check broke: RuntimeError: boom"
