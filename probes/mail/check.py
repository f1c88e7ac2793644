"""Preflight of a mail channel: can it work? Checked without sending anything.

SMTP: DNS, banner, EHLO, STARTTLS (or SMTPS), AUTH, NOOP, QUIT. IMAP: DNS,
connect, STARTTLS where used, login, and a read-only EXAMINE of the observed
mailbox (nothing is marked read). Each stage is a timed phase of a
:class:`~probes.preflight.PreflightReport`, and both certificates' ``notAfter``
are recorded::

    report = await preflight_mail("131211/mail", settings)
    report.ok, report.reason, report.certificates, report.facts["smtp_tls"]

A channel without an observer (no ``imap`` and no ``maildir``) fails at
``observer.read``: its drills could only say "accepted", never "delivered".
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
from typing import TYPE_CHECKING

from probes.base import ChannelUnreachable, ObserverFault
from probes.mail.imap_connection import ImapConnection, ImapSettings, LostConnection
from probes.mail.smtp import SmtpSession, SmtpSettings
from probes.preflight import PhaseClass, PhaseTimer, PreflightReport, Reason

if TYPE_CHECKING:
    from probes.mail.probe import MailSettings

__all__ = ["preflight_mail", "resolve"]

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


async def resolve(host: str, port: int, side: str) -> str:
    """The addresses of *host* (the DNS phase); a failure is a ChannelUnreachable."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ChannelUnreachable(
            f"{side} 名前解決できません（{host}） / cannot resolve {host}: {exc.strerror}",
            code="dns",
        ) from exc
    return ", ".join(sorted({str(info[4][0]) for info in infos}))


_local_name: list[str] = []  # this host's name, once looked up


async def _ehlo_name() -> str:
    """The name to say in EHLO: this host's, looked up once per process.

    aiosmtplib would ask a worker thread for ``socket.getfqdn()`` on every
    connection: a thread hop per check, for a name that does not change.
    """
    if not _local_name:
        _local_name.append(await asyncio.to_thread(socket.getfqdn))
    return _local_name[0]


async def _smtp(timer: PhaseTimer, s: SmtpSettings) -> None:
    if s.helo is None:
        s = s.model_copy(update={"helo": await _ehlo_name()})
    if not _is_literal(s.host):
        async with timer.phase("smtp.dns", "dns") as note:
            note["detail"] = await resolve(s.host, s.effective_port, "SMTP")
    session = SmtpSession(s)
    try:
        async with timer.stages("smtp", _SMTP_STAGES) as stages:
            facts = await session.open(on_stage=stages.enter)
            stages.details.update(
                connect=facts.banner,
                ehlo=" ".join(facts.extensions),
                starttls=facts.summary(),
                auth=s.user or "",
            )
        async with timer.phase("smtp.noop", "connect"):
            await session.check()
    finally:
        timer.certificate("smtp", s.host, s.effective_port, session.facts.tls_not_after)
        if session.facts.banner:  # 0: plain SMTP, mail and password readable on the way
            timer.fact("smtp_tls", float(session.facts.tls))
        await session.close()


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
        await _smtp(timer, settings.smtp)
        if settings.imap is not None:
            await _imap(timer, settings.imap)
        elif settings.maildir is not None:
            await _maildir(timer, settings.maildir)
        else:
            timer.fail(
                "observer.read",
                "read",
                Reason(
                    "観測側（imap か maildir）が設定されていません: 着信を確認できず「受付のみ」になります",
                    "no observer (imap or maildir) is configured: arrival cannot be "
                    "confirmed, drills can only say 'accepted'",
                ),
                code="no-observer",
            )
    return timer.report()
