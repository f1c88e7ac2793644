"""Pure parts of the mail channel: building, matching, parsing, fault mapping, settings."""

from __future__ import annotations

import ssl

import aiosmtplib
import pytest
from pydantic import ValidationError

from probes.base import ChannelRejected, ChannelUnreachable, DrillMessage
from probes.mail import MailSettings
from probes.mail_message import (
    TOKEN_HEADER,
    build_mail,
    content_intact,
    parse_fetch_headers,
    parse_select,
    read_content,
    token_in_headers,
)
from probes.mail_observer import MailObserver
from probes.mail_smtp import SmtpFacts, queue_id, smtp_fault

TOKEN = "TSG-0123456789AB"


def message(**kw) -> DrillMessage:
    return DrillMessage(token=TOKEN, text="参集してください", subject="安否確認", **kw)


def test_built_mail_has_the_headers_a_drill_needs():
    mail = build_mail(message(), sender="drill@example.lg.jp", to=["a@example.lg.jp"])
    raw = mail.as_bytes()
    assert mail[TOKEN_HEADER] == TOKEN
    assert mail["Message-ID"].endswith("@example.lg.jp>") and TOKEN in mail["Message-ID"]
    assert mail["Date"] and mail["Auto-Submitted"] == "auto-generated"
    assert read_content(raw).subject.startswith("【訓練】 安否確認")
    assert b"=?utf-8?b?" in raw  # RFC 2047 on the wire
    assert b"Content-Transfer-Encoding: base64" in raw
    assert all(b < 0x80 for b in raw)
    content = read_content(raw)
    assert content_intact(message(), content)


def test_mangled_subject_is_not_intact():
    raw = build_mail(message(), sender="d@x.jp", to=["a@x.jp"]).as_bytes()
    mangled = raw.replace(b"=?utf-8?b?", b"=?iso-8859-1?b?", 1)
    assert not content_intact(message(), read_content(mangled))


def test_token_comes_only_from_the_token_header():
    assert token_in_headers(f"{TOKEN_HEADER}: {TOKEN}\r\n\r\n".encode()) == TOKEN
    # A token quoted in the subject or body does not count.
    assert token_in_headers(f"Subject: [{TOKEN}]\r\n\r\n{TOKEN}\r\n".encode()) is None
    assert token_in_headers(f"{TOKEN_HEADER}: not-a-token\r\n\r\n".encode()) is None
    assert token_in_headers(b"x-tsunagari-drill-token:  " + TOKEN.encode() + b" \r\n\r\n") == TOKEN
    # CRLF or LF, not the last header, folded onto a continuation line.
    for eol in (b"\r\n", b"\n"):
        raw = eol.join(
            [
                b"From: a@x.jp",
                TOKEN_HEADER.encode() + b": " + TOKEN.encode(),
                b"To: b@x.jp",
                b"",
                b"body",
            ]
        )
        assert token_in_headers(raw) == TOKEN
        folded = eol.join(
            [TOKEN_HEADER.encode() + b":", b"  " + TOKEN.encode(), b"To: b@x.jp", b"", b""]
        )
        assert token_in_headers(folded) == TOKEN
    # The header after the header block (in the body) does not count.
    assert (
        token_in_headers(b"From: a@x.jp\r\n\r\n" + TOKEN_HEADER.encode() + b": " + TOKEN.encode())
        is None
    )


def test_build_mail_needs_a_recipient():
    with pytest.raises(ValueError):
        build_mail(message(), sender="d@x.jp", to=[])


def test_parse_fetch_headers_pairs_uids_with_literals():
    lines = [
        b"1 FETCH (UID 7 BODY[HEADER.FIELDS (X-TSUNAGARI-DRILL-TOKEN)] {45}",
        bytearray(f"{TOKEN_HEADER}: {TOKEN}\r\n\r\n".encode()),
        b")",
        b"2 FETCH (FLAGS (\\Seen))",  # unsolicited flag update: no literal
        b"3 FETCH (BODY[HEADER.FIELDS (X-TSUNAGARI-DRILL-TOKEN)] {2}",
        bytearray(b"\r\n"),
        b" UID 9)",  # UID after the literal
        b"Fetch completed (0.001 + 0.000 secs).",
    ]
    items = parse_fetch_headers(lines)
    assert [(i.uid, token_in_headers(i.headers)) for i in items] == [(7, TOKEN), (9, None)]


def test_parse_select_reads_uidvalidity_and_uidnext():
    lines = [b"1 EXISTS", b"OK [UIDVALIDITY 1795775484] UIDs valid", b"OK [UIDNEXT 2] Predicted"]
    assert parse_select(lines) == {"UIDVALIDITY": 1795775484, "UIDNEXT": 2}


def test_queue_id_from_a_250_text():
    assert queue_id("2.0.0 Ok: queued as 4XbQ1m0Z3xz9") == "4XbQ1m0Z3xz9"
    assert queue_id("OK") is None


@pytest.mark.parametrize(
    ("exc", "kind", "code", "temporary"),
    [
        (
            aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(450, "busy", "a@x")]),
            ChannelRejected,
            "450",
            True,
        ),
        (aiosmtplib.SMTPDataError(554, "5.7.1 spam"), ChannelRejected, "554", False),
        (aiosmtplib.SMTPSenderRefused(421, "4.7.0 try later", "d@x"), ChannelRejected, "421", True),
        (aiosmtplib.SMTPAuthenticationError(535, "5.7.8 bad"), ChannelRejected, "535", False),
        (aiosmtplib.SMTPConnectResponseError(554, "no service"), ChannelRejected, "554", False),
        (aiosmtplib.SMTPConnectError("refused"), ChannelUnreachable, "connect", None),
        (aiosmtplib.SMTPConnectTimeoutError("slow"), ChannelUnreachable, "timeout", None),
        (aiosmtplib.SMTPServerDisconnected("gone"), ChannelUnreachable, "connect", None),
        (ssl.SSLCertVerificationError("x"), ChannelUnreachable, "tls", None),
    ],
)
def test_smtp_fault_mapping(exc, kind, code, temporary):
    fault = smtp_fault(exc, "data")
    assert type(fault) is kind
    assert fault.code == code
    if temporary is not None:
        assert fault.temporary is temporary


def test_starttls_not_offered_is_a_tls_failure():
    fault = smtp_fault(aiosmtplib.SMTPException("STARTTLS not offered"), "starttls")
    assert isinstance(fault, ChannelUnreachable) and fault.code == "tls"


def test_non_smtp_exceptions_are_not_mapped():
    with pytest.raises(TypeError):
        smtp_fault(KeyError("x"), "data")


def test_insecure_means_no_tls():
    assert SmtpFacts().insecure and SmtpFacts().summary() == "plain (insecure)"
    facts = SmtpFacts(tls=True, tls_version="TLSv1.3", tls_days_left=42, tls_verified=True)
    assert not facts.insecure and facts.summary() == "TLSv1.3 cert 42d"


RAW = {
    "smtp": {"host": "smtp.example.lg.jp", "user": "drill", "password": "env:SMTP_PW"},
    "from": "drill@example.lg.jp",
    "to": "staff@example.lg.jp",
    "imap": {"host": "imap.example.lg.jp", "user": "watch", "password": "env:IMAP_PW"},
}


def test_settings_accept_the_registry_shape():
    s = MailSettings.model_validate(RAW)
    assert s.to == ["staff@example.lg.jp"] and s.sender == "drill@example.lg.jp"
    assert s.smtp.security == "starttls" and s.smtp.effective_port == 587 and s.smtp.verify
    assert s.imap.effective_port == 993 and s.imap.strategy == "auto"
    assert s.cleanup == "none"


@pytest.mark.parametrize(
    "change",
    [
        {"extra_key": 1},
        {"smtp": {**RAW["smtp"], "starttls": True}},  # unknown key inside smtp
        {"smtp": {**RAW["smtp"], "password": "hunter2"}},  # literal secret
        {"to": []},
        {"to": "not an address"},
        {"maildir": "/var/mail/drill"},  # both imap and maildir
        {"smtp": {**RAW["smtp"], "security": "ssl"}},
    ],
)
def test_settings_refuse_bad_shapes(change):
    with pytest.raises(ValidationError):
        MailSettings.model_validate({**RAW, **change})


class _Bare(MailObserver):
    async def start(self) -> None: ...
    async def aclose(self) -> None: ...


def test_error_bound_is_seen_minus_the_later_of_previous_look_and_send():
    obs = _Bare()
    obs.expect(TOKEN, since=10.0)
    assert obs.bound(TOKEN, seen_at=10.30, previous_look=10.25) == pytest.approx(0.05)
    # A look before the send proves nothing about this message: the send start bounds it.
    assert obs.bound(TOKEN, seen_at=10.30, previous_look=9.0) == pytest.approx(0.30)
    obs.forget(TOKEN)
    assert obs.bound(TOKEN, seen_at=10.30, previous_look=10.25) == pytest.approx(0.05)
    assert obs.bound(TOKEN, seen_at=10.30, previous_look=None) == float("inf")


async def test_closing_an_observer_mid_command_really_stops_it():
    # The watcher loop must not swallow the closer's cancellation while it is
    # itself cancelling a stuck IMAP command (that once left a loop running forever).
    import asyncio

    from probes.imap_connection import ImapConnection, ImapSettings

    conn = ImapConnection(ImapSettings(host="127.0.0.1", user="u", password="env:UNUSED"))

    async def slow_to_cancel():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(0.1)
            raise

    conn.lost.set()  # the connection broke: command() cancels the command
    task = asyncio.ensure_future(conn.command(slow_to_cancel()))
    await asyncio.sleep(0.02)
    task.cancel()  # ... and the observer is closed meanwhile
    with pytest.raises(asyncio.CancelledError):
        await task
