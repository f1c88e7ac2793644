"""Sending drill mail with aiosmtplib, and mapping SMTP facts to probe outcomes.

Security modes (``smtp.security``):

- ``starttls`` — submission (587): plain connect, STARTTLS required, then AUTH
- ``tls``      — SMTPS (465): TLS from the first byte
- ``plain``    — plain SMTP (25): allowed, but flagged *insecure* on the scorecard

How SMTP facts map (``smtp_fault``)::

    250 after DATA                          accepted (the observer decides delivered)
    4xx at any step                         ChannelRejected(temporary=True), server text kept
    5xx at any step, 535 on AUTH            ChannelRejected
    refused / timeout / disconnect / TLS    ChannelUnreachable
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from email.message import Message
from typing import Literal

import aiosmtplib
from pydantic import Field

from probes.base import (
    ChannelRejected,
    ChannelSettings,
    ChannelUnreachable,
    ProbeError,
)
from probes.mail.tls import client_context, is_certificate_error, tls_reason
from probes.preflight import not_after_of
from probes.settings import Duration, SecretRef, SecretUnresolvable

__all__ = [
    "SmtpFacts",
    "SmtpSession",
    "SmtpSettings",
    "queue_id",
    "refusal_code",
    "smtp_fault",
    "starttls_not_offered",
]

Security = Literal["starttls", "tls", "plain"]
_DEFAULT_PORTS = {"starttls": 587, "tls": 465, "plain": 25}


class SmtpSettings(ChannelSettings):
    """The municipality's relay as the drill sender uses it."""

    host: str = Field(description="中継サーバのホスト名 / the relay's host name")
    port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="ポート（省略時: starttls 587、tls 465、plain 25） / the port (default: starttls 587, tls 465, plain 25)",
    )
    security: Security = Field(
        default="starttls",
        description="starttls: 587 で STARTTLS 必須、tls: 465 で最初から TLS、plain: 暗号化なし（安全でないと表示） / starttls: STARTTLS required (587); tls: TLS from the first byte (465); plain: no encryption (flagged insecure)",
    )
    user: str | None = Field(
        default=None,
        description="SMTP 認証のユーザー（省略時は認証しない） / SMTP AUTH user (none: no authentication)",
    )
    password: SecretRef | None = Field(
        default=None, description="SMTP 認証のパスワード / SMTP AUTH password"
    )
    ca_file: str | None = Field(
        default=None,
        description="サーバ証明書を検証する CA（PEM） / a CA file (PEM) to verify the server's certificate",
    )
    verify: bool = Field(
        default=True, description="証明書を検証する / verify the server's certificate"
    )
    timeout: Duration = Field(
        default=30.0, description="各段階の制限時間 / time limit of each step"
    )
    retries: int = Field(
        default=2,
        ge=0,
        le=10,
        description="一時的な拒否（4xx）のときの再送回数 / retries after a temporary refusal (4xx)",
    )  # on 4xx ("try again later")
    retry_delay: Duration = Field(
        default=1.0,
        description="最初の再送までの待ち（毎回 2 倍） / wait before the first retry (doubles every time)",
    )  # doubles on every retry
    helo: str | None = Field(
        default=None,
        description="EHLO で名乗る名前（省略時はホスト名） / the EHLO name (default: this host's name)",
    )  # EHLO name; default: the local host name

    @property
    def effective_port(self) -> int:
        return self.port or _DEFAULT_PORTS[self.security]


@dataclass(frozen=True, slots=True)
class SmtpFacts:
    """What a session learnt about the relay (for Accepted.detail and the scorecard)."""

    banner: str = ""
    extensions: tuple[str, ...] = ()
    auth_methods: tuple[str, ...] = ()
    tls: bool = False
    tls_version: str | None = None
    tls_days_left: int | None = None
    tls_not_after: float | None = None  # the certificate's notAfter, epoch seconds
    tls_verified: bool = False
    authenticated: bool = False

    @property
    def insecure(self) -> bool:
        """Plain SMTP without TLS: mail and any password cross the network readable."""
        return not self.tls

    def summary(self) -> str:
        if not self.tls:
            return "plain (insecure)"
        parts = [self.tls_version or "TLS"]
        if not self.tls_verified:
            parts.append("unverified")
        if self.tls_days_left is not None:
            parts.append(f"cert {self.tls_days_left}d")
        return " ".join(parts)


_QUEUED_RE = re.compile(r"queued as ([A-Za-z0-9._-]+)", re.I)


def queue_id(message: str) -> str | None:
    """The relay's queue id from its 250 text, e.g. Postfix ``2.0.0 Ok: queued as 4Xb…``."""
    match = _QUEUED_RE.search(message)
    return match.group(1) if match else None


_ENHANCED_RE = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")


def refusal_code(fault: ChannelRejected) -> str:
    """The reply code of a refusal with its enhanced status when given, e.g. ``451 4.7.1``.

    >>> refusal_code(_code_fault(451, "4.7.1 Rate limit exceeded", "MAIL FROM"))
    '451 4.7.1'
    """
    code = fault.code or "?"
    text = fault.reason.partition("): ")[2]
    found = _ENHANCED_RE.match(text.strip())
    return f"{code} {found.group(1)}" if found else code


def starttls_not_offered(host: str, port: int) -> ChannelRejected:
    """The channel asks for STARTTLS and the relay does not offer it: a configuration error.

    Not a lost message and not an outage: no retry will change it. The fix is in
    the registry (``security``) or on the relay.
    """
    return ChannelRejected(
        f"設定誤り: SMTP サーバー {host}:{port} は STARTTLS を提供していません"
        "（security: starttls）。security の設定かサーバーを確認してください / "
        f"configuration error: the server {host}:{port} does not offer STARTTLS "
        "(security: starttls) — check the channel's security setting or the relay",
        code="starttls-not-offered",
    )


def _code_fault(code: int, text: str, what: str) -> ChannelRejected:
    text = " ".join(text.split())[:300]
    temporary = 400 <= code < 500
    kind = "一時拒否 / deferred" if temporary else "拒否 / rejected"
    return ChannelRejected(
        f"SMTP {code} {kind} ({what}): {text}", code=str(code), temporary=temporary
    )


def smtp_fault(exc: BaseException, stage: str) -> ProbeError:
    """Map an aiosmtplib (or socket/TLS) exception raised during *stage* to a probe error."""
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return ChannelRejected(
            f"SMTP 認証失敗 / authentication failed: {exc.code} {' '.join(exc.message.split())}",
            code=str(exc.code),
            temporary=400 <= exc.code < 500,
        )
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        first = exc.recipients[0] if exc.recipients else None
        if first is not None:
            return _code_fault(first.code, first.message, f"RCPT {first.recipient}")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _code_fault(exc.code, exc.message, stage)
    if is_certificate_error(exc):
        return ChannelUnreachable(f"SMTP {tls_reason(exc)}", code="tls")
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return ChannelUnreachable(f"SMTP タイムアウト / timed out ({stage})", code="timeout")
    if isinstance(exc, aiosmtplib.SMTPConnectError | aiosmtplib.SMTPServerDisconnected):
        return ChannelUnreachable(
            f"SMTP 接続失敗 / cannot connect ({stage}): {exc}", code="connect"
        )
    if isinstance(exc, OSError):
        return ChannelUnreachable(
            f"SMTP 接続失敗 / cannot connect ({stage}): {exc}", code="connect"
        )
    if isinstance(exc, aiosmtplib.SMTPException) and stage == "starttls":
        return ChannelUnreachable(
            "SMTP STARTTLS 非対応 / server does not offer STARTTLS", code="tls"
        )
    if isinstance(exc, aiosmtplib.SMTPException) and stage == "auth":
        return ChannelRejected(
            f"SMTP 認証できません / cannot authenticate: {exc}", code="auth-unsupported"
        )
    if isinstance(exc, aiosmtplib.SMTPException):
        return ChannelUnreachable(f"SMTP エラー / error ({stage}): {exc}", code="smtp")
    raise TypeError(f"not an SMTP failure: {exc!r}")


def _days_left(not_after: float) -> int:
    """Whole days until *not_after* (negative once past), as ``cert_days_left`` counts them."""
    return math.floor((not_after - time.time()) / 86_400)


def _quiet(_stage: str) -> None:
    """No one is listening to the stages."""


@dataclass
class SmtpSession:
    """One SMTP conversation, step by step, so every failure names its step.

    ``async with SmtpSession(settings) as session: await session.send(mail, …)``
    """

    settings: SmtpSettings
    facts: SmtpFacts = field(default_factory=SmtpFacts)
    _client: aiosmtplib.SMTP | None = None
    stage: str = "connect"  # the step in progress (or that failed)

    async def __aenter__(self) -> SmtpSession:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(
        self, *, login: bool = True, on_stage: Callable[[str], None] | None = None
    ) -> SmtpFacts:
        """Banner, EHLO, STARTTLS (or SMTPS), EHLO again, AUTH. Raises ProbeError.

        ``on_stage`` hears each stage begin (``connect``, ``ehlo``, ``starttls``,
        ``auth``; the EHLO after STARTTLS belongs to ``starttls``) — for timing.
        """
        announce = on_stage or _quiet
        s = self.settings
        context = (
            client_context(verify=s.verify, ca_file=s.ca_file) if s.security != "plain" else None
        )
        client = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.effective_port,
            use_tls=s.security == "tls",
            start_tls=False,
            tls_context=context,
            timeout=s.timeout,
            local_hostname=s.helo,
        )
        self._client = client
        try:
            self.stage = "connect"
            announce("connect")
            banner = await client.connect()
            self.stage = "ehlo"
            announce("ehlo")
            await client.ehlo()
            if s.security == "starttls":
                self.stage = "starttls"
                announce("starttls")
                if not client.supports_extension("starttls"):
                    await self.close()
                    raise starttls_not_offered(s.host, s.effective_port)
                await client.starttls(tls_context=context)
                self.stage = "ehlo"
                await client.ehlo()
            self.facts = self._facts(client, banner.message, s)
            if login and s.user is not None:
                self.stage = "auth"
                announce("auth")
                password = s.password.reveal() if s.password is not None else ""
                await client.login(s.user, password)
                self.facts = replace(self.facts, authenticated=True)
        except SecretUnresolvable:
            await self.close()
            raise
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            await self.close()
            raise smtp_fault(exc, self.stage) from exc
        return self.facts

    @staticmethod
    def _facts(client: aiosmtplib.SMTP, banner: str, s: SmtpSettings) -> SmtpFacts:
        ssl_object = client.get_transport_info("ssl_object")
        tls = ssl_object is not None
        # the certificate parsed once: its notAfter gives the days left too
        not_after = not_after_of(ssl_object.getpeercert(binary_form=True)) if tls else None
        return SmtpFacts(
            banner=" ".join(banner.split())[:200],
            extensions=tuple(sorted(client.esmtp_extensions)),
            auth_methods=tuple(client.server_auth_methods),
            tls=tls,
            tls_version=ssl_object.version() if tls else None,
            tls_days_left=_days_left(not_after) if not_after is not None else None,
            tls_not_after=not_after,
            tls_verified=tls and s.verify,
        )

    async def send(
        self, mail: Message, *, sender: str, recipients: list[str]
    ) -> tuple[int, str, dict[str, str]]:
        """MAIL, RCPT, DATA. Returns (code, text, refused recipients) of the final 250."""
        assert self._client is not None, "open() first"
        self.stage = "data"
        try:
            refused, text = await self._client.send_message(
                mail, sender=sender, recipients=recipients
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise smtp_fault(exc, self.stage) from exc
        # aiosmtplib raises unless DATA ended in 250; *text* is the server's text after it.
        return 250, text, {rcpt: f"{r.code} {r.message}" for rcpt, r in refused.items()}

    async def check(self) -> None:
        """A NOOP, to prove the session is usable without sending (reachability checks)."""
        assert self._client is not None
        try:
            await self._client.noop()
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise smtp_fault(exc, "noop") from exc

    async def close(self) -> None:
        """QUIT if the session is up; in every case drop the connection (also a half-open
        one left by a cancelled connect, which would otherwise leak its socket)."""
        client, self._client = self._client, None
        if client is None:
            return
        try:
            if client.is_connected:
                await asyncio.wait_for(client.quit(), timeout=2.0)
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            pass
        finally:
            client.close()
