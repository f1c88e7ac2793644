"""Preflight of a Twilio channel against the local Twilio, through the official client.

Every case asserts the check sent nothing: no create reached the simulator,
every request was a GET, and its ledger (ground truth of every message) is empty.
"""

from __future__ import annotations

import datetime as dt
import doctest
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp import web

from probes.base import ProbeEnv
from probes.endpoint import NOT_TLS
from probes.preflight import PreflightReport, Preflights
from probes.sim.base import SimKnobs, closed_port
from probes.sim.twilio import TwilioSimulator
from probes.sms.probe import StatusCallbackSettings, TwilioProbe, TwilioSettings

CAPS = {"max_messages": 10, "max_segments": 30, "max_cost": 5.0}
PHASES = [
    "api.dns",
    "api.connect",
    "api.tls",
    "account.auth",
    "account.status",
    "number.sms",
    "account.balance",
]


def sent_nothing(sim: TwilioSimulator) -> None:
    assert sim.creates() == [] and sim.messages == {}
    assert {r.method for r in sim.requests} <= {"GET"}
    assert sim.ledger.entries() == []


def failed_at(report: PreflightReport) -> tuple[str, str | None]:
    failure = report.failure
    assert failure is not None and failure.reason is not None
    assert failure.reason.ja != failure.reason.en
    assert report.phases[-1] is failure
    return failure.name, failure.code


def changed(probe: TwilioProbe, **updates: Any) -> TwilioProbe:
    """The same channel with some settings changed (after the simulator filled them in)."""
    return TwilioProbe(probe.channel_id, probe.settings.model_copy(update=updates), probe.env)


async def check(probe: TwilioProbe) -> PreflightReport:
    assert isinstance(probe, Preflights)
    return await probe.preflight()


async def test_healthy_account_number_and_balance(make_probe: Any, sim: TwilioSimulator) -> None:
    probe = await make_probe(open_probe=False, caps=CAPS)
    report = await check(probe)
    assert report.ok, report.reason
    assert [p.name for p in report.phases] == PHASES
    assert report.phase("api.tls").detail == NOT_TLS and report.certificates == ()  # type: ignore[union-attr]
    assert report.phase("account.status").detail == "active"  # type: ignore[union-attr]
    # Numbers, for the metrics: the simulator's balance and the registry's cap.
    assert report.facts["twilio_balance"] == 20.0 and report.facts["cost_cap"] == 5.0
    assert report.facts["observer_configured"] == 1.0  # polling confirms by receipt
    sent_nothing(sim)
    assert len(sim.requests) == 3  # Account, IncomingPhoneNumbers, Balance: one read each
    assert probe.settings.auth_token.reveal() not in json.dumps(report.to_dict())


async def test_balance_below_the_cap_fails(make_probe: Any, sim: TwilioSimulator) -> None:
    probe = await make_probe(open_probe=False, caps=CAPS)
    sim.account_book.set_balance(sim.account_of(probe.channel_id), 1.25)
    report = await check(probe)
    assert failed_at(report) == ("account.balance", "balance_below_cap")
    assert report.facts["twilio_balance"] == 1.25 and report.facts["cost_cap"] == 5.0
    assert "top up" in report.failure.reason.en  # type: ignore[union-attr]
    sent_nothing(sim)


async def test_cap_from_price_when_no_max_cost(make_probe: Any, sim: TwilioSimulator) -> None:
    # 30 segments at 0.8 → a run may cost 24; the simulator's balance is 20.
    probe = await make_probe(open_probe=False, caps={"max_segments": 30}, price_per_segment=0.8)
    report = await check(probe)
    assert failed_at(report) == ("account.balance", "balance_below_cap")
    assert report.facts["cost_cap"] == 24.0


async def test_number_without_sms_capability_fails(make_probe: Any, sim: TwilioSimulator) -> None:
    probe = await make_probe(open_probe=False, caps=CAPS)
    sid = sim.account_of(probe.channel_id)
    sim.account_book.set_number(sid, probe.settings.from_, sms=False)
    report = await check(probe)
    assert failed_at(report) == ("number.sms", "number_not_sms")
    assert "capabilities.sms" in report.failure.reason.en  # type: ignore[union-attr]
    sent_nothing(sim)


@pytest.mark.parametrize(
    ("knob", "phase", "code"),
    [
        ({"status": "suspended"}, "account.status", "account_suspended"),
        ({"number_status": "pending"}, "number.sms", "number_status"),
        ({"reject": "auth"}, "account.auth", "20003"),
    ],
)
async def test_account_faults(
    make_probe: Any, sim: TwilioSimulator, knob: dict[str, str], phase: str, code: str
) -> None:
    probe = await make_probe(open_probe=False, caps=CAPS, knobs={"reject": knob.get("reject")})
    sid = sim.account_of(probe.channel_id)
    if "status" in knob:
        sim.account_book.set_status(sid, knob["status"])
    if "number_status" in knob:
        sim.account_book.set_number(sid, probe.settings.from_, status=knob["number_status"])
    report = await check(probe)
    assert failed_at(report) == (phase, code)
    sent_nothing(sim)


async def test_refused_connection_fails_at_connect(make_probe: Any, sim: TwilioSimulator) -> None:
    probe = await make_probe(open_probe=False)
    probe = changed(probe, api_base=f"http://127.0.0.1:{closed_port()}")
    report = await check(probe)
    assert failed_at(report) == ("api.connect", "connect")
    assert "refused" in report.failure.reason.en  # type: ignore[union-attr]
    sent_nothing(sim)


async def test_nothing_to_confirm_by_is_said(make_probe: Any, sim: TwilioSimulator) -> None:
    probe = await make_probe(open_probe=False, caps=CAPS, poll_interval=None)
    report = await check(probe)
    assert report.ok and report.facts["observer_configured"] == 0.0


@pytest.fixture
async def front() -> AsyncIterator[str]:
    """A public front for the status callbacks (what a reverse proxy would be)."""
    app = web.Application()
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


@pytest.mark.parametrize("reachable", [True, False])
async def test_callback_url_reachability(
    make_probe: Any, sim: TwilioSimulator, front: str, reachable: bool
) -> None:
    url = front if reachable else f"http://127.0.0.1:{closed_port()}"
    probe = await make_probe(open_probe=False, caps=CAPS)
    callback = StatusCallbackSettings(public_url=url, listen_port=closed_port())
    probe = changed(probe, status_callback=callback)
    report = await check(probe)
    if reachable:
        assert report.ok, report.reason
        assert report.phases[-1].name == "callback.http"
        assert report.phases[-1].detail == "HTTP 404"  # an answer: the front is there
    else:
        assert failed_at(report) == ("callback.connect", "connect")
    sent_nothing(sim)


async def test_a_public_url_that_is_the_listener_itself_is_not_checked_between_drills(
    make_probe: Any, sim: TwilioSimulator
) -> None:
    # The demo's simulated channels (status_callback: {}) point public_url at the listener,
    # which runs only while a drill is open: checking it would always fail.
    port = closed_port()
    probe = await make_probe(open_probe=False, caps=CAPS)
    own = StatusCallbackSettings(public_url=f"http://127.0.0.1:{port}", listen_port=port)
    report = await check(changed(probe, status_callback=own))
    assert report.ok, report.reason
    assert [p.name for p in report.phases] == PHASES
    assert report.facts["callback_checked"] == 0.0
    sent_nothing(sim)


async def test_api_certificate_over_https(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The API's certificate (trustme, 10 days left) comes back from the TLS phase."""
    ca = trustme.CA()
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    expires = now + dt.timedelta(days=10)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", not_after=expires).configure_cert(server)
    pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    monkeypatch.setenv("SSL_CERT_FILE", str(pem))  # the check trusts it as a deployment would
    trust = ssl.create_default_context()
    ca.configure_trust(trust)
    sim = TwilioSimulator(seed=3)
    sim.ssl_context = server
    await sim.start()
    env = ProbeEnv()
    env.shared["aiohttp"] = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=trust), trust_env=False
    )
    try:
        raw = {"from": "+815012345678", "to": ["+819012345678"], "caps": CAPS}
        settings = sim.add_channel("131211/sms-tls", SimKnobs(), raw)
        assert settings["api_base"].startswith("https://")
        probe = TwilioProbe("131211/sms-tls", TwilioSettings.model_validate(settings), env)
        report = await check(probe)
        assert report.ok, report.reason
        [cert] = report.certificates
        assert (cert.endpoint, cert.port) == ("api", sim.port)
        assert cert.not_after == expires.timestamp() and 9.99 < cert.days_left() <= 10.0
        sent_nothing(sim)
    finally:
        await env.aclose()
        await sim.stop()


def test_doctests() -> None:
    import probes.sms.preflight

    result = doctest.testmod(probes.sms.preflight)
    assert result.failed == 0 and result.attempted >= 4


@pytest.mark.parametrize(("status", "phase"), [(401, "auth"), (404, None)])
async def test_a_twilio_401_in_any_phase_is_an_auth_failure(status: int, phase: str | None) -> None:
    """The number or balance read answered 401: the credentials, not the number."""
    from twilio.base.exceptions import TwilioRestException

    from probes.sms.preflight import _twilio

    async def refused() -> None:
        raise TwilioRestException(status, "https://api.twilio.com/x", "refused", code=20003)

    with pytest.raises(Exception) as raised:
        await _twilio(refused(), 5.0)
    assert getattr(raised.value, "phase", None) == phase
    assert getattr(raised.value, "code", None) == "20003"


async def test_tls_module_makes_no_api_request(make_probe: Any, sim: TwilioSimulator) -> None:
    from drills.core.preflight_tls import tls_check

    probe = await make_probe(open_probe=False, caps=CAPS)
    report = await tls_check(probe)
    assert report.ok, report.reason
    assert [p.name for p in report.phases] == PHASES[:3]
    assert sim.requests == []  # not one Twilio API call: no credential used
