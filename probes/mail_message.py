"""Building and reading drill mails: pure functions, no I/O.

A drill mail carries its token twice: in the ``X-Tsunagari-Drill-Token``
header (what observers match on — never the subject text) and in the body
(``DrillMessage.render()``, for the person reading it). The subject starts
with the drill marker. Japanese text is UTF-8: the subject RFC 2047-encoded,
the body base64, so no relay on the way has to be 8-bit clean.

    >>> from probes.base import DrillMessage
    >>> m = DrillMessage(token="TSG-0123456789AB", text="参集してください", subject="安否確認")
    >>> mail = build_mail(m, sender="drill@example.lg.jp", to=["staff@example.lg.jp"])
    >>> token_in_headers(mail.as_bytes())
    'TSG-0123456789AB'
"""

from __future__ import annotations

import email.policy
import email.utils
import re
import secrets
from dataclasses import dataclass
from email.header import Header, decode_header, make_header
from email.message import Message
from email.mime.text import MIMEText
from email.parser import BytesParser

from probes.base import TOKEN_RE, DrillMessage

__all__ = [
    "TOKEN_HEADER",
    "FetchedHeader",
    "MailContent",
    "build_mail",
    "content_intact",
    "parse_fetch_headers",
    "parse_select",
    "read_content",
    "token_in_headers",
]

TOKEN_HEADER = "X-Tsunagari-Drill-Token"

# The compat32 email classes, not policy.default: same RFC output, a tenth of the CPU
# (a 1,000-channel drill builds and reads back 1,000 mails in one process).
_PARSER = BytesParser(policy=email.policy.compat32)

_HEADER_END_RE = re.compile(rb"\r?\n\r?\n")
_TOKEN_HEADER_RE = re.compile(
    rb"(?im)^" + re.escape(TOKEN_HEADER.encode()) + rb":[ \t]*(?:\r?\n[ \t]+)?(\S*)[ \t\r]*$"
)


def build_mail(
    message: DrillMessage,
    *,
    sender: str,
    to: list[str],
    domain: str | None = None,
    now: float | None = None,
) -> Message:
    """The RFC 5322 message for *message*: Message-ID, Date, token header, marked subject."""
    if not to:
        raise ValueError("a drill mail needs at least one recipient")
    mail = MIMEText(message.render(), "plain", "utf-8")  # utf-8 → base64 body
    mail["From"] = sender
    mail["To"] = ", ".join(to)
    # RFC 2047; email.message accepts a Header here (typeshed says str only).
    mail["Subject"] = Header(message.render_subject(), "utf-8")  # type: ignore[assignment]
    mail["Date"] = email.utils.formatdate(now, localtime=True)
    host = domain or sender.rpartition("@")[2] or "tsunagari.invalid"
    mail["Message-ID"] = f"<{message.token}.{secrets.token_hex(4)}@{host}>"
    mail[TOKEN_HEADER] = message.token
    mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to drills
    return mail


def token_in_headers(raw_headers: bytes) -> str | None:
    """The drill token from a message's header block (or whole message), if any.

    Only the token header counts; a token quoted in the subject or body does not.
    """
    end = _HEADER_END_RE.search(raw_headers)
    block = raw_headers[: end.start()] if end else raw_headers
    match = _TOKEN_HEADER_RE.search(block)
    if match is None:
        return None
    value = match.group(1).decode("ascii", "replace")
    return value if TOKEN_RE.fullmatch(value) else None


@dataclass(frozen=True, slots=True)
class MailContent:
    """A received drill mail, decoded: what a person would read."""

    token: str | None
    subject: str
    body: str
    raw_subject: str  # as on the wire, e.g. ``=?utf-8?b?...?=``


def _decode_header(value: str) -> str:
    return str(make_header(decode_header(value)))


def _body_text(msg: Message) -> str:
    part = next((p for p in msg.walk() if p.get_content_type() == "text/plain"), None)
    if part is None:
        return ""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    return payload.decode(part.get_content_charset() or "us-ascii", "replace")


def read_content(raw: bytes) -> MailContent:
    """Decode a whole received message (headers and body)."""
    msg = _PARSER.parsebytes(raw)
    raw_subject = re.sub(r"\r?\n[ \t]", " ", str(msg.get("Subject", "")))
    return MailContent(
        token=token_in_headers(raw),
        subject=_decode_header(raw_subject),
        body=_body_text(msg),
        raw_subject=raw_subject,
    )


def content_intact(message: DrillMessage, content: MailContent) -> bool:
    """Did the mail arrive as sent: same subject, same body text, same token?"""
    return (
        content.token == message.token
        and content.subject == message.render_subject()
        and content.body.replace("\r\n", "\n").rstrip("\n") == message.render()
    )


@dataclass(frozen=True, slots=True)
class FetchedHeader:
    """One message's UID and requested header block from a UID FETCH."""

    uid: int
    headers: bytes


_FETCH_RE = re.compile(rb"^\d+ FETCH \(")
_UID_RE = re.compile(rb"UID (\d+)")


def parse_fetch_headers(lines: list[bytes | bytearray]) -> list[FetchedHeader]:
    """Pair UIDs with literals in aioimaplib's lines for ``UID FETCH … (UID BODY.PEEK[…])``.

    aioimaplib gives ``b'1 FETCH (UID 7 BODY[...] {52}'``, then the literal as a
    ``bytearray``, then ``b')'`` (or ``b' UID 7)'`` if the server puts UID last).
    Unsolicited FETCH lines without a literal (flag updates) are skipped.
    """
    out: list[FetchedHeader] = []
    uid: int | None = None
    literal: bytes | None = None
    in_fetch = False

    def flush() -> None:
        if uid is not None and literal is not None:
            out.append(FetchedHeader(uid, literal))

    for line in lines:
        if isinstance(line, bytearray):
            if in_fetch:
                literal = bytes(line)
            continue
        if _FETCH_RE.match(line):
            flush()
            in_fetch, literal = True, None
            found = _UID_RE.search(line)
            uid = int(found.group(1)) if found else None
            continue
        if in_fetch:
            found = _UID_RE.search(line)
            if found and uid is None:
                uid = int(found.group(1))
            if line.rstrip().endswith(b")"):
                flush()
                in_fetch, uid, literal = False, None, None
    if in_fetch:
        flush()
    return out


_SELECT_CODE_RE = re.compile(rb"\[(UIDVALIDITY|UIDNEXT) (\d+)\]")


def parse_select(lines: list[bytes | bytearray]) -> dict[str, int]:
    """``UIDVALIDITY`` and ``UIDNEXT`` (when given) from a SELECT response."""
    found: dict[str, int] = {}
    for line in lines:
        if isinstance(line, bytes):
            for key, value in _SELECT_CODE_RE.findall(line):
                found[key.decode()] = int(value)
    return found
