"""The SMTP half of the mail preflight: banner, EHLO, STARTTLS, AUTH, NOOP, QUIT.

The same dialogue :class:`~probes.mail.smtp.SmtpSession` has with the relay
before it sends, spoken over a :class:`probes.endpoint.Wire` — a non-blocking
socket with TLS on the C ``ssl`` module's memory BIOs — instead of aiosmtplib's asyncio
transport and its Python-level TLS buffering: about a quarter less CPU per check
(a check runs every minute per channel). The relay sees the same commands;
nothing is sent (no MAIL, no RCPT). Replies are mapped by the sender's own
:func:`~probes.mail.smtp.smtp_fault`, and EHLO is parsed and AUTH encoded by
aiosmtplib's own helpers, so a failure reads the same as in a drill::

    dialogue = SmtpDialogue(settings, helo="tsunagari.example")
    facts = await dialogue.open("192.0.2.25", on_stage=print)   # connect, ehlo, starttls, auth
    await dialogue.noop()
    await dialogue.quit()
"""

from __future__ import annotations

import contextlib
import functools
import math
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

import aiosmtplib
from aiosmtplib.auth import auth_crammd5_verify, auth_login_encode, auth_plain_encode
from aiosmtplib.esmtp import parse_esmtp_extensions

from probes.endpoint import Wire
from probes.mail.smtp import SmtpFacts, SmtpSettings, smtp_fault, starttls_not_offered
from probes.mail.tls import client_context
from probes.preflight import not_after_of

__all__ = ["SmtpDialogue", "read_reply"]

_AUTH_ORDER = ("plain", "login", "cram-md5")  # the first of these the relay offers


async def read_reply(wire: Wire) -> tuple[int, str]:
    """One SMTP reply: its code and its text (lines joined by ``\\n``).

    A line that is not ``NNN-text`` / ``NNN text`` is a protocol error. The lines
    come in batches (an EHLO reply's dozen lines in one); any after the reply's
    last line are left for the next read.
    """
    lines: list[str] = []
    while True:
        batch = await wire.read_lines()
        for i, raw in enumerate(batch):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if len(line) < 3 or not line[:3].isdigit() or line[3:4] not in ("", " ", "-"):
                raise aiosmtplib.SMTPResponseException(-1, f"malformed reply: {line[:80]!r}")
            lines.append(line[4:])
            if line[3:4] != "-":
                if i + 1 < len(batch):
                    wire.unread(b"".join(rest + b"\n" for rest in batch[i + 1 :]))
                return int(line[:3]), "\n".join(lines)


@functools.lru_cache(maxsize=256)
def _extensions(text: str) -> tuple[Mapping[str, str], Sequence[str]]:
    """aiosmtplib's reading of an EHLO reply: a relay answers every check with the same
    text, read once (the result is shared: read-only)."""
    extensions, methods = parse_esmtp_extensions(text)
    return extensions, tuple(methods)


class SmtpDialogue:
    """One check's SMTP conversation; every step raises a ProbeError on failure."""

    def __init__(self, settings: SmtpSettings, helo: str) -> None:
        self.settings = settings
        self.helo = helo
        self.facts = SmtpFacts()
        self.stage = "connect"
        self._wire: Wire | None = None
        self._secure: ssl.SSLObject | None = None

    async def _expect(self, *codes: int) -> str:
        assert self._wire is not None
        code, text = await read_reply(self._wire)
        if code not in codes:
            raise aiosmtplib.SMTPResponseException(code, text)
        return text

    async def _command(self, line: str, *codes: int) -> str:
        assert self._wire is not None
        await self._wire.send(line.encode("utf-8") + b"\r\n")
        return await self._expect(*codes)

    async def _ehlo(self) -> tuple[Mapping[str, str], Sequence[str]]:
        text = await self._command(f"EHLO {self.helo}", 250)
        return _extensions(text)

    async def _tls(self, context: ssl.SSLContext) -> None:
        assert self._wire is not None
        self._secure = await self._wire.start_tls(context, self.settings.host)

    async def _login(self, user: str, password: str, methods: Sequence[str]) -> None:
        offered = [m for m in _AUTH_ORDER if m in methods]
        if not offered:
            raise aiosmtplib.SMTPException(
                f"no supported AUTH method (the relay offers: {' '.join(methods) or 'none'})"
            )
        try:
            if offered[0] == "plain":
                await self._command(f"AUTH PLAIN {auth_plain_encode(user, password).decode()}", 235)
            elif offered[0] == "login":
                name, secret = auth_login_encode(user, password)
                await self._command("AUTH LOGIN", 334)
                await self._command(name.decode(), 334)
                await self._command(secret.decode(), 235)
            else:
                challenge = await self._command("AUTH CRAM-MD5", 334)
                await self._command(auth_crammd5_verify(user, password, challenge).decode(), 235)
        except aiosmtplib.SMTPResponseException as exc:
            raise aiosmtplib.SMTPAuthenticationError(exc.code, exc.message) from exc

    async def open(
        self, address: str, *, on_stage: Callable[[str], None], login: bool = True
    ) -> SmtpFacts:
        """Banner, EHLO, STARTTLS (or SMTPS) and EHLO again, AUTH (with ``smtp.user``).

        ``on_stage`` hears each stage begin (``connect``, ``ehlo``, ``starttls``,
        ``auth``), as :meth:`SmtpSession.open` announces them; ``login=False`` stops
        before AUTH (the TLS-only check). Raises ProbeError.
        """
        s = self.settings
        context = (
            client_context(verify=s.verify, ca_file=s.ca_file) if s.security != "plain" else None
        )
        try:
            self.stage = "connect"
            on_stage("connect")
            self._wire = wire = await Wire.connect(address, s.effective_port, s.timeout)
            if context is not None and s.security == "tls":
                await self._tls(context)
            banner = await self._expect(220)
            self.stage = "ehlo"
            on_stage("ehlo")
            wire.limit(s.timeout)
            extensions, methods = await self._ehlo()
            if context is not None and s.security == "starttls":
                self.stage = "starttls"
                on_stage("starttls")
                if "starttls" not in extensions:
                    raise starttls_not_offered(s.host, s.effective_port)
                wire.limit(s.timeout)
                await self._command("STARTTLS", 220)
                await self._tls(context)
                extensions, methods = await self._ehlo()
            self.facts = self._facts(banner, extensions, methods)
            if login and s.user is not None:
                self.stage = "auth"
                on_stage("auth")
                password = s.password.reveal() if s.password is not None else ""
                wire.limit(s.timeout)
                await self._login(s.user, password, methods)
                self.facts = replace(self.facts, authenticated=True)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise smtp_fault(exc, self.stage) from exc
        return self.facts

    def _facts(
        self, banner: str, extensions: Mapping[str, str], methods: Sequence[str]
    ) -> SmtpFacts:
        secure = self._secure
        not_after = not_after_of(secure.getpeercert(binary_form=True)) if secure else None
        return SmtpFacts(
            banner=" ".join(banner.split())[:200],
            extensions=tuple(sorted(extensions)),
            auth_methods=tuple(methods),
            tls=secure is not None,
            tls_version=secure.version() if secure is not None else None,
            tls_days_left=None
            if not_after is None
            else math.floor((not_after - time.time()) / 86_400),
            tls_not_after=not_after,
            tls_verified=secure is not None and self.settings.verify,
        )

    async def noop(self) -> None:
        """A NOOP: the session is usable (nothing is sent)."""
        try:
            assert self._wire is not None
            self._wire.limit(self.settings.timeout)
            await self._command("NOOP", 250)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise smtp_fault(exc, "noop") from exc

    async def quit(self) -> None:
        """QUIT, and drop the connection (in every case). The relay's 221 is not waited
        for: it says nothing about the channel, and the session is over either way."""
        wire, self._wire = self._wire, None
        if wire is None:
            return
        try:
            with contextlib.suppress(OSError, TimeoutError):
                wire.limit(2.0)
                await wire.send(b"QUIT\r\n")
        finally:
            wire.close()
