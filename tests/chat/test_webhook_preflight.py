"""Webhook preflight against the webhook simulator and a local HTTPS health endpoint."""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp import web

from probes.base import ProbeEnv
from probes.chat.webhook import WebhookProbe
from probes.preflight import Preflights
from probes.settings import SecretRef
from probes.sim.base import SimKnobs, closed_port
from probes.sim.chat import ChatSimulator


@pytest.fixture
async def sim() -> AsyncIterator[ChatSimulator]:
    simulator = ChatSimulator(seed=1)
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
async def env() -> AsyncIterator[ProbeEnv]:
    probe_env = ProbeEnv()
    yield probe_env
    await probe_env.aclose()


def _probe(sim: ChatSimulator, env: ProbeEnv, **over: Any) -> WebhookProbe:
    """A simulated webhook channel; *over* values may be callables of the sim's settings."""
    settings = sim.add_channel("131211/hook", SimKnobs(), {})
    settings.update({k: v(settings) if callable(v) else v for k, v in over.items()})
    return WebhookProbe("131211/hook", WebhookProbe.Settings.model_validate(settings), env)


async def test_healthy_read_back_is_checked_and_nothing_is_posted(sim, env):
    probe = _probe(sim, env)
    assert isinstance(probe, Preflights)
    report = await probe.preflight()
    assert report.ok, report.reason
    assert [(p.name, p.phase) for p in report.phases] == [
        ("observer.dns", "dns"),
        ("observer.connect", "connect"),
        ("observer.tls", "tls"),
        ("observer.read", "read"),
    ]
    assert report.phase("observer.read").detail == "HTTP 200"
    assert report.certificates == ()  # the simulator speaks http://
    assert len(sim.ledger) == 0  # nothing reached the far end's ground truth
    assert all(not room.visible for room in sim.rooms.values())


async def test_refused_connection_fails_at_connect(sim, env):
    url = f"http://127.0.0.1:{closed_port()}/rooms/x/messages"
    probe = _probe(sim, env, observer={"url": url, "auth": SecretRef.inline("t")})
    report = await probe.preflight()
    failed = report.failure
    assert (failed.name, failed.phase, failed.code) == ("observer.connect", "connect", "connect")
    assert "refused" in failed.reason.en and "拒否" in failed.reason.ja


async def test_bad_observer_credentials_fail_as_auth(sim, env):
    probe = _probe(
        sim, env, observer=lambda s: {**s["observer"], "auth": SecretRef.inline("wrong")}
    )
    report = await probe.preflight()
    failed = report.failure
    assert (failed.name, failed.phase, failed.code) == ("observer.read", "auth", "401")
    assert "observer login refused" in failed.reason.en


async def test_observer_equal_to_sender_is_refused(sim, env):
    probe = _probe(sim, env, observer=lambda s: {**s["observer"], "auth": s["auth"]})
    report = await probe.preflight()
    failed = report.failure
    assert (failed.name, failed.phase, failed.code) == (
        "observer.auth",
        "auth",
        "observer_is_sender",
    )
    assert report.phases == (failed,)  # stopped before any request


async def test_nothing_to_check_is_skipped_not_failed(sim, env):
    probe = _probe(sim, env, observer=None)
    report = await probe.preflight()
    assert report.phases == () and report.skipped is not None
    assert "health_url" in report.skipped.en and "health_url" in report.skipped.ja
    assert report.facts["observer_configured"] == 0.0


# ----------------------------------------------------------------- HTTPS health URL


_HITS: list[str] = []  # every GET the HTTPS health servers answered


async def _ok(request: web.Request) -> web.Response:
    _HITS.append(request.path)
    return web.json_response({"status": "ok"})


async def _https_health(ca: trustme.CA, folder: Path, not_after: dt.datetime) -> web.AppRunner:
    cert = ca.issue_cert(
        "127.0.0.1", not_before=not_after - dt.timedelta(days=90), not_after=not_after
    )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    app = web.Application()
    app.router.add_get("/health", _ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx).start()
    return runner


@pytest.fixture
def trusted_ca(tmp_path, monkeypatch) -> trustme.CA:
    """A CA the check trusts the way a deployment would: SSL_CERT_FILE."""
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    return ca


async def _health_probe(sim, env, trusted_ca, tmp_path, not_after) -> tuple[Any, web.AppRunner]:
    runner = await _https_health(trusted_ca, tmp_path, not_after)
    port = runner.addresses[0][1]
    client_ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    env.shared["aiohttp"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ctx))
    probe = _probe(sim, env, observer=None, health_url=f"https://127.0.0.1:{port}/health")
    return probe, runner


async def test_soon_expiring_health_certificate_shows_its_days(sim, env, trusted_ca, tmp_path):
    soon = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=5, hours=1)
    probe, runner = await _health_probe(sim, env, trusted_ca, tmp_path, soon)
    try:
        report = await probe.preflight()
    finally:
        await runner.cleanup()
    assert report.ok, report.reason
    assert [p.name for p in report.phases] == [
        "health.dns",
        "health.connect",
        "health.tls",
        "health.read",
    ]
    assert [(c.endpoint, c.not_after) for c in report.certificates] == [
        ("health", soon.timestamp())
    ]
    assert 5.0 < report.min_cert_days() < 5.05


async def test_expired_health_certificate_fails_at_tls_and_says_when(
    sim, env, trusted_ca, tmp_path
):
    past = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=1)
    probe, runner = await _health_probe(sim, env, trusted_ca, tmp_path, past)
    try:
        report = await probe.preflight()
    finally:
        await runner.cleanup()
    failed = report.failure
    assert (failed.name, failed.phase, failed.code) == ("health.tls", "tls", "tls")
    assert "expired" in failed.reason.en
    assert [c.not_after for c in report.certificates] == [past.timestamp()]


async def test_tls_module_checks_the_endpoints_without_a_request(sim, env, trusted_ca, tmp_path):
    """``module=tls`` through the runner: health and read-back endpoints up to their TLS,
    the certificate recorded, and not one HTTP request (the health server's count of GETs
    stays where it was until the full check)."""
    from drills.core.preflight import PreflightRunner
    from drills.core.registry import parse_registry

    soon = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=20)
    runner = await _https_health(trusted_ca, tmp_path, soon)
    port = runner.addresses[0][1]
    probe = _probe(sim, env, health_url=f"https://127.0.0.1:{port}/health")
    target = parse_registry(
        'municipalities:\n  - code: "131211"\n    name: 足立区\n    channels:\n'
        "      - {id: chat, kind: webhook, sim: {}}\n",
        "r.yaml",
    ).targets()[0]

    async def make(_target: Any) -> WebhookProbe:
        return probe

    checker = PreflightRunner(make_probe=make, min_interval_s=60)
    hits_before = len(_HITS)
    try:
        tls = await checker.check(target, module="tls")
        full = await checker.check(target)  # cached apart: the full check runs now
    finally:
        await runner.cleanup()
    assert tls.report.ok, tls.report.reason
    assert [p.name for p in tls.report.phases] == [
        "health.dns",
        "health.connect",
        "health.tls",
        "observer.dns",
        "observer.connect",
        "observer.tls",
    ]
    assert [(c.endpoint, c.not_after) for c in tls.report.certificates] == [
        ("health", soon.timestamp())
    ]
    assert not full.cached and full.report.phase("health.read") is not None
    assert len(_HITS) == hits_before + 1  # the full check's GET, and only it
