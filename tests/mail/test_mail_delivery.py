"""The mail channel end to end against real Dovecot (IMAP + LMTP) and real Postfix."""

from __future__ import annotations

import aioimaplib
import pytest

from probes.base import ChannelRejected, DrillMessage
from probes.mail.message import read_content
from tests.mail.support import (
    USERS,
    assert_against_store,
    deliver,
    imap_settings,
    mail_settings,
    maildir_ctime,
    opened,
)
from tests.servers.lmtp_front import LmtpFront

pytestmark = pytest.mark.servers


def assert_seen_within_bound(result, stored: float | None) -> None:
    """Seen after the message was stored, and no later than the bound the observer reported."""
    assert_against_store(result, stored)


async def test_delivered_with_plausible_latency(clean_front, dovecot):
    settings = mail_settings(clean_front, dovecot)
    async with opened(settings) as [probe]:
        message = DrillMessage.new("参集訓練です。受信を確認してください。", subject="安否確認")
        result = await deliver(probe, message)
    assert result.outcome == "delivered", result
    assert result.accepted.detail.startswith("250 ")
    assert result.accepted.provider_id.startswith("F")  # the front's "queued as" id
    stored = maildir_ctime(dovecot.maildir("drill"), message.token)
    assert_seen_within_bound(result, stored)
    assert result.sent_at < result.accepted.at
    assert 0 < result.latency < 5
    assert result.sighting.error_bound_s < 0.5  # auto strategy polls fast in the window
    assert result.sighting.extra["insecure"] is True  # plain SMTP to the front
    assert result.sighting.extra["content_intact"] is True


async def fetch_raw(dovecot, user: str, uid: int) -> bytes:
    client = aioimaplib.IMAP4("127.0.0.1", dovecot.imap_port, timeout=10)
    await client.wait_hello_from_server()
    await client.login(user, USERS[user])
    await client.select("INBOX")
    response = await client.uid("fetch", str(uid), "(BODY.PEEK[])")
    await client.logout()
    return bytes(next(line for line in response.lines if isinstance(line, bytearray)))


async def test_japanese_subject_and_body_round_trip(clean_front, dovecot):
    settings = mail_settings(clean_front, dovecot, "jp")
    text = "【重要】震度6強の地震を想定した参集訓練です。\n所属と氏名を返信してください。"
    message = DrillMessage.new(text, subject="安否確認・参集訓練（第2回）")
    async with opened(settings) as [probe]:
        result = await deliver(probe, message)
    assert result.outcome == "delivered", result
    raw = await fetch_raw(dovecot, "jp", result.sighting.extra["uid"])
    content = read_content(raw)
    # On the wire: RFC 2047 encoded-words in UTF-8, no raw 8-bit bytes anywhere.
    assert "=?utf-8?" in content.raw_subject.lower()
    assert all(b < 0x80 for b in raw)
    # Read back: exactly what was sent, marker first.
    assert content.subject == message.render_subject()
    assert content.subject.startswith("【訓練】 安否確認・参集訓練（第2回）")
    assert content.body.replace("\r\n", "\n").rstrip("\n") == message.render()
    assert content.token == message.token
    assert result.sighting.extra["content_intact"] is True


async def test_delivered_through_real_postfix_with_starttls(postfix, dovecot, mail_ca):
    settings = mail_settings(
        None,
        dovecot,
        "drill",
        smtp={
            "host": "127.0.0.1",
            "port": postfix.port,
            "security": "starttls",
            "ca_file": mail_ca.ca_file,
            "user": None,
            "password": None,
        },
    )
    async with opened(settings) as [probe]:
        message = DrillMessage.new("Postfix 経由の訓練メール")
        result = await deliver(probe, message)
    assert result.outcome == "delivered", result
    queue_id = result.accepted.provider_id
    assert f"{queue_id}: to=<drill@example.lg.jp>" in postfix.log_text()
    assert result.sighting.extra["insecure"] is False
    assert result.sighting.extra["tls_days_left"] > 300  # trustme certificates last years
    assert_seen_within_bound(result, maildir_ctime(dovecot.maildir("drill"), message.token))


async def test_dovecot_stopped_mid_drill_is_an_observer_error_not_lost(postfix, outage_dovecot):
    settings = mail_settings(
        None,
        outage_dovecot,
        "drill",
        to="drill@outage.test",
        smtp={
            "host": "127.0.0.1",
            "port": postfix.port,
            "security": "plain",
            "user": None,
            "password": None,
        },
        imap=imap_settings(outage_dovecot, "drill", timeout=2),
    )
    async with opened(settings) as [probe]:
        first = await deliver(probe, DrillMessage.new("停止前"))
        assert first.outcome == "delivered", first
        outage_dovecot.stop()
        second = await deliver(probe, DrillMessage.new("停止後"), timeout=3.0)
    # Postfix took it (250 queued) but could not hand it to the mailbox, and the observer
    # could not look either: the drill cannot tell, so it is an error with the reason.
    assert second.outcome == "error", second
    assert "IMAP" in second.reason and "cannot look" in second.reason
    assert second.accepted.detail.startswith("250 ")
    assert second.accepted.provider_id in postfix.deferred()


async def test_lmtp_down_behind_front_is_a_temporary_rejection(outage_dovecot):
    front = LmtpFront(lmtp_port=outage_dovecot.lmtp_port).start()
    try:
        settings = mail_settings(front, outage_dovecot, "drill")
        async with opened(settings) as [probe]:
            outage_dovecot.stop()
            result = await deliver(probe, DrillMessage.new("LMTP 停止"), timeout=2.0)
    finally:
        front.stop()
    assert result.outcome == "rejected"
    assert isinstance(result.error, ChannelRejected)
    assert result.error.temporary and result.error.code == "451"
    assert "LMTP unavailable" in result.error.reason
