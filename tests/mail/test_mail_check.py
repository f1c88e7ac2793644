"""Reachability without sending: SMTP banner/EHLO/STARTTLS/AUTH, IMAP login, cert expiry."""

from __future__ import annotations

import pytest

from probes.base import ProbeEnv
from probes.mail.check import check_mail
from probes.mail.probe import MailProbe
from probes.settings import SecretRef
from probes.sim.base import closed_port
from tests.mail.support import imap_settings, mail_settings

pytestmark = pytest.mark.servers


async def test_check_walks_every_step_and_records_expiry(clean_front, dovecot, mail_ca):
    imap = imap_settings(
        dovecot, "tls", security="tls", port=dovecot.imaps_port, ca_file=mail_ca.ca_file
    )
    settings = mail_settings(
        clean_front,
        dovecot,
        "tls",
        imap=imap,
        smtp={"security": "starttls", "ca_file": mail_ca.ca_file},
    )
    accepted_before = clean_front.accepted
    report = await MailProbe("mail", settings, ProbeEnv()).check()
    assert report.ok, report.reason
    assert [s.name for s in report.steps] == [
        "smtp.connect",
        "smtp.ehlo",
        "smtp.starttls",
        "smtp.auth",
        "imap.login",
    ]
    assert "front.test" in report.steps[0].detail  # the banner
    assert "auth" in report.smtp.extensions
    assert report.tls_days_left > 300 and report.imap_tls_days_left > 300
    assert report.insecure is False
    assert clean_front.accepted == accepted_before  # nothing was sent


async def test_check_flags_plain_smtp_as_insecure(clean_front, dovecot):
    settings = mail_settings(clean_front, dovecot)
    report = await check_mail(settings.smtp, settings.imap)
    assert report.ok, report.reason
    assert report.insecure is True
    assert report.tls_days_left is None


async def test_check_names_the_failing_step(clean_front, dovecot, fresh_dovecot):
    bad_smtp = mail_settings(clean_front, dovecot, smtp={"password": SecretRef.inline("x")})
    report = await check_mail(bad_smtp.smtp)
    assert not report.ok
    assert [(s.name, s.ok) for s in report.steps] == [
        ("smtp.connect", True),
        ("smtp.ehlo", True),
        ("smtp.auth", False),
    ]
    assert report.reason.startswith("smtp.auth: SMTP 認証失敗")

    refused = mail_settings(None, dovecot, smtp={"port": closed_port()})
    report = await check_mail(refused.smtp)
    assert report.steps[0].name == "smtp.connect" and not report.steps[0].ok

    bad_imap = imap_settings(fresh_dovecot, "drill", password=SecretRef.inline("x"))
    settings = mail_settings(clean_front, fresh_dovecot, imap=bad_imap)
    report = await check_mail(settings.smtp, settings.imap)
    assert report.steps[-1].name == "imap.login" and not report.steps[-1].ok
    assert "login refused" in report.reason


async def test_check_without_starttls_offered_fails_at_starttls(dovecot):
    # A front without a certificate does not offer STARTTLS: no silent downgrade.
    from tests.servers.lmtp_front import LmtpFront

    front = LmtpFront(lmtp_port=dovecot.lmtp_port).start()
    try:
        settings = mail_settings(front, dovecot, smtp={"security": "starttls"})
        report = await check_mail(settings.smtp)
    finally:
        front.stop()
    assert [(s.name, s.ok) for s in report.steps][-1] == ("smtp.starttls", False)
    assert "STARTTLS" in report.reason
