"""Preflight of a mail channel: can it work? Checked without sending anything.

SMTP: DNS, banner, EHLO, STARTTLS (or SMTPS), AUTH, NOOP, QUIT — spoken over a
non-blocking socket (:mod:`probes.mail.smtp_check`), not aiosmtplib's
transport, for a fraction of the CPU per check. IMAP: DNS,
connect, STARTTLS where used, login, and a read-only EXAMINE of the observed
mailbox (nothing is marked read). Each stage is a timed phase of a
:class:`~probes.preflight.PreflightReport`, and both certificates' ``notAfter``
are recorded::

    report = await preflight_mail("131211/mail", settings)
    report.ok, report.reason, report.certificates, report.facts["smtp_tls"]

A channel without an observer (no ``imap`` and no ``maildir``) is checked as far
as it goes and says so (fact ``observer_configured`` 0): its drills could only
say "accepted", never "delivered" — the rule for every kind (:mod:`probes.preflight`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import ssl
from typing import TYPE_CHECKING

from probes.base import ChannelUnreachable, ObserverFault
from probes.endpoint import Wire
from probes.mail.imap_connection import ImapConnection, ImapSettings, LostConnection
from probes.mail.smtp import SmtpSettings
from probes.mail.smtp_check import SmtpDialogue
from probes.mail.tls import client_context
from probes.preflight import PhaseClass, PhaseTimer, PreflightReport, not_after_of

if TYPE_CHECKING:
    from probes.mail.probe import MailSettings

__all__ = ["preflight_mail", "preflight_mail_tls", "resolve"]

_SMTP_STAGES: dict[str, PhaseClass] = {
    "connect": "connect",
    "ehlo": "connect",
    "starttls": "tls",
    "auth": "auth",
}
_IMAP_STAGES: dict[str, PhaseClass] = {
    "connect": "connect",
    "starttls": "tls",
    "auth": "auth",
    "read": "read",
}


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _addresses(host: str, port: int, side: str) -> list[str]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ChannelUnreachable(
            f"{side} 名前解決できません（{host}） / cannot resolve {host}: {exc.strerror}",
            code="dns",
        ) from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def resolve(host: str, port: int, side: str) -> str:
    """The addresses of *host* (the DNS phase); a failure is a ChannelUnreachable."""
    return ", ".join(sorted(await _addresses(host, port, side)))


_local_name: list[str] = []  # this host's name, once looked up


async def _ehlo_name() -> str:
    """The name to say in EHLO: this host's, looked up once per process.

    aiosmtplib would ask a worker thread for ``socket.getfqdn()`` on every
    connection: a thread hop per check, for a name that does not change.
    """
    if not _local_name:
        _local_name.append(await asyncio.to_thread(socket.getfqdn))
    return _local_name[0]


async def _smtp(timer: PhaseTimer, s: SmtpSettings, *, full: bool = True) -> None:
    address = s.host
    if not _is_literal(s.host):
        async with timer.phase("smtp.dns", "dns") as note:
            found = await _addresses(s.host, s.effective_port, "SMTP")
            note["detail"] = ", ".join(sorted(found))
            address = found[0]  # the resolver's first choice, as a client connects
    dialogue = SmtpDialogue(s, helo=s.helo or await _ehlo_name())
    try:
        async with timer.stages("smtp", _SMTP_STAGES) as stages:
            facts = await dialogue.open(address, on_stage=stages.enter, login=full)
            stages.details.update(
                connect=facts.banner,
                ehlo=" ".join(facts.extensions),
                starttls=facts.summary(),
                auth=s.user or "",
            )
        if full:
            async with timer.phase("smtp.noop", "connect"):
                await dialogue.noop()
    finally:
        timer.certificate("smtp", s.host, s.effective_port, dialogue.facts.tls_not_after)
        if dialogue.facts.banner:  # 0: plain SMTP, mail and password readable on the way
            timer.fact("smtp_tls", float(dialogue.facts.tls))
        await dialogue.quit()


async def _imap(timer: PhaseTimer, s: ImapSettings) -> None:
    if not _is_literal(s.host):
        async with timer.phase("imap.dns", "dns") as note:
            note["detail"] = await resolve(s.host, s.effective_port, "IMAP")
    conn = ImapConnection(s)
    try:
        async with timer.stages("imap", _IMAP_STAGES) as stages:
            try:
                await conn.open(on_stage=stages.enter)
            except LostConnection as exc:
                raise ObserverFault(str(exc), code="connect") from exc
            finally:
                timer.certificate("imap", s.host, s.effective_port, conn.tls_not_after)
            stages.details.update(auth=s.user, read=s.mailbox)
    finally:
        await conn.close()


async def _imap_tls(timer: PhaseTimer, s: ImapSettings) -> None:
    """IMAP up to its TLS: connect and greeting, ``STARTTLS`` where used, the handshake
    and the certificate — no login (``module=tls``)."""
    address = s.host
    if not _is_literal(s.host):
        async with timer.phase("imap.dns", "dns") as note:
            found = await _addresses(s.host, s.effective_port, "IMAP")
            note["detail"] = ", ".join(sorted(found))
            address = found[0]
    context = client_context(verify=s.verify, ca_file=s.ca_file)
    wire: Wire | None = None
    try:
        async with timer.phase("imap.connect", "connect") as note:
            wire = await Wire.connect(address, s.effective_port, s.timeout)
            if s.security == "tls":
                secure = await wire.start_tls(context, s.host)
                timer.certificate("imap", s.host, s.effective_port, _not_after(secure))
            note["detail"] = _imap_line(await wire.read_line(), "*", "OK")
        if s.security == "starttls":
            async with timer.phase("imap.starttls", "tls") as note:
                wire.limit(s.timeout)
                await wire.send(b"t1 STARTTLS\r\n")
                _imap_line(await wire.read_line(), "t1", "OK")
                secure = await wire.start_tls(context, s.host)
                timer.certificate("imap", s.host, s.effective_port, _not_after(secure))
                note["detail"] = str(secure.version())
    finally:
        if wire is not None:
            wire.close()


def _not_after(secure: ssl.SSLObject) -> float | None:
    return not_after_of(secure.getpeercert(binary_form=True))


def _imap_line(raw: bytes, tag: str, status: str) -> str:
    """An IMAP answer line that must be ``{tag} {status} …``; its text.

    >>> _imap_line(b"* OK [CAPABILITY IMAP4rev1] Dovecot ready.\\r\\n", "*", "OK")
    '* OK [CAPABILITY IMAP4rev1] Dovecot ready.'
    """
    line = raw.decode("utf-8", "replace").strip()
    words = line.split(" ", 2)
    if len(words) < 2 or words[0] != tag or words[1].upper() != status:
        raise ChannelUnreachable(
            f"IMAP の応答が想定と違います（{line[:80]}） / unexpected IMAP answer: {line[:80]}",
            code="connect",
        )
    return line[:200]


async def preflight_mail_tls(target: str, settings: MailSettings) -> PreflightReport:
    """``module=tls``: SMTP up to STARTTLS and IMAP up to its TLS, each certificate; no
    login, nothing read."""
    async with PhaseTimer(target, "mail") as timer:
        await _smtp(timer, settings.smtp, full=False)
        if settings.imap is not None:
            await _imap_tls(timer, settings.imap)
    return timer.report()


async def _maildir(timer: PhaseTimer, path: str) -> None:
    async with timer.phase("maildir.read", "read") as note:
        if not os.access(os.path.join(path, "new"), os.R_OK | os.X_OK):
            raise ObserverFault(
                f"Maildir を読めません（{path}/new） / cannot read the Maildir {path}/new",
                code="read",
            )
        note["detail"] = path


async def preflight_mail(target: str, settings: MailSettings) -> PreflightReport:
    """Check both ends of a mail channel; never sends a message."""
    async with PhaseTimer(target, "mail") as timer:
        observed = settings.imap is not None or settings.maildir is not None
        timer.fact("observer_configured", 1.0 if observed else 0.0)
        await _smtp(timer, settings.smtp)
        if settings.imap is not None:
            await _imap(timer, settings.imap)
        elif settings.maildir is not None:
            await _maildir(timer, settings.maildir)
    return timer.report()
