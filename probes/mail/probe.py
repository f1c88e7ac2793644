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
      observed: [bousai-drill@example.lg.jp]     # which `to` land in that mailbox
      cleanup: delete                            # remove confirmed drill mails

Without ``imap`` or ``maildir`` the channel is *accepted only*. With one
observed mailbox and several ``to`` addresses, only the addresses delivered
into that mailbox are confirmed (``observed``; by default the only ``to``
address, or those whose name is the IMAP user's or a folder of the Maildir
path); mail to the others is *accepted*, unconfirmed — never ``lost``.

Sightings carry ``extra`` for the scorecard: ``insecure`` (plain SMTP),
``tls_days_left`` (the relay's certificate), ``content_intact`` (subject and
body read back as sent), ``matched_by`` (token header, or subject/body when a
sanitising gateway stripped it), and the IMAP side's own TLS facts.

Every temporary refusal (``451 4.7.1`` "slow down") is counted per message with
:meth:`Probe.note_throttle` as it happens, so a send that runs out of time while
throttled says so; each retry's session is noted (:meth:`Probe.note_try`) until its
answer is read, so a send cut mid-retry says that retry went unanswered. The acceptance time is the relay's 250 after DATA; the
session is closed (QUIT) in the background, not on the send's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, Literal

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
from probes.mail.imap_observer import ImapObserver, ImapSettings
from probes.mail.maildir import MaildirObserver
from probes.mail.message import build_mail
from probes.mail.observer import MailObserver, SharedObservers
from probes.mail.smtp import SmtpFacts, SmtpSession, SmtpSettings, queue_id, refusal_code
from probes.sendmark import mark_left
from probes.settings import Duration
from probes.sim.base import Simulator

if TYPE_CHECKING:
    from probes.preflight import PreflightReport

__all__ = ["MailProbe", "MailSettings"]

_IMAP_KEY = "mail.imap"
_MAILDIR_KEY = "mail.maildir"


class MailSettings(ChannelSettings):
    """Settings of one ``mail`` channel (unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    smtp: SmtpSettings = Field(description="送信に使う中継サーバ / the relay that sends")
    sender: str = Field(alias="from", description="差出人アドレス / the sender's address")
    to: list[str] = Field(
        description="宛先（1 つか複数、宛先ごとに 1 配信） / the recipients (one or several; each is one delivery)"
    )
    imap: ImapSettings | None = Field(
        default=None,
        description="着信を確かめるメールボックス（IMAP）。imap も maildir もなければ「受付のみ」 / the mailbox that confirms arrival (IMAP); without imap or maildir: accepted only",
    )
    maildir: str | None = Field(
        default=None,
        description="メールサーバ上で直接読む Maildir のパス（imap の代わり） / a Maildir path read on the mail host itself (instead of imap)",
    )
    maildir_interval: Duration = Field(
        default=0.05, gt=0, description="Maildir を見る間隔 / how often the Maildir is read"
    )
    observed: list[str] | None = Field(
        default=None,
        description="観測するメールボックスに届く to のアドレス / which to addresses land in the observed mailbox",
    )
    cleanup: Literal["none", "delete"] = Field(
        default="none",
        description="delete: 確認した訓練メールを消す / delete: remove confirmed drill mails",
    )

    @field_validator("to", mode="before", json_schema_input_type=str | list[str])
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

    @field_validator("observed", mode="before", json_schema_input_type=str | list[str] | None)
    @classmethod
    def _observed_one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_observer(self) -> MailSettings:
        if self.imap is not None and self.maildir is not None:
            raise ValueError("give either imap or maildir, not both")
        if self.observed is not None:
            if self.imap is None and self.maildir is None:
                raise ValueError("observed: needs imap or maildir (the mailbox that is observed)")
            to = {a.lower() for a in self.to}
            stray = [a for a in self.observed if a.lower() not in to]
            if stray:
                raise ValueError(f"observed: not among the to addresses: {', '.join(stray)}")
        elif (self.imap is not None or self.maildir is not None) and not self.observed_addresses:
            raise ValueError(
                "to に複数の宛先があり、どれが観測するメールボックスに届くか分かりません。"
                "observed: で指定してください / several to addresses and none is recognisably "
                "the observed mailbox's: name it with observed: [address]"
            )
        return self

    @property
    def observed_addresses(self) -> frozenset[str]:
        """The ``to`` addresses (lower case) delivered into the observed mailbox."""
        if self.imap is None and self.maildir is None:
            return frozenset()
        if self.observed is not None:
            return frozenset(a.lower() for a in self.observed)
        if len(self.to) == 1:
            return frozenset({self.to[0].lower()})
        names: set[str] = set()
        if self.imap is not None:
            names.add(self.imap.user.lower())
        if self.maildir is not None:
            names.update(part.lower() for part in PurePath(self.maildir).parts)
        return frozenset(
            a.lower() for a in self.to if a.lower() in names or a.lower().partition("@")[0] in names
        )


class MailProbe(Probe):
    """Sends with aiosmtplib; confirms over IMAP (shared per mailbox) or in a Maildir."""

    kind = "mail"
    summary = (
        "メール: 団体の中継サーバ（SMTP）から送り、受信箱（IMAP か Maildir）で着信を確認",
        "mail: send through the municipality's relay (SMTP), confirm in the mailbox (IMAP or Maildir)",
    )
    Settings = MailSettings
    settings: MailSettings

    def __init__(self, channel_id: str, settings: ChannelSettings, env: ProbeEnv) -> None:
        super().__init__(channel_id, settings, env)
        self.observer: MailObserver | None = None
        self._observer_key: tuple[str, Any] | None = None
        self._sent: dict[str, asyncio.Future[SmtpFacts | None]] = {}
        self._closing: set[asyncio.Task[None]] = set()

    @classmethod
    def simulator(cls) -> type[Simulator]:
        from probes.sim.mail import MailSimulator

        return MailSimulator

    def confirms(self) -> bool:
        return self.settings.imap is not None or self.settings.maildir is not None

    def recipients(self) -> list[str | None]:
        return list(self.settings.to)

    def observes(self, recipient: str | None) -> bool:
        """Only ``to`` addresses delivered into the observed mailbox are confirmed."""
        observed = self.settings.observed_addresses
        if recipient is None:
            return bool(observed)
        return recipient.lower() in observed

    def observer_trouble(self) -> str | None:
        """Why the IMAP/Maildir observer cannot look at its mailbox right now."""
        return self.observer.trouble if self.observer is not None else None

    # ------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        s = self.settings
        cleanup = s.cleanup == "delete"
        if s.imap is not None:
            imap = s.imap
            registry: SharedObservers[Any] = self.env.shared.setdefault(
                _IMAP_KEY, SharedObservers()
            )
            # Keyed on everything that decides what the connection sees (password,
            # security, CA, timing, clean-up): a channel never lends its settings to another.
            key: Any = (*imap.connection_key(), cleanup)
            self.observer = await registry.acquire(key, lambda: ImapObserver(imap, cleanup=cleanup))
            self._observer_key = (_IMAP_KEY, key)
        elif s.maildir is not None:
            path, interval = s.maildir, s.maildir_interval
            registry = self.env.shared.setdefault(_MAILDIR_KEY, SharedObservers())
            key = (path, interval, cleanup)
            self.observer = await registry.acquire(
                key, lambda: MaildirObserver(path, interval=interval, cleanup=cleanup)
            )
            self._observer_key = (_MAILDIR_KEY, key)

    async def close(self) -> None:
        while self._closing:
            await asyncio.wait(set(self._closing))
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
        watched = self.confirms() and self.observes(message.recipient)
        facts_future = self._facts_future(message.token) if watched else None
        try:
            while True:
                session = SmtpSession(s.smtp)
                try:
                    # The message starts to leave with this session (probes.sendmark):
                    # connecting, TLS and AUTH are the channel's time.
                    mark_left("smtp")
                    self.note_try(message.token)  # a cut from here on leaves its answer unread
                    await session.open()
                    code, text, refused = await session.send(
                        mail, sender=s.sender, recipients=recipients
                    )
                    accepted_at = Clock.monotonic()  # the 250 after DATA, not after QUIT
                    self.note_answered(message.token)
                    facts = session.facts
                    self._close_later(session)
                    break
                except ChannelRejected as exc:
                    self._close_later(session)
                    if exc.temporary:
                        self.note_throttle(message.token, refusal_code(exc))
                    if not exc.temporary or throttled >= s.smtp.retries:
                        raise
                    throttled += 1
                    await asyncio.sleep(s.smtp.retry_delay * 2 ** (throttled - 1))
                except BaseException:
                    self._close_later(session)  # a cancelled send must not wait for QUIT
                    raise
        except BaseException:
            if facts_future is not None and not facts_future.done():
                facts_future.set_result(None)
            raise
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

    def _close_later(self, session: SmtpSession) -> None:
        """QUIT after the message was accepted, off the send's clock (awaited by close())."""
        task = asyncio.ensure_future(session.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

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

    async def preflight(self) -> PreflightReport:
        """Can this channel work? Checked without sending: see :mod:`probes.mail.check`."""
        from probes.mail.check import preflight_mail

        return await preflight_mail(self.channel_id, self.settings)


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
