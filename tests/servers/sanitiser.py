"""A sanitising (無害化) mail gateway in front of Dovecot's LMTP, as LGWAN-connected mail passes.

It does what such gateways commonly do to every message before handing it on:

- drops every ``X-`` header (the drill token header included) and replaces the
  ``Message-ID`` (which carries the token in drill mail) with its own;
- turns the body into plain text: an HTML part becomes its text, a multipart
  message becomes its first text part (or its HTML as text), attachments go;
- re-encodes the text as ISO-2022-JP (7 bit) with a notice line on top, and
  the subject likewise, with a ``[無害化]`` prefix;
- with ``generic_subject`` it also replaces the subject, so only the body
  still carries the token.

Then it hands the result to LMTP and answers 250 only once LMTP accepted it.
``sanitise`` is the pure function, usable on its own.
"""

from __future__ import annotations

import email.policy
import email.utils
import html
import re
from dataclasses import dataclass, field
from email.header import Header, decode_header
from email.message import Message
from email.mime.text import MIMEText
from email.parser import BytesParser
from html.parser import HTMLParser

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from probes.sim.base import free_port
from tests.servers.lmtp_front import lmtp_deliver

NOTICE = "※このメールは無害化されました（添付ファイル・HTML は除去されています）"
_KEEP = ("from", "to", "cc", "date", "subject")


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in ("br", "p", "div", "tr", "li"):
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    parser = _Text()
    parser.feed(markup)
    parser.close()
    return html.unescape(re.sub(r"[ \t]+", " ", "".join(parser.parts))).strip()


def _decoded(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    return payload.decode(part.get_content_charset() or "utf-8", "replace")


def _jis_safe(text: str) -> str:
    """What survives ISO-2022-JP (other characters become "?")."""
    return text.encode("iso-2022-jp", "replace").decode("iso-2022-jp")


def _subject(msg: Message) -> str:
    value = msg.get("Subject", "")
    chunks = decode_header(value if isinstance(value, Header) else str(value))
    return "".join(
        data
        if isinstance(data, str)
        else data.decode(charset if charset and charset != "unknown-8bit" else "utf-8", "replace")
        for data, charset in chunks
    )


def _text_of(msg: Message) -> str:
    parts = list(msg.walk())
    plain = next((p for p in parts if p.get_content_type() == "text/plain"), None)
    if plain is not None:
        return _decoded(plain)
    markup = next((p for p in parts if p.get_content_type() == "text/html"), None)
    return html_to_text(_decoded(markup)) if markup is not None else ""


def sanitise(raw: bytes, *, generic_subject: bool = False, host: str = "gw.test") -> bytes:
    """The message as the gateway hands it on (see the module docstring)."""
    msg = BytesParser(policy=email.policy.compat32).parsebytes(raw)
    subject = _jis_safe(_subject(msg))
    text = _jis_safe(_text_of(msg).replace("\r\n", "\n"))
    out = MIMEText(f"{NOTICE}\n\n{text}", "plain", "iso-2022-jp")
    for name in _KEEP:
        if name == "subject":
            continue
        value = msg.get(name)
        if value is not None:
            out[name] = str(value)
    new_subject = "[無害化] 訓練メール" if generic_subject else f"[無害化] {subject}"
    out["Subject"] = Header(new_subject, "iso-2022-jp")  # type: ignore[assignment]
    out["Message-ID"] = email.utils.make_msgid(domain=host)
    # What left: every X- header (the drill token's too) and the original Message-ID.
    return out.as_bytes()


@dataclass
class _Handler:
    gateway: Sanitiser

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = sanitise(
            envelope.original_content or b"", generic_subject=self.gateway.generic_subject
        )
        self.gateway.passed.append(data)
        try:
            code, text = await lmtp_deliver(
                "127.0.0.1",
                self.gateway.lmtp_port,
                envelope.mail_from or "",
                list(envelope.rcpt_tos),
                data,
            )
        except (OSError, ConnectionError, TimeoutError) as exc:
            return f"451 4.4.1 LMTP unavailable: {exc.__class__.__name__}"
        if code >= 400:
            return f"{code} {text}"
        return "250 2.0.0 Ok: sanitised and delivered"


@dataclass
class Sanitiser:
    """``Sanitiser(lmtp_port=…).start()``; plain SMTP on ``port``, no AUTH needed."""

    lmtp_port: int
    generic_subject: bool = False
    port: int = 0
    passed: list[bytes] = field(default_factory=list)
    _controller: Controller | None = None

    def start(self) -> Sanitiser:
        self.port = self.port or free_port()
        self._controller = Controller(
            _Handler(self),
            hostname="127.0.0.1",
            port=self.port,
            server_hostname="gw.test",
            auth_require_tls=False,
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
