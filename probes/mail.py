"""The ``mail`` channel kind: send through the municipality's relay, confirm in the mailbox.

Registry example::

    - id: mail
      kind: mail
      smtp: {host: smtp.example.lg.jp, port: 587, security: starttls,
             user: drill, password: env:ADACHI_SMTP_PW}
      from: drill@example.lg.jp
      to: [bousai-drill@example.lg.jp]          # each address is one delivery
      imap: {host: imap.example.lg.jp, user: drill-watch,
             password: env:ADACHI_IMAP_PW, mailbox: INBOX, strategy: auto}
      # or, on the mail host itself:   maildir: /var/mail/drill/Maildir
      cleanup: delete                            # remove confirmed drill mails

Without ``imap`` or ``maildir`` the channel is *accepted only*. Sightings carry
``extra`` for the scorecard: ``insecure`` (plain SMTP), ``tls_days_left``
(the relay's certificate), ``content_intact`` (subject and body read back as
sent), and the IMAP side's own TLS facts.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from probes.base import (
    Accepted,
    ChannelRejected,
    ChannelSettings,
    Clock,
    DrillMessage,
    Probe,
    ProbeEnv,
    Sighting,
)
from probes.imap_observer import ImapObserver, ImapSettings
from probes.mail_message import build_mail
from probes.mail_observer import MailObserver, SharedObservers
from probes.mail_smtp import SmtpFacts, SmtpSession, SmtpSettings, queue_id
from probes.maildir import MaildirObserver
from probes.settings import Duration
from probes.sim.base import Simulator

__all__ = ["MailProbe", "MailSettings"]

_IMAP_KEY = "mail.imap"
_MAILDIR_KEY = "mail.maildir"


class MailSettings(ChannelSettings):
    """Settings of one ``mail`` channel (unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    smtp: SmtpSettings
    sender: str = Field(alias="from")
    to: list[str]
    imap: ImapSettings | None = None
    maildir: str | None = None
    maildir_interval: Duration = Field(default=0.05, gt=0)
    cleanup: Literal["none", "delete"] = "none"

    @field_validator("to", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("to")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("to: at least one address")
        for address in value:
            if "@" not in address or any(c.isspace() for c in address):
                raise ValueError(f"not a mail address: {address!r}")
        return value

    @model_validator(mode="after")
    def _one_observer(self) -> MailSettings:
        if self.imap is not None and self.maildir is not None:
            raise ValueError("give either imap or maildir, not both")
        return self


class MailProbe(Probe):
    """Sends with aiosmtplib; confirms over IMAP (shared per mailbox) or in a Maildir."""

    kind = "mail"
    Settings = MailSettings
    settings: MailSettings

    def __init__(self, channel_id: str, settings: ChannelSettings, env: ProbeEnv) -> None:
        super().__init__(channel_id, settings, env)
        self.observer: MailObserver | None = None
        self._observer_key: tuple[str, Any] | None = None
        self._sent: dict[str, asyncio.Future[SmtpFacts | None]] = {}

    @classmethod
    def simulator(cls) -> type[Simulator]:
        from probes.sim.mail import MailSimulator

        return MailSimulator

    def confirms(self) -> bool:
        return self.settings.imap is not None or self.settings.maildir is not None

    def recipients(self) -> list[str | None]:
        return list(self.settings.to)

    # ------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        s = self.settings
        cleanup = s.cleanup == "delete"
        if s.imap is not None:
            imap = s.imap
            registry: SharedObservers[Any] = self.env.shared.setdefault(
                _IMAP_KEY, SharedObservers()
            )
            key: Any = imap.key()
            self.observer = await registry.acquire(key, lambda: ImapObserver(imap, cleanup=cleanup))
            self._observer_key = (_IMAP_KEY, key)
        elif s.maildir is not None:
            path, interval = s.maildir, s.maildir_interval
            registry = self.env.shared.setdefault(_MAILDIR_KEY, SharedObservers())
            self.observer = await registry.acquire(
                path, lambda: MaildirObserver(path, interval=interval, cleanup=cleanup)
            )
            self._observer_key = (_MAILDIR_KEY, path)

    async def close(self) -> None:
        if self._observer_key is not None:
            name, key = self._observer_key
            registry = self.env.shared.get(name)
            if registry is not None:
                await registry.release(key)
            self._observer_key = None
            self.observer = None

    # ------------------------------------------------------------ send

    async def send(self, message: DrillMessage) -> Accepted:
        s = self.settings
        recipients = [message.recipient] if message.recipient else list(s.to)
        mail = build_mail(message, sender=s.sender, to=recipients)
        throttled = 0
        facts_future = self._facts_future(message.token) if self.confirms() else None
        try:
            while True:
                try:
                    async with SmtpSession(s.smtp) as session:
                        code, text, refused = await session.send(
                            mail, sender=s.sender, recipients=recipients
                        )
                        facts = session.facts
                    break
                except ChannelRejected as exc:
                    if not exc.temporary or throttled >= s.smtp.retries:
                        raise
                    throttled += 1
                    await asyncio.sleep(s.smtp.retry_delay * 2 ** (throttled - 1))
        except BaseException:
            if facts_future is not None and not facts_future.done():
                facts_future.set_result(None)
            raise
        accepted_at = Clock.monotonic()
        if facts_future is not None and not facts_future.done():
            facts_future.set_result(facts)
        detail = f"{code} {' '.join(text.split())[:160]} · {facts.summary()}"
        if refused:
            detail += " · refused: " + "; ".join(f"{k} {v}" for k, v in refused.items())
        return Accepted(
            at=accepted_at,
            provider_id=queue_id(text) or str(mail["Message-ID"]).strip("<>"),
            detail=detail,
            throttled=throttled,
        )

    def _facts_future(self, token: str) -> asyncio.Future[SmtpFacts | None]:
        fut = self._sent.get(token)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self._sent[token] = fut
        return fut

    # ------------------------------------------------------------ observe

    async def observe(self, message: DrillMessage) -> Sighting:
        if self.observer is None:
            await self.open()
        observer = self.observer
        if observer is None:
            raise RuntimeError(f"{self.channel_id}: mail channel has no observer (accepted only)")
        token = message.token
        facts_future = self._facts_future(token)
        observer.expect(token, Clock.monotonic(), message)
        try:
            sighting = await observer.wait(token)
            # 250 may come after the mail is already visible: give the send a moment.
            facts = None
            with contextlib.suppress(TimeoutError):
                facts = await asyncio.wait_for(asyncio.shield(facts_future), 5.0)
        finally:
            observer.forget(token)
            self._sent.pop(token, None)
        return _with_send_facts(sighting, facts)

    async def check(self) -> Any:
        """Reachability without sending: see :func:`probes.mail_check.check_mail`."""
        from probes.mail_check import check_mail

        return await check_mail(self.settings.smtp, self.settings.imap)


def _with_send_facts(sighting: Sighting, facts: SmtpFacts | None) -> Sighting:
    if facts is None:
        return sighting
    extra = dict(sighting.extra)
    extra["insecure"] = facts.insecure
    if facts.tls_days_left is not None:
        extra["tls_days_left"] = facts.tls_days_left
    if facts.tls_version:
        extra["smtp_tls"] = facts.tls_version
    return replace(sighting, extra=extra)
