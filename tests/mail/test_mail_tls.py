"""TLS on both sides: a test CA (trustme) passes, an unknown CA fails; expiry is recorded."""

from __future__ import annotations

import pytest

from probes.base import ChannelUnreachable, DrillMessage
from tests.mail.support import deliver, imap_settings, mail_settings, open_fault, opened

pytestmark = pytest.mark.servers


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_smtp_tls_with_the_test_ca_passes(clean_front, dovecot, mail_ca, security):
    port = clean_front.port if security == "starttls" else clean_front.smtps_port
    settings = mail_settings(
        clean_front,
        dovecot,
        "tls",
        smtp={"security": security, "port": port, "ca_file": mail_ca.ca_file},
    )
    async with opened(settings) as [probe]:
        result = await deliver(probe, DrillMessage.new(f"TLS {security}"))
    assert result.outcome == "delivered", result
    extra = result.sighting.extra
    assert extra["insecure"] is False
    assert extra["smtp_tls"].startswith("TLSv1.")
    assert extra["tls_days_left"] > 300
    assert "TLSv1." in result.accepted.detail and "cert " in result.accepted.detail


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_smtp_tls_with_an_unknown_ca_fails_as_unreachable(
    clean_front, dovecot, mail_ca, security
):
    port = clean_front.port if security == "starttls" else clean_front.smtps_port
    settings = mail_settings(
        clean_front,
        dovecot,
        "tls",
        smtp={"security": security, "port": port, "ca_file": mail_ca.other_ca_file},
    )
    accepted_before = clean_front.accepted
    async with opened(settings) as [probe]:
        result = await deliver(probe, DrillMessage.new("unknown CA"), timeout=1.0)
    assert result.outcome == "lost"  # the channel's failure (unreachable), not the harness's
    assert isinstance(result.error, ChannelUnreachable)
    assert result.error.code == "tls"
    assert "certificate verification failed" in result.error.reason
    assert clean_front.accepted == accepted_before  # nothing was sent in the clear


async def test_smtp_tls_without_verification_still_records_expiry(clean_front, dovecot, mail_ca):
    settings = mail_settings(
        clean_front,
        dovecot,
        "tls",
        smtp={"security": "starttls", "ca_file": mail_ca.other_ca_file, "verify": False},
    )
    async with opened(settings) as [probe]:
        result = await deliver(probe, DrillMessage.new("verify off"))
    assert result.outcome == "delivered", result
    assert result.sighting.extra["tls_days_left"] > 300
    assert "unverified" in result.accepted.detail


@pytest.mark.parametrize("security", ["tls", "starttls"])
async def test_imap_tls_with_the_test_ca_passes(clean_front, dovecot, mail_ca, security):
    port = dovecot.imaps_port if security == "tls" else dovecot.imap_port
    imap = imap_settings(dovecot, "tls", security=security, port=port, ca_file=mail_ca.ca_file)
    async with opened(mail_settings(clean_front, dovecot, "tls", imap=imap)) as [probe]:
        result = await deliver(probe, DrillMessage.new(f"IMAP {security}"))
    assert result.outcome == "delivered", result
    assert result.sighting.extra["imap_insecure"] is False
    assert result.sighting.extra["imap_tls_days_left"] > 300


@pytest.mark.parametrize("security", ["tls", "starttls"])
async def test_imap_tls_with_an_unknown_ca_is_an_observer_error(
    clean_front, dovecot, mail_ca, security
):
    port = dovecot.imaps_port if security == "tls" else dovecot.imap_port
    imap = imap_settings(
        dovecot, "tls", security=security, port=port, ca_file=mail_ca.other_ca_file
    )
    fault = await open_fault(mail_settings(clean_front, dovecot, "tls", imap=imap))
    assert fault.code == "tls"
    assert "certificate verification failed" in fault.reason
