"""Pure parts of the mail channel: building, matching, parsing, fault mapping, settings."""

from __future__ import annotations

import ssl
from email.mime.text import MIMEText

import aiosmtplib
import pytest
from pydantic import ValidationError

from probes.base import ChannelRejected, ChannelUnreachable, DrillMessage, ProbeEnv
from probes.mail.message import (
    TOKEN_HEADER,
    build_mail,
    content_intact,
    parse_fetch_headers,
    parse_select,
    read_content,
    token_in_headers,
    tokens_in_mail,
)
from probes.mail.observer import MailObserver
from probes.mail.probe import MailProbe, MailSettings
from probes.mail.smtp import (
    SmtpFacts,
    queue_id,
    refusal_code,
    smtp_fault,
    starttls_not_offered,
)

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


def test_starttls_not_offered_is_a_configuration_rejection_not_an_outage():
    fault = starttls_not_offered("smtp.example.lg.jp", 587)
    assert isinstance(fault, ChannelRejected) and not fault.temporary
    assert fault.code == "starttls-not-offered"
    ja, en = fault.reason.split(" / ")
    assert ja.startswith("設定誤り") and "STARTTLS" in ja
    assert en.startswith("configuration error: the server smtp.example.lg.jp:587 does not offer")


def test_refusal_code_keeps_the_enhanced_status():
    fault = smtp_fault(aiosmtplib.SMTPSenderRefused(451, "4.7.1 Rate limit", "d@x"), "mail")
    assert refusal_code(fault) == "451 4.7.1"
    assert refusal_code(smtp_fault(aiosmtplib.SMTPDataError(450, "busy"), "data")) == "450"


def _sanitised(raw: bytes, **kw) -> bytes:
    from tests.servers.sanitiser import sanitise

    return sanitise(raw, **kw)


def test_token_is_found_in_the_subject_when_the_header_was_stripped():
    raw = build_mail(message(), sender="d@x.jp", to=["a@x.jp"]).as_bytes()
    assert tokens_in_mail(raw) == ([TOKEN], "header")
    clean = _sanitised(raw)
    assert TOKEN_HEADER.lower().encode() not in clean.lower() and b"X-" not in clean
    assert tokens_in_mail(clean) == ([TOKEN], "subject")


def test_token_is_found_in_the_text_body_when_subject_and_header_lost_it():
    raw = build_mail(message(), sender="d@x.jp", to=["a@x.jp"]).as_bytes()
    clean = _sanitised(raw, generic_subject=True)
    assert b"iso-2022-jp" in clean.lower()  # re-encoded as such gateways do
    assert tokens_in_mail(clean) == ([TOKEN], "body")


def test_html_multipart_turned_to_text_still_matches_the_body_token():
    from email.mime.multipart import MIMEMultipart

    mail = MIMEMultipart("alternative")
    mail["Subject"] = "お知らせ"
    mail.attach(MIMEText(f"<p>【訓練】 参集</p><p>[{TOKEN}]</p>", "html", "utf-8"))
    assert tokens_in_mail(mail.as_bytes()) == ([], "")  # no text part: nothing to read
    assert tokens_in_mail(_sanitised(mail.as_bytes())) == ([TOKEN], "body")


@pytest.mark.parametrize(
    "raw",
    [
        # Longer than a token, or a token glued to other letters: never a loose match.
        f"Subject: [{TOKEN}C]\r\n\r\n{TOKEN}X\r\n",
        f"Subject: x{TOKEN}\r\n\r\nTSG-0123456789a\r\n",
        f"Subject: [{TOKEN.lower()}]\r\n\r\n",
        # Replies and forwards quote the token of the message they answer.
        f"Subject: Re: 【訓練】 [{TOKEN}]\r\n\r\n{TOKEN}\r\n",
        f"Subject: Fwd: [{TOKEN}]\r\n\r\n",
        f"Subject: 転送: [{TOKEN}]\r\n\r\n",
        # A delivery report quotes the original message.
        "Subject: Undelivered Mail\r\nContent-Type: multipart/report; boundary=b\r\n\r\n"
        f"--b\r\nContent-Type: text/plain\r\n\r\n[{TOKEN}]\r\n--b--\r\n",
    ],
)
def test_subject_and_body_matching_is_exact(raw):
    assert tokens_in_mail(raw.encode()) == ([], "")


def test_an_attached_message_is_not_the_body():
    raw = (
        "Subject: report\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        "--b\r\nContent-Type: message/rfc822\r\n\r\n"
        f"Subject: x\r\n\r\n[{TOKEN}]\r\n--b--\r\n"
    )
    assert tokens_in_mail(raw.encode()) == ([], "")


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


def test_observed_addresses_cover_only_the_observed_mailbox():
    several = {**RAW, "to": ["watch@example.lg.jp", "staff@example.lg.jp"]}
    s = MailSettings.model_validate(several)  # the IMAP user is "watch"
    probe = MailProbe("131211/mail", s, ProbeEnv())
    assert probe.observes("watch@example.lg.jp") and probe.observes("WATCH@example.lg.jp")
    assert not probe.observes("staff@example.lg.jp")
    assert probe.observes(None)  # one mail to every address: the observed one sees it
    explicit = MailSettings.model_validate({**several, "observed": "staff@example.lg.jp"})
    assert explicit.observed_addresses == {"staff@example.lg.jp"}
    one = MailProbe("m", MailSettings.model_validate(RAW), ProbeEnv())
    assert one.observes("staff@example.lg.jp")  # the only address is the observed mailbox's
    maildir = {k: v for k, v in several.items() if k != "imap"}
    by_path = MailSettings.model_validate({**maildir, "maildir": "/var/mail/staff/Maildir"})
    assert by_path.observed_addresses == {"staff@example.lg.jp"}
    unobserved = MailSettings.model_validate({k: v for k, v in several.items() if k != "imap"})
    assert not MailProbe("m", unobserved, ProbeEnv()).observes("staff@example.lg.jp")


@pytest.mark.parametrize(
    "change",
    [
        # Several addresses and none recognisably the observed mailbox's: say which.
        {"to": ["a@example.lg.jp", "b@example.lg.jp"]},
        {"observed": ["other@example.lg.jp"]},  # not a `to` address
    ],
)
def test_observed_must_be_knowable(change):
    with pytest.raises(ValidationError, match="observed"):
        MailSettings.model_validate({**RAW, **change})


def test_imap_connections_are_keyed_on_every_setting_that_matters(monkeypatch):
    from probes.mail.imap_connection import ImapSettings

    monkeypatch.setenv("TSG_K1", "right")
    monkeypatch.setenv("TSG_K2", "wrong")
    monkeypatch.setenv("TSG_K3", "right")
    base = {"host": "127.0.0.1", "user": "drill", "password": "env:TSG_K1"}
    key = ImapSettings.model_validate(base).connection_key()
    # The same mailbox with the same password (another reference to it) shares.
    assert ImapSettings.model_validate({**base, "password": "env:TSG_K3"}).connection_key() == key
    for change in (
        {"password": "env:TSG_K2"},
        {"security": "starttls", "port": 993},
        {"verify": False},
        {"ca_file": "/etc/ssl/other.pem"},
        {"strategy": "idle"},
    ):
        assert ImapSettings.model_validate({**base, **change}).connection_key() != key, change
    assert "right" not in repr(key)  # a keyed digest, never the password


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

    from probes.mail.imap_connection import ImapConnection, ImapSettings

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
