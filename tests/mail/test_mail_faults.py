"""SMTP and IMAP facts → outcomes: deferrals, rejections, bad passwords, dead relays."""

from __future__ import annotations

import asyncio

import pytest

from probes.base import ChannelRejected, ChannelUnreachable, DrillMessage, ObserverFault, ProbeEnv
from probes.mail.probe import MailProbe
from probes.settings import SecretRef
from probes.sim.base import closed_port
from tests.mail.support import deliver, imap_settings, mail_settings, open_fault, opened

pytestmark = pytest.mark.servers


async def test_smtp_4xx_deferral_is_a_temporary_rejection_with_the_servers_text(
    clean_front, dovecot
):
    clean_front.fail("rcpt", "450 4.2.1 <drill@example.lg.jp>: Mailbox busy, try again later")
    async with opened(mail_settings(clean_front, dovecot)) as [probe]:
        result = await deliver(probe, DrillMessage.new("4xx"), timeout=1.0)
    assert result.outcome == "rejected"
    assert isinstance(result.error, ChannelRejected)
    assert result.error.temporary is True
    assert result.error.code == "450"
    assert "Mailbox busy, try again later" in result.error.reason


async def test_smtp_4xx_then_250_is_retried_and_counted_as_throttled(clean_front, dovecot):
    clean_front.fail("data", "451 4.7.1 Rate limit exceeded, slow down", times=1)
    settings = mail_settings(clean_front, dovecot, smtp={"retries": 2, "retry_delay": 0.05})
    async with opened(settings) as [probe]:
        result = await deliver(probe, DrillMessage.new("retry"))
    assert result.outcome == "delivered", result
    assert result.accepted.throttled == 1


async def test_smtp_5xx_from_real_dovecot_is_a_rejection_with_its_reason(clean_front, dovecot):
    # Dovecot's LMTP refuses an unknown user with 550; the front relays its answer.
    settings = mail_settings(clean_front, dovecot, to="nobody-here@example.lg.jp")
    async with opened(settings) as [probe]:
        result = await deliver(probe, DrillMessage.new("5xx"), timeout=1.0)
    assert result.outcome == "rejected"
    assert isinstance(result.error, ChannelRejected)
    assert result.error.temporary is False
    assert result.error.code.startswith("5")
    assert "doesn't exist" in result.error.reason


async def test_smtp_5xx_at_mail_from_is_a_rejection(clean_front, dovecot):
    clean_front.fail("mail", "554 5.7.1 Sender address rejected: drill sender not allowed")
    async with opened(mail_settings(clean_front, dovecot)) as [probe]:
        result = await deliver(probe, DrillMessage.new("5xx"), timeout=1.0)
    assert result.outcome == "rejected"
    assert result.error.code == "554" and not result.error.temporary
    assert "drill sender not allowed" in result.error.reason


async def test_wrong_smtp_password_is_rejected(clean_front, dovecot):
    settings = mail_settings(clean_front, dovecot, smtp={"password": SecretRef.inline("nope")})
    async with opened(settings) as [probe]:
        result = await deliver(probe, DrillMessage.new("auth"), timeout=1.0)
    assert result.outcome == "rejected"
    assert isinstance(result.error, ChannelRejected)
    assert result.error.code == "535"
    assert "認証失敗 / authentication failed" in result.error.reason
    assert "nope" not in result.error.reason


async def test_wrong_imap_password_is_an_observer_error_with_reason(clean_front, fresh_dovecot):
    dovecot = fresh_dovecot
    imap = imap_settings(dovecot, "drill", password=SecretRef.inline("not-the-password"))
    fault = await open_fault(mail_settings(clean_front, dovecot, imap=imap))
    assert fault.code == "auth"
    assert "ログイン失敗 / login refused for drill" in fault.reason
    assert "AUTHENTICATIONFAILED" in fault.reason
    assert "not-the-password" not in fault.reason


async def test_observer_fault_reaches_every_waiting_probe(clean_front, fresh_dovecot):
    dovecot = fresh_dovecot
    # Two probes of one mailbox: a failed login fails both, with the same reason.
    imap = imap_settings(dovecot, "drill", password=SecretRef.inline("wrong"))
    env = ProbeEnv()
    probes = [
        MailProbe(f"m{i}", mail_settings(clean_front, dovecot, imap=imap), env) for i in (1, 2)
    ]
    outcomes = await asyncio.gather(*(p.open() for p in probes), return_exceptions=True)
    for p in probes:
        await p.close()
    await env.aclose()
    assert all(isinstance(o, ObserverFault) for o in outcomes)


async def test_connection_refused_is_unreachable(dovecot):
    settings = mail_settings(None, dovecot, smtp={"port": closed_port()})
    async with opened(settings) as [probe]:
        result = await deliver(probe, DrillMessage.new("refused"), timeout=1.0)
    assert result.outcome == "lost"  # a channel fault (unreachable), not a harness error
    assert isinstance(result.error, ChannelUnreachable)
    assert result.error.code == "connect"


async def test_silent_server_times_out_as_unreachable(dovecot):
    writers = []

    async def silent(reader, writer):  # accepts, never greets
        writers.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        settings = mail_settings(None, dovecot, smtp={"port": port, "timeout": 0.3})
        async with opened(settings) as [probe]:
            result = await deliver(probe, DrillMessage.new("silent"), timeout=1.0)
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()
    assert isinstance(result.error, ChannelUnreachable)
    assert result.error.code == "timeout"
