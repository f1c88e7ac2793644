"""Sanitising (無害化) gateways: the token header is stripped, the body turned into text.

Drill mail passes a gateway (tests/servers/sanitiser.py) in front of the real
Dovecot LMTP; every observer must still confirm it by the exact token in the
subject, or in the body when the subject was replaced too.
"""

from __future__ import annotations

import aiosmtplib
import pytest

from probes.base import DrillMessage
from probes.mail.message import TOKEN_HEADER, tokens_in_mail
from tests.mail.support import (
    assert_against_store,
    deliver,
    imap_settings,
    mail_settings,
    maildir_ctime,
    opened,
)
from tests.mail.test_mail_delivery import fetch_raw
from tests.servers.sanitiser import NOTICE, Sanitiser

pytestmark = pytest.mark.servers


@pytest.fixture(params=[False, True], ids=["subject-kept", "subject-replaced"])
def gateway(request, dovecot):
    server = Sanitiser(lmtp_port=dovecot.lmtp_port, generic_subject=request.param).start()
    yield server
    server.stop()


def through(gateway: Sanitiser, dovecot, observer: str):
    smtp = {"port": gateway.port, "user": None, "password": None}
    if observer == "imap":
        imap = imap_settings(dovecot, "jp", strategy="auto")
        return mail_settings(gateway, dovecot, "jp", smtp=smtp, imap=imap)
    return mail_settings(
        gateway, dovecot, "jp", smtp=smtp, imap={}, maildir=str(dovecot.maildir("jp"))
    )


@pytest.mark.parametrize("observer", ["imap", "maildir"])
async def test_drill_mail_through_a_sanitising_gateway_is_delivered(gateway, dovecot, observer):
    message = DrillMessage.new("震度6強を想定した参集訓練です。", subject="参集訓練")
    async with opened(through(gateway, dovecot, observer)) as [probe]:
        result = await deliver(probe, message, timeout=5)
    assert result.outcome == "delivered", result
    # The gateway really stripped the token header and rewrote the body.
    [passed] = [raw for raw in gateway.passed if NOTICE.encode("iso-2022-jp") in raw]
    assert TOKEN_HEADER.encode() not in passed and b"\nX-" not in passed
    expected = "body" if gateway.generic_subject else "subject"
    assert result.sighting.extra["matched_by"] == expected
    assert result.sighting.extra["content_intact"] is False  # the scorecard can tell
    assert_against_store(result, maildir_ctime(dovecot.maildir("jp"), message.token))
    gateway.passed.clear()


async def test_a_reply_quoting_the_token_is_not_taken_for_the_drill_mail(dovecot):
    # A staff reply quoting the token reaches the mailbox first (through the gateway,
    # which tags its subject "[無害化] Re: …"); the sighting must be the drill mail's.
    gateway = Sanitiser(lmtp_port=dovecot.lmtp_port).start()
    message = DrillMessage.new("返信より後に届く")
    reply = (
        "From: staff@example.lg.jp\r\nTo: jp@example.lg.jp\r\n"
        f"Subject: Re: 【訓練】 返信より後に届く [{message.token}]\r\n\r\n"
        f"> [{message.token}]\r\n了解しました\r\n"
    ).encode()
    try:
        async with opened(through(gateway, dovecot, "imap")) as [probe]:
            await aiosmtplib.send(
                reply,
                sender="staff@example.lg.jp",
                recipients=["jp@example.lg.jp"],
                hostname="127.0.0.1",
                port=gateway.port,
            )
            result = await deliver(probe, message, timeout=5)
    finally:
        gateway.stop()
    assert result.outcome == "delivered", result
    raw = await fetch_raw(dovecot, "jp", result.sighting.extra["uid"])
    assert tokens_in_mail(raw) == ([message.token], "subject")
    assert b"Re:" not in raw.split(b"\r\n\r\n", 1)[0]
