"""Reachability of a mail channel without sending anything.

SMTP: banner, EHLO, STARTTLS (or SMTPS), AUTH, NOOP, QUIT. IMAP: login and
SELECT of the drill mailbox. Each step is reported with how long it took, and
the TLS certificates' days to expiry are recorded on both sides.

    report = await check_mail(settings.smtp, settings.imap)
    report.ok, report.reason, report.tls_days_left
"""

from __future__ import annotations

from dataclasses import dataclass

from probes.base import Clock, ProbeError
from probes.mail.imap_connection import ImapConnection, ImapSettings, LostConnection
from probes.mail.smtp import SmtpFacts, SmtpSession, SmtpSettings

__all__ = ["CheckStep", "MailReachability", "check_mail"]


@dataclass(frozen=True, slots=True)
class CheckStep:
    name: str  # smtp.connect, smtp.ehlo, smtp.starttls, smtp.auth, imap.login
    ok: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class MailReachability:
    """The outcome of :func:`check_mail`."""

    steps: tuple[CheckStep, ...]
    elapsed_s: float
    smtp: SmtpFacts | None = None
    imap_tls_days_left: int | None = None

    @property
    def ok(self) -> bool:
        return all(step.ok for step in self.steps)

    @property
    def reason(self) -> str:
        failed = [step for step in self.steps if not step.ok]
        return f"{failed[0].name}: {failed[0].detail}" if failed else ""

    @property
    def insecure(self) -> bool:
        return self.smtp is not None and self.smtp.insecure

    @property
    def tls_days_left(self) -> int | None:
        return self.smtp.tls_days_left if self.smtp is not None else None


def _smtp_stages(settings: SmtpSettings) -> list[str]:
    stages = ["connect", "ehlo"]
    if settings.security == "starttls":
        stages.append("starttls")
    if settings.user is not None:
        stages.append("auth")
    return stages


async def _check_smtp(settings: SmtpSettings, steps: list[CheckStep]) -> SmtpFacts | None:
    session = SmtpSession(settings)
    stages = _smtp_stages(settings)
    try:
        facts = await session.open()
        await session.check()
    except ProbeError as exc:
        failed = session.stage if session.stage in stages else stages[-1]
        for stage in stages[: stages.index(failed)]:
            steps.append(CheckStep(f"smtp.{stage}", True))
        steps.append(CheckStep(f"smtp.{failed}", False, exc.reason))
        return session.facts if session.facts.banner else None
    finally:
        await session.close()
    details = {
        "connect": facts.banner,
        "ehlo": " ".join(facts.extensions),
        "starttls": facts.summary(),
        "auth": "authenticated",
    }
    steps.extend(CheckStep(f"smtp.{stage}", True, details[stage]) for stage in stages)
    return facts


async def _check_imap(settings: ImapSettings, steps: list[CheckStep]) -> int | None:
    conn = ImapConnection(settings)
    try:
        await conn.open()
    except ProbeError as exc:
        steps.append(CheckStep("imap.login", False, exc.reason))
        return conn.tls_days_left
    except LostConnection as exc:
        steps.append(CheckStep("imap.login", False, str(exc)))
        return conn.tls_days_left
    finally:
        await conn.close()
    steps.append(CheckStep("imap.login", True, f"{settings.user} / {settings.mailbox}"))
    return conn.tls_days_left


async def check_mail(smtp: SmtpSettings, imap: ImapSettings | None = None) -> MailReachability:
    """Check both ends of a mail channel; never sends a message."""
    started = Clock.monotonic()
    steps: list[CheckStep] = []
    facts = await _check_smtp(smtp, steps)
    imap_days = await _check_imap(imap, steps) if imap is not None else None
    return MailReachability(
        steps=tuple(steps),
        elapsed_s=Clock.monotonic() - started,
        smtp=facts,
        imap_tls_days_left=imap_days,
    )
