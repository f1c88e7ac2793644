"""The certificate phase against a real TLS server: the Slack simulator behind trustme certificates.

The check trusts the test CA the way a deployment would name its own
(``SSL_CERT_FILE``); the probe's own client gets the same trust through the
drill's shared session. What is asserted is what the certificate says: its
``notAfter`` comes back to the second, an expired one fails the TLS phase with
the date still reported, a soon-expiring one passes with few days left.
"""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import trustme

from probes.base import ProbeEnv
from probes.chat.slack import SlackProbe
from probes.endpoint import verify_context
from tests.chat.farends import SimFarEnd

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def trusted(ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """Trust the test CA: for the check (SSL_CERT_FILE) and for the probe's own session."""
    pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    monkeypatch.setenv("SSL_CERT_FILE", str(pem))
    assert verify_context().cert_store_stats()["x509_ca"] >= 1
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def _tls_end(
    ca: trustme.CA,
    env: ProbeEnv,
    trust: ssl.SSLContext,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> SimFarEnd:
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", not_before=not_before, not_after=not_after).configure_cert(server)
    env.shared["aiohttp"] = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=trust), trust_env=False
    )
    end = SimFarEnd(env, SlackProbe)
    end.sim.ssl_context = server
    return await end.start()


@pytest.fixture
async def ends() -> AsyncIterator[list[SimFarEnd]]:
    started: list[SimFarEnd] = []
    yield started
    for end in started:
        await end.close()


async def test_soon_expiring_certificate_passes_and_says_when(
    ca: trustme.CA, env: ProbeEnv, trusted: ssl.SSLContext, ends: list[SimFarEnd]
) -> None:
    expires = NOW + dt.timedelta(days=5)
    end = await _tls_end(ca, env, trusted, NOW - dt.timedelta(days=85), expires)
    ends.append(end)
    probe = await end.channel()
    assert probe.settings.base_url.startswith("https://")  # type: ignore[attr-defined]
    report = await probe.preflight()  # type: ignore[attr-defined]
    assert report.ok, report.reason
    assert report.phase("api.tls").detail.startswith("TLSv1")
    [cert] = report.certificates
    assert (cert.endpoint, cert.host, cert.port) == ("api", "127.0.0.1", end.sim.port)
    assert cert.not_after == expires.timestamp()  # to the second, from the peer's certificate
    assert 4.99 < cert.days_left() <= 5.0
    assert end.sim.ledger.entries() == []


async def test_expired_certificate_fails_tls_and_still_reports_its_date(
    ca: trustme.CA, env: ProbeEnv, trusted: ssl.SSLContext, ends: list[SimFarEnd]
) -> None:
    expired = NOW - dt.timedelta(days=2)
    end = await _tls_end(ca, env, trusted, NOW - dt.timedelta(days=92), expired)
    ends.append(end)
    probe = await end.channel()
    report = await probe.preflight()  # type: ignore[attr-defined]
    assert [p.name for p in report.phases] == ["api.dns", "api.connect", "api.tls"]
    failure = report.failure
    assert failure is not None and failure.code == "tls"
    assert "expired" in failure.reason.en  # type: ignore[union-attr]
    [cert] = report.certificates
    assert cert.not_after == expired.timestamp() and cert.days_left() < -1.99
    assert end.sim.ledger.entries() == []


async def test_untrusted_certificate_fails_tls(
    ca: trustme.CA, env: ProbeEnv, ends: list[SimFarEnd]
) -> None:
    # No SSL_CERT_FILE here: the system store does not know the test CA.
    end = await _tls_end(
        ca,
        env,
        ssl.create_default_context(),
        NOW - dt.timedelta(days=1),
        NOW + dt.timedelta(days=60),
    )
    ends.append(end)
    report = await (await end.channel()).preflight()  # type: ignore[attr-defined]
    assert report.failure is not None and report.failure.name == "api.tls"
    assert "certificate" in report.failure.reason.en  # type: ignore[union-attr]
