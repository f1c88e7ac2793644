"""Mail preflight: every phase timed, both certificates, nothing sent (real Dovecot, Postfix)."""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path

import pytest
import trustme

from probes.base import ProbeEnv
from probes.mail.check import preflight_mail
from probes.mail.probe import MailProbe
from probes.preflight import Preflights
from probes.settings import SecretRef
from probes.sim.base import closed_port
from tests.mail.support import USERS, imap_settings, mail_settings
from tests.servers.dovecot import Dovecot
from tests.servers.lmtp_front import LmtpFront

pytestmark = pytest.mark.servers


def _cert_files(ca: trustme.CA, folder: Path, not_after: dt.datetime) -> tuple[Path, Path]:
    """A server certificate for 127.0.0.1/localhost that expires at *not_after*."""
    cert = ca.issue_cert(
        "127.0.0.1",
        "localhost",
        not_before=not_after - dt.timedelta(days=90),
        not_after=not_after,
    )
    chain, key = folder / "chain.pem", folder / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(chain))
    cert.private_key_pem.write_to_path(str(key))
    return chain, key


def _front(dovecot: Dovecot, chain: Path, key: Path) -> LmtpFront:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(chain, key)
    return LmtpFront(lmtp_port=dovecot.lmtp_port, server_context=ctx).start()


async def test_healthy_channel_walks_every_phase_and_sends_nothing(clean_front, dovecot, mail_ca):
    imap = imap_settings(
        dovecot, "tls", security="tls", port=dovecot.imaps_port, ca_file=mail_ca.ca_file
    )
    settings = mail_settings(
        clean_front,
        dovecot,
        "tls",
        imap=imap,
        smtp={"host": "localhost", "security": "starttls", "ca_file": mail_ca.ca_file},
    )
    accepted_before = clean_front.accepted
    probe = MailProbe("mail", settings, ProbeEnv())
    assert isinstance(probe, Preflights)
    report = await probe.preflight()
    assert report.ok, report.reason
    assert [(p.name, p.phase) for p in report.phases] == [
        ("smtp.dns", "dns"),
        ("smtp.connect", "connect"),
        ("smtp.ehlo", "connect"),
        ("smtp.starttls", "tls"),
        ("smtp.auth", "auth"),
        ("smtp.noop", "connect"),
        ("imap.connect", "connect"),
        ("imap.auth", "auth"),
        ("imap.read", "read"),
    ]
    assert "127.0.0.1" in report.phases[0].detail  # what localhost resolved to
    assert "front.test" in report.phase("smtp.connect").detail  # the banner
    assert report.phase("imap.read").detail == "INBOX"
    assert all(p.seconds >= 0 for p in report.phases)
    assert sum(p.seconds for p in report.phases) <= report.elapsed_s
    # Both certificates (their exact notAfter is checked in the soon-expiring test).
    assert [c.endpoint for c in report.certificates] == ["smtp", "imap"]
    assert all(c.days_left() > 300 for c in report.certificates)
    assert report.facts == {"smtp_tls": 1.0, "observer_configured": 1.0}
    assert clean_front.accepted == accepted_before  # nothing was sent


async def test_real_postfix_starttls_without_auth(postfix, dovecot, mail_ca):
    settings = mail_settings(
        None,
        dovecot,
        smtp={
            "port": postfix.port,
            "security": "starttls",
            "ca_file": mail_ca.ca_file,
            "user": None,
            "password": None,
        },
    )
    report = await preflight_mail("131211/mail", settings)
    assert report.ok, report.reason
    assert [p.name for p in report.phases][:4] == [
        "smtp.connect",
        "smtp.ehlo",
        "smtp.starttls",
        "smtp.noop",
    ]
    assert "ESMTP" in report.phase("smtp.connect").detail  # Postfix's banner
    assert report.certificates[0].endpoint == "smtp"
    assert report.target == "131211/mail"


async def test_refused_connection_fails_at_connect(dovecot):
    settings = mail_settings(None, dovecot, smtp={"port": closed_port()})
    report = await preflight_mail("131211/mail", settings)
    assert not report.ok
    assert [(p.name, p.phase, p.ok) for p in report.phases] == [("smtp.connect", "connect", False)]
    assert report.failure.code == "connect"
    assert report.reason.ja.startswith("smtp.connect: SMTP 接続失敗")
    assert report.reason.en.startswith("smtp.connect: SMTP cannot connect")


async def test_bad_credentials_fail_at_auth_on_either_side(clean_front, dovecot, fresh_dovecot):
    bad_smtp = mail_settings(clean_front, dovecot, smtp={"password": SecretRef.inline("x")})
    report = await preflight_mail("131211/mail", bad_smtp)
    assert [(p.name, p.ok) for p in report.phases] == [
        ("smtp.connect", True),
        ("smtp.ehlo", True),
        ("smtp.auth", False),
    ]
    assert report.failure.phase == "auth"
    assert report.failure.code == "535"

    bad_imap = imap_settings(fresh_dovecot, "drill", password=SecretRef.inline("x"))
    settings = mail_settings(clean_front, fresh_dovecot, imap=bad_imap)
    report = await preflight_mail("131211/mail", settings)
    assert report.phases[-1].name == "imap.auth" and not report.phases[-1].ok
    assert report.phase("smtp.auth").ok
    assert "login refused" in report.reason.en and "ログイン失敗" in report.reason.ja


async def test_expired_certificate_fails_at_tls(dovecot, tmp_path):
    ca = trustme.CA()
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem.bytes())
    past = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=2)
    front = _front(dovecot, *_cert_files(ca, tmp_path, past))
    try:
        settings = mail_settings(
            front, dovecot, smtp={"security": "starttls", "ca_file": str(tmp_path / "ca.pem")}
        )
        report = await preflight_mail("131211/mail", settings)
    finally:
        front.stop()
    failed = report.failure
    assert failed is not None and (failed.name, failed.phase) == ("smtp.starttls", "tls")
    assert "expired" in failed.reason.en
    assert "証明書" in failed.reason.ja


async def test_soon_expiring_certificates_show_their_days(tmp_path):
    ca = trustme.CA()
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem.bytes())
    soon = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=3, hours=1)
    chain, key = _cert_files(ca, tmp_path, soon)
    dovecot = Dovecot(users=dict(USERS), cert_file=chain, key_file=key).start()
    front = _front(dovecot, chain, key)
    try:
        imap = imap_settings(
            dovecot, "drill", security="starttls", ca_file=str(tmp_path / "ca.pem")
        )
        settings = mail_settings(
            front,
            dovecot,
            imap=imap,
            smtp={"port": front.smtps_port, "security": "tls", "ca_file": str(tmp_path / "ca.pem")},
        )
        report = await preflight_mail("131211/mail", settings)
    finally:
        front.stop()
        dovecot.remove()
    assert report.ok, report.reason
    assert [p.name for p in report.phases if p.phase == "tls"] == ["imap.starttls"]
    assert {c.endpoint: c.not_after for c in report.certificates} == {
        "smtp": soon.timestamp(),
        "imap": soon.timestamp(),
    }
    assert 3.0 < report.min_cert_days() < 3.05


async def test_observer_missing_is_said_not_failed(clean_front, dovecot):
    """The rule for every kind: checked as far as it goes, and it says arrival cannot
    be confirmed (fact ``observer_configured`` 0) — not a failure, not an alert."""
    settings = mail_settings(clean_front, dovecot, imap={})
    report = await preflight_mail("131211/mail", settings)
    assert report.ok, report.reason
    assert [p.name for p in report.phases][-1] == "smtp.noop"  # no observer phase at all
    assert report.phase("smtp.auth").ok
    assert report.facts == {"smtp_tls": 0.0, "observer_configured": 0.0}  # plain SMTP: flagged
    assert report.certificates == ()


@pytest.mark.parametrize("imap_security", ["starttls", "tls"])
async def test_tls_module_stops_before_any_login(postfix, dovecot, mail_ca, imap_security):
    """``module=tls``: SMTP up to STARTTLS and IMAP up to its TLS, both certificates — with
    wrong passwords on both sides it still passes: nothing logged in."""
    from probes.mail.check import preflight_mail_tls

    port = dovecot.imaps_port if imap_security == "tls" else dovecot.imap_port
    imap = imap_settings(
        dovecot, "nobody", security=imap_security, port=port, ca_file=mail_ca.ca_file
    )
    smtp = {"port": postfix.port, "security": "starttls", "ca_file": mail_ca.ca_file}
    settings = mail_settings(None, dovecot, imap=imap, smtp={**smtp, "user": "no-such-user"})
    report = await preflight_mail_tls("131211/mail", settings)
    assert report.ok, report.reason
    names = [p.name for p in report.phases]
    assert names[:3] == ["smtp.connect", "smtp.ehlo", "smtp.starttls"]
    assert not any(n.endswith((".auth", ".read", ".noop")) for n in names)
    assert ("imap.starttls" in names) == (imap_security == "starttls")
    assert [c.endpoint for c in report.certificates] == ["smtp", "imap"]
    assert "OK" in report.phase("imap.connect").detail  # the greeting
    full = await preflight_mail("131211/mail", settings)  # the full check does log in
    assert not full.ok and full.failure.phase == "auth"
