"""Building and reading drill mails: pure functions, no I/O.

A drill mail carries its token three times: in the ``X-Tsunagari-Drill-Token``
header, in the subject and in the body (``DrillMessage.render()``, for the
person reading it). The subject starts with the drill marker.

Observers match with :func:`tokens_in_mail`: the token header when it is there;
otherwise — a sanitising (無害化) gateway on the way, as LGWAN-connected mail
commonly passes, drops ``X-`` headers and turns bodies into plain text — the
exact token (``probes.base.TOKEN_RE``, not part of a longer word) in the
decoded subject, then in the decoded text body. Replies, forwards and delivery
reports quote tokens too; they never count. Japanese text is UTF-8: the subject RFC 2047-encoded,
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

from probes.base import TOKEN_RE, DrillMessage, find_tokens

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
    "tokens_in_mail",
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
    """The drill token from a message's token header (header block or whole message), if any.

    Only the token header counts here; :func:`tokens_in_mail` also reads the
    subject and body when the header was stripped on the way.
    """
    end = _HEADER_END_RE.search(raw_headers)
    block = raw_headers[: end.start()] if end else raw_headers
    match = _TOKEN_HEADER_RE.search(block)
    if match is None:
        return None
    value = match.group(1).decode("ascii", "replace")
    return value if TOKEN_RE.fullmatch(value) else None


# A reply or forward quotes the token of the message it answers: not an arrival of it.
# Gateways and lists put tags in front ("[無害化] Re: …"); look past them.
_QUOTING_SUBJECT_RE = re.compile(
    r"^\s*(?:[\[【(（][^\]】)）]*[\]】)）]\s*)*(?:re|fwd?|fw|aw|sv|antw|返信|転送)\s*[:：]", re.I
)


def exact_tokens(text: str) -> list[str]:
    """Every drill token in *text* standing on its own, first occurrence order, no repeats.

    >>> exact_tokens("【訓練】 件名 [TSG-0123456789AB] TSG-0123456789ABCD")
    ['TSG-0123456789AB']
    """
    return list(dict.fromkeys(find_tokens(text)))  # TOKEN_RE refuses a token inside a word


def _subject_text(msg: Message) -> str:
    """The decoded subject, also when sent as raw 8-bit UTF-8 (RFC 6532) or mis-encoded."""
    value = msg.get("Subject", "")
    if not isinstance(value, Header):
        value = re.sub(r"\r?\n[ \t]", " ", str(value))
    try:
        chunks = decode_header(value)
    except ValueError:
        return str(value)
    out: list[str] = []
    for data, charset in chunks:
        if isinstance(data, str):
            out.append(data)
            continue
        name = charset if charset and charset != "unknown-8bit" else "utf-8"
        try:
            out.append(data.decode(name, "replace"))
        except LookupError:
            out.append(data.decode("utf-8", "replace"))
    return "".join(out)


def tokens_in_mail(raw: bytes) -> tuple[list[str], str]:
    """The drill token(s) of a received message and where they were found.

    ``(["TSG-…"], "header")`` from the token header; failing that, the exact
    tokens of the decoded subject (``"subject"``), then of the decoded text
    body (``"body"``); ``([], "")`` when none. Delivery reports
    (``multipart/report``) and replies or forwards (``Re:``, ``Fwd:``, 返信, 転送)
    quote the tokens of other mail: they are never matched by subject or body.

    >>> tokens_in_mail(b"Subject: [TSG-0123456789AB]\\n\\nbody")
    (['TSG-0123456789AB'], 'subject')
    >>> tokens_in_mail(b"Subject: Re: [TSG-0123456789AB]\\n\\nTSG-0123456789AB")
    ([], '')
    """
    header = token_in_headers(raw)
    if header is not None:
        return [header], "header"
    msg = _PARSER.parsebytes(raw)
    if msg.get_content_type() == "multipart/report":
        return [], ""
    subject = _subject_text(msg)
    if _QUOTING_SUBJECT_RE.match(subject):
        return [], ""
    found = exact_tokens(subject)
    if found:
        return found, "subject"
    found = exact_tokens(_body_text(msg))
    return (found, "body") if found else ([], "")


@dataclass(frozen=True, slots=True)
class MailContent:
    """A received drill mail, decoded: what a person would read."""

    token: str | None
    subject: str
    body: str
    raw_subject: str  # as on the wire, e.g. ``=?utf-8?b?...?=``


def _decode_header(value: str) -> str:
    return str(make_header(decode_header(value)))


def _text_part(msg: Message) -> Message | None:
    """The first text/plain part, not looking inside attached messages (message/*)."""
    if msg.get_content_type() == "text/plain":
        return msg
    if msg.get_content_maintype() != "multipart" or not msg.is_multipart():
        return None
    for part in msg.get_payload():
        if isinstance(part, Message):
            found = _text_part(part)
            if found is not None:
                return found
    return None


def _body_text(msg: Message) -> str:
    part = _text_part(msg)
    if part is None:
        return ""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    try:
        return payload.decode(part.get_content_charset() or "us-ascii", "replace")
    except LookupError:  # an unknown charset name: the token is ASCII anyway
        return payload.decode("ascii", "replace")


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
