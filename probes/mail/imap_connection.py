"""An IMAP connection for the drill observer and the reachability check (aioimaplib).

Security: ``tls`` (IMAPS, 993), ``starttls`` (143, upgraded before login; done
by hand, aioimaplib has no STARTTLS) or ``plain``. Every command is bounded by
``timeout`` and raced against the connection dropping, so a dead server is a
:class:`LostConnection` (try again), never a hang. A refused login, an
unverifiable certificate or a missing mailbox is an ``ObserverFault``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import secrets
from collections.abc import Callable
from typing import Any, Literal

import aioimaplib
from pydantic import Field

from probes.base import ChannelSettings, ObserverFault
from probes.mail.observer import stop_task
from probes.mail.tls import cert_days_left, client_context, is_certificate_error, tls_reason
from probes.preflight import not_after_of
from probes.settings import Duration, SecretRef, SecretUnresolvable

__all__ = ["ImapConnection", "ImapSettings", "LostConnection", "response_text"]

_DEFAULT_PORTS = {"tls": 993, "starttls": 143, "plain": 143}
# Connection keys hold a keyed digest of the password, never the password: the
# key lives only in this process, so the digest cannot be looked up elsewhere.
_KEY_SALT = secrets.token_bytes(16)


class ImapSettings(ChannelSettings):
    """The drill mailbox as the observer reads it."""

    host: str = Field(description="IMAP サーバのホスト名 / the IMAP server's host name")
    port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="ポート（省略時: tls 993、starttls と plain 143） / the port (default: tls 993; starttls and plain 143)",
    )
    security: Literal["tls", "starttls", "plain"] = Field(
        default="tls",
        description="tls: 993 で最初から TLS、starttls: 143 で STARTTLS、plain: 暗号化なし / tls: TLS from the first byte (993); starttls: upgraded on 143; plain: no encryption",
    )
    user: str = Field(description="メールボックスのユーザー / the mailbox user")
    password: SecretRef = Field(description="そのパスワード / its password")
    ca_file: str | None = Field(
        default=None,
        description="サーバ証明書を検証する CA（PEM） / a CA file (PEM) to verify the server's certificate",
    )
    verify: bool = Field(
        default=True, description="証明書を検証する / verify the server's certificate"
    )
    mailbox: str = Field(default="INBOX", description="見るフォルダ / the folder that is watched")
    strategy: Literal["auto", "idle", "poll"] = Field(
        default="auto",
        description="auto: IDLE があれば IDLE、なければ poll / auto: IDLE when offered, else poll",
    )
    poll_interval: Duration = Field(
        default=1.0, description="poll の間隔 / how often poll mode looks"
    )
    fast_interval: Duration = Field(
        default=0.05,
        gt=0,
        description="待っているメールがあるときの短い間隔 / the short interval while a mail is awaited",
    )
    window: Duration = Field(
        default=30.0, description="検索で遡る幅 / how far back a search reaches"
    )
    timeout: Duration = Field(
        default=15.0, description="各コマンドの制限時間 / time limit of each command"
    )

    @property
    def effective_port(self) -> int:
        return self.port or _DEFAULT_PORTS[self.security]

    def key(self) -> tuple[str, int, str, str]:
        """The mailbox as people name it (for logs: no secret in it)."""
        return (self.host, self.effective_port, self.user, self.mailbox)

    def connection_key(self) -> tuple[Any, ...]:
        """Everything that decides what a connection with these settings sees.

        Two channels may share one IMAP connection only if they agree on all of
        it — password, security, CA, verification, timing — or a wrong setting
        on one would be hidden by (or blamed on) the other.
        """
        try:
            secret: Any = hmac.new(
                _KEY_SALT, self.password.reveal().encode(), hashlib.sha256
            ).hexdigest()
        except SecretUnresolvable:
            secret = ("unresolvable", id(self.password))  # opening will say why
        return (
            *self.key(),
            secret,
            self.security,
            self.ca_file,
            self.verify,
            self.strategy,
            self.poll_interval,
            self.fast_interval,
            self.window,
            self.timeout,
        )


class LostConnection(Exception):
    """The IMAP connection broke (or a command timed out): reconnect."""


class ImapConnection:
    """A logged-in aioimaplib client; failures mapped to ObserverFault / LostConnection."""

    def __init__(self, settings: ImapSettings) -> None:
        self.settings = settings
        self.client: aioimaplib.IMAP4 | None = None
        self.lost = asyncio.Event()
        self.tls_days_left: int | None = None
        self.tls_not_after: float | None = None  # epoch seconds
        self.idle_capable = False

    @property
    def insecure(self) -> bool:
        return self.settings.security == "plain"

    async def open(
        self,
        *,
        select: bool = True,
        readonly: bool = True,
        on_stage: Callable[[str], None] | None = None,
    ) -> aioimaplib.Response | None:
        """Connect, log in and (unless told not to) open the mailbox.

        ``on_stage`` hears each stage begin (``connect``, ``starttls``, ``auth``,
        ``read``) — for timing the reachability check.

        ``readonly`` opens it with EXAMINE: the observer changes nothing (no
        \\Recent taken from people's clients, and Dovecot leaves new mail in
        Maildir ``new/``, whose ctime stays the delivery time).
        """
        s = self.settings
        announce = on_stage or _quiet
        context = (
            client_context(verify=s.verify, ca_file=s.ca_file) if s.security == "tls" else None
        )
        try:
            announce("connect")
            self.client = aioimaplib.IMAP4(
                host=s.host,
                port=s.effective_port,
                timeout=s.timeout,
                conn_lost_cb=lambda _exc: self.lost.set(),
                ssl_context=context,
            )
            await self._hello()
            if s.security == "starttls":
                announce("starttls")
                await self._starttls()
            self.tls_days_left = cert_days_left(self._ssl_object())
            self.tls_not_after = _not_after(self._ssl_object())
            password = s.password.reveal()
        except SecretUnresolvable as exc:
            raise ObserverFault(
                f"IMAP パスワードを読めません / cannot read password: {exc}", code="secret"
            ) from exc
        except Exception as exc:
            if is_certificate_error(exc):
                raise ObserverFault(f"IMAP {tls_reason(exc)}", code="tls") from exc
            raise LostConnection(f"IMAP 接続失敗 / cannot connect: {exc!r}") from exc
        announce("auth")
        response = await self.command(self.client.login(s.user, password))
        if response.result != "OK":
            text = response_text(response)
            raise ObserverFault(
                f"IMAP ログイン失敗 / login refused for {s.user}: {text}", code="auth"
            )
        if "IDLE" not in self.client.protocol.capabilities:
            await self.command(self.client.protocol.capability())
        self.idle_capable = "IDLE" in self.client.protocol.capabilities
        if not select:
            return None
        announce("read")
        if readonly:
            protocol = self.client.protocol
            selected = await self.command(
                protocol.execute(
                    aioimaplib.Command("EXAMINE", protocol.new_tag(), s.mailbox, loop=protocol.loop)
                )
            )
            if selected.result == "OK":
                protocol.state = aioimaplib.SELECTED  # aioimaplib only tracks SELECT
        else:
            selected = await self.command(self.client.select(s.mailbox))
        if selected.result != "OK":
            raise ObserverFault(
                f"IMAP メールボックスを開けません / cannot select {s.mailbox}: {response_text(selected)}",
                code="mailbox",
            )
        return selected

    def _ssl_object(self) -> Any:
        if self.client is None or self.client.protocol.transport is None:
            return None
        return self.client.protocol.transport.get_extra_info("ssl_object")

    async def _hello(self) -> None:
        """The server's greeting, raced against the connection dropping: a connection
        reset before the greeting is known at once (aioimaplib alone waits out ``timeout``,
        leaving the observer blind that long before it tries again)."""
        assert self.client is not None
        hello = asyncio.ensure_future(self.client.wait_hello_from_server())
        lost = asyncio.ensure_future(self.lost.wait())
        try:
            await asyncio.wait({hello, lost}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # cancelled: the drill is closing
            hello.cancel()
            raise
        finally:
            lost.cancel()
        if not hello.done():
            await stop_task(hello)
            raise ConnectionResetError("connection closed before the server's greeting")
        hello.result()  # a TLS failure keeps its own exception (an ObserverFault, not a retry)

    async def _starttls(self) -> None:
        assert self.client is not None
        protocol = self.client.protocol
        await protocol.capability()
        if "STARTTLS" not in protocol.capabilities:
            raise ObserverFault("IMAP STARTTLS 非対応 / server does not offer STARTTLS", code="tls")
        response = await protocol.execute(
            aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)
        )
        if response.result != "OK":
            raise ObserverFault(f"IMAP STARTTLS refused: {response_text(response)}", code="tls")
        s = self.settings
        context = client_context(verify=s.verify, ca_file=s.ca_file)
        loop = asyncio.get_running_loop()
        transport = await asyncio.wait_for(
            loop.start_tls(protocol.transport, protocol, context, server_hostname=s.host),
            s.timeout,
        )
        protocol.transport = transport
        await protocol.capability()  # RFC 3501 6.2.1: forget pre-TLS capabilities

    async def command(self, coro: Any) -> aioimaplib.Response:
        """Run one IMAP command; a broken connection or timeout raises LostConnection."""
        task = asyncio.ensure_future(coro)
        lost = asyncio.ensure_future(self.lost.wait())
        try:
            done, _ = await asyncio.wait(
                {task, lost}, timeout=self.settings.timeout, return_when=asyncio.FIRST_COMPLETED
            )
        except BaseException:
            task.cancel()
            raise
        finally:
            lost.cancel()
        if task not in done:
            await stop_task(task)
            if lost in done:
                raise LostConnection("IMAP 接続が切れました / connection lost")
            raise LostConnection("IMAP 応答なし / no answer within the timeout")
        try:
            return task.result()
        except (TimeoutError, aioimaplib.CommandTimeout) as exc:
            raise LostConnection("IMAP 応答なし / command timed out") from exc
        except (aioimaplib.Abort, aioimaplib.Error, OSError) as exc:
            raise LostConnection(f"IMAP エラー / protocol error: {exc}") from exc

    async def close(self) -> None:
        client, self.client = self.client, None
        if client is None:
            return
        try:
            if not self.lost.is_set():
                with contextlib.suppress(Exception):
                    if client.has_pending_idle():
                        client.idle_done()
                    await asyncio.wait_for(client.logout(), 2.0)
        finally:
            _drop(client)


def _quiet(_stage: str) -> None:
    """No one is listening to the stages."""


def _not_after(ssl_object: Any) -> float | None:
    return None if ssl_object is None else not_after_of(ssl_object.getpeercert(binary_form=True))


def _drop(client: aioimaplib.IMAP4) -> None:
    """Close the socket whatever state the client is in (even if closed mid-connect)."""
    connecting = client._client_task
    if not connecting.done():
        connecting.cancel()
    elif not connecting.cancelled() and connecting.exception() is None:
        connecting.result()[0].close()
    if client.protocol.transport is not None:
        client.protocol.transport.close()
    for task in list(client.tasks) + list(client.protocol.tasks):
        task.cancel()


def response_text(response: aioimaplib.Response) -> str:
    lines = [bytes(x).decode("utf-8", "replace") for x in response.lines if isinstance(x, bytes)]
    return " ".join(" ".join(lines).split())[:200]
