"""Confirming arrival over IMAP (aioimaplib): one connection per mailbox, bounded error.

Strategies (``imap.strategy``):

- ``poll``  — every ``poll_interval``: NOOP, then ``UID FETCH next:*`` of the
  token header. Error up to one interval.
- ``idle``  — IMAP IDLE only; look when the server pushes. Dovecot pushes
  ≥ 500 ms after delivery (its compiled-in notify delay, FIELD-NOTES.md), so
  this is biased by half a second there.
- ``auto``  (default) — IDLE as a wake-up while nothing is expected; while a
  probe's message is inside its expected window (``window`` after the probe
  announced it) poll every ``fast_interval`` (50 ms). Measured on Dovecot, 100
  messages, error = seen − stored (benchmarks/bench_mail_observer.py):
  idle p50/p99 502/509 ms, poll-1s 493/996 ms, auto 28/52 ms.

Every sighting carries ``error_bound_s`` from the look brackets (see
:mod:`probes.mail_observer`): IDLE alone cannot prove anything tighter than
"since the previous look", and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Literal

import aioimaplib
from pydantic import Field

from probes.base import ChannelSettings, Clock, ObserverFault, Sighting
from probes.mail_message import TOKEN_HEADER, parse_fetch_headers, parse_select
from probes.mail_observer import MailObserver, stop_task
from probes.mail_tls import cert_days_left, client_context, is_certificate_error, tls_reason
from probes.settings import Duration, SecretRef, SecretUnresolvable

__all__ = ["ImapConnection", "ImapObserver", "ImapSettings", "LostConnection"]

log = logging.getLogger(__name__)

_DEFAULT_PORTS = {"tls": 993, "starttls": 143, "plain": 143}
_HEADER_ITEM = f"(UID BODY.PEEK[HEADER.FIELDS ({TOKEN_HEADER.upper()})])"


class ImapSettings(ChannelSettings):
    """The drill mailbox as the observer reads it."""

    host: str
    port: int | None = Field(default=None, ge=1, le=65535)
    security: Literal["tls", "starttls", "plain"] = "tls"
    user: str
    password: SecretRef
    ca_file: str | None = None
    verify: bool = True
    mailbox: str = "INBOX"
    strategy: Literal["auto", "idle", "poll"] = "auto"
    poll_interval: Duration = 1.0
    fast_interval: Duration = Field(default=0.05, gt=0)
    window: Duration = 30.0
    timeout: Duration = 15.0

    @property
    def effective_port(self) -> int:
        return self.port or _DEFAULT_PORTS[self.security]

    def key(self) -> tuple[str, int, str, str]:
        return (self.host, self.effective_port, self.user, self.mailbox)


class LostConnection(Exception):
    """The IMAP connection broke (or a command timed out): reconnect."""


class ImapConnection:
    """A logged-in aioimaplib client; failures mapped to ObserverFault / LostConnection."""

    def __init__(self, settings: ImapSettings) -> None:
        self.settings = settings
        self.client: aioimaplib.IMAP4 | None = None
        self.lost = asyncio.Event()
        self.tls_days_left: int | None = None
        self.idle_capable = False

    @property
    def insecure(self) -> bool:
        return self.settings.security == "plain"

    async def open(
        self, *, select: bool = True, readonly: bool = True
    ) -> aioimaplib.Response | None:
        """Connect, log in and (unless told not to) open the mailbox.

        ``readonly`` opens it with EXAMINE: the observer changes nothing (no
        \\Recent taken from people's clients, and Dovecot leaves new mail in
        Maildir ``new/``, whose ctime stays the delivery time).
        """
        s = self.settings
        context = (
            client_context(verify=s.verify, ca_file=s.ca_file) if s.security == "tls" else None
        )
        try:
            self.client = aioimaplib.IMAP4(
                host=s.host,
                port=s.effective_port,
                timeout=s.timeout,
                conn_lost_cb=lambda _exc: self.lost.set(),
                ssl_context=context,
            )
            await self.client.wait_hello_from_server()
            if s.security == "starttls":
                await self._starttls()
            self.tls_days_left = cert_days_left(self._ssl_object())
            password = s.password.reveal()
        except SecretUnresolvable as exc:
            raise ObserverFault(
                f"IMAP パスワードを読めません / cannot read password: {exc}"
            ) from exc
        except Exception as exc:
            if is_certificate_error(exc):
                raise ObserverFault(f"IMAP {tls_reason(exc)}", code="tls") from exc
            raise LostConnection(f"IMAP 接続失敗 / cannot connect: {exc!r}") from exc
        response = await self.command(self.client.login(s.user, password))
        if response.result != "OK":
            text = _text(response)
            raise ObserverFault(
                f"IMAP ログイン失敗 / login refused for {s.user}: {text}", code="auth"
            )
        if "IDLE" not in self.client.protocol.capabilities:
            await self.command(self.client.protocol.capability())
        self.idle_capable = "IDLE" in self.client.protocol.capabilities
        if not select:
            return None
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
                f"IMAP メールボックスを開けません / cannot select {s.mailbox}: {_text(selected)}",
                code="mailbox",
            )
        return selected

    def _ssl_object(self) -> Any:
        if self.client is None or self.client.protocol.transport is None:
            return None
        return self.client.protocol.transport.get_extra_info("ssl_object")

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
            raise ObserverFault(f"IMAP STARTTLS refused: {_text(response)}", code="tls")
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


def _text(response: aioimaplib.Response) -> str:
    lines = [bytes(x).decode("utf-8", "replace") for x in response.lines if isinstance(x, bytes)]
    return " ".join(" ".join(lines).split())[:200]


class ImapObserver(MailObserver):
    """Watches one IMAP mailbox for every probe delivering into it."""

    def __init__(self, settings: ImapSettings, *, cleanup: bool = False) -> None:
        super().__init__()
        self.settings = settings
        self.cleanup = cleanup
        self.logins = 0  # connections made (one per mailbox, plus reconnects)
        self.looks = 0
        self.conn: ImapConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._fault: ObserverFault | None = None
        self._next_uid: int | None = None
        self._uidvalidity: int | None = None
        self._last_look: float | None = None
        self._mode = "poll"
        self._busy = asyncio.Lock()  # held while a look (and its clean-up) runs

    # -------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(
                self._run(), name=f"imap-observer {self.settings.key()}"
            )
        # Wait for the first login (or a fault); an unreachable server is not a fault:
        # the observer keeps trying and the messages will count as lost if never seen.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), self.settings.timeout)
        if self._fault is not None:
            raise self._fault

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            # Let a look in progress finish (its sightings and clean-up), then stop.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._busy.acquire(), 2.0)
            await stop_task(task)
        if self.conn is not None:
            await self.conn.close()
            self.conn = None

    @property
    def tls_days_left(self) -> int | None:
        return self.conn.tls_days_left if self.conn is not None else None

    # -------------------------------------------------------------- the loop

    async def _run(self) -> None:
        backoff = 0.2
        while True:
            conn = ImapConnection(self.settings)
            self.conn = conn
            try:
                await self._connect(conn)
                backoff = 0.2
                await self._watch(conn)
            except ObserverFault as exc:
                await conn.close()
                self._fault = exc
                self.sightings.fail(exc)
                self._ready.set()
                return
            except LostConnection as exc:
                log.info("imap observer %s: %s", self.settings.key(), exc)
            except Exception as exc:  # a bug here must not leave probes waiting for nothing
                await conn.close()
                self._fault = ObserverFault(f"IMAP 監視が停止 / IMAP observer stopped: {exc!r}")
                self.sightings.fail(self._fault)
                self._ready.set()
                raise
            await conn.close()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def _connect(self, conn: ImapConnection) -> None:
        selected = await conn.open(readonly=not self.cleanup)
        assert selected is not None
        self.logins += 1
        codes = parse_select(selected.lines)
        validity = codes.get("UIDVALIDITY")
        if self._next_uid is None or validity != self._uidvalidity:
            # Messages already in the mailbox cannot carry tokens of this drill.
            self._next_uid = codes.get("UIDNEXT", 1)
            self._last_look = Clock.monotonic()
        self._uidvalidity = validity
        self._ready.set()

    def _choose_mode(self, conn: ImapConnection) -> str:
        s = self.settings
        if s.strategy == "poll":
            return "poll"
        if s.strategy == "idle":
            return "idle" if conn.idle_capable else "poll"
        now = Clock.monotonic()
        if any(now - exp.since < s.window for exp in self.expected.values()):
            return "fast"
        return "idle" if conn.idle_capable else "poll"

    async def _watch(self, conn: ImapConnection) -> None:
        s = self.settings
        while True:
            async with self._busy:
                await self._look(conn)
            self._mode = self._choose_mode(conn)
            if self._mode == "fast":
                await asyncio.sleep(s.fast_interval)
            elif self._mode == "idle":
                if s.strategy == "idle":
                    timeout = 29 * 60.0
                else:
                    timeout = s.poll_interval if self.expected else 300.0
                await self._idle(conn, timeout)
            else:
                await self._pause(s.poll_interval, wakeable=s.strategy == "auto")

    async def _pause(self, seconds: float, *, wakeable: bool) -> None:
        self.wake.clear()
        if not wakeable:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), seconds)

    async def _idle(self, conn: ImapConnection, timeout: float) -> None:
        client = conn.client
        assert client is not None
        self.wake.clear()
        if self.settings.strategy == "auto" and self._choose_mode(conn) == "fast":
            return
        idle = await conn.command(client.idle_start(timeout=timeout + 60))
        waiters = {
            asyncio.ensure_future(client.wait_server_push(timeout=timeout)),
            asyncio.ensure_future(conn.lost.wait()),
        }
        if self.settings.strategy == "auto":
            waiters.add(asyncio.ensure_future(self.wake.wait()))
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        if conn.lost.is_set():
            raise LostConnection("IMAP 接続が切れました / connection lost during IDLE")
        client.idle_done()
        await conn.command(asyncio.wait_for(idle, self.settings.timeout))
        queue = client.protocol.idle_queue
        while not queue.empty():
            queue.get_nowait()

    async def _look(self, conn: ImapConnection) -> None:
        """NOOP, then fetch the token header of every message newer than the last look."""
        client = conn.client
        assert client is not None and self._next_uid is not None
        started = Clock.monotonic()
        await conn.command(client.noop())
        response = await conn.command(client.uid("fetch", f"{self._next_uid}:*", _HEADER_ITEM))
        seen_at = Clock.monotonic()
        if response.result != "OK":
            raise LostConnection(f"IMAP FETCH failed: {_text(response)}")
        self.looks += 1
        previous, self._last_look = self._last_look, started
        found: list[tuple[int, str]] = []
        for item in parse_fetch_headers(response.lines):
            if item.uid < self._next_uid:
                continue  # "n:*" returns the last message when n is past the end
            self._next_uid = item.uid + 1
            token = self.recognise(item.headers)
            if token is not None:
                found.append((item.uid, token))
        if not found:
            return
        contents = await self._contents(conn, [uid for uid, tok in found if tok in self.expected])
        for uid, token in found:
            extra: dict[str, Any] = {
                "uid": uid,
                "observer": f"imap-{self._mode}",
                "imap_insecure": conn.insecure,
            }
            if conn.tls_days_left is not None:
                extra["imap_tls_days_left"] = conn.tls_days_left
            if uid in contents:
                extra.update(self.content_extra(token, contents[uid]))
            bound = self.bound(token, seen_at, previous)
            self.record(token, Sighting(at=seen_at, error_bound_s=bound, extra=extra))
        if self.cleanup:
            await self._delete(conn, [uid for uid, _ in found])

    async def _contents(self, conn: ImapConnection, uids: list[int]) -> dict[int, bytes]:
        if not uids:
            return {}
        assert conn.client is not None
        response = await conn.command(
            conn.client.uid("fetch", ",".join(map(str, uids)), "(UID BODY.PEEK[])")
        )
        return {item.uid: item.headers for item in parse_fetch_headers(response.lines)}

    async def _delete(self, conn: ImapConnection, uids: list[int]) -> None:
        client = conn.client
        assert client is not None
        uid_set = ",".join(map(str, uids))
        await conn.command(client.uid("store", uid_set, "+FLAGS.SILENT", r"(\Deleted)"))
        if "UIDPLUS" in client.protocol.capabilities:
            await conn.command(client.uid("expunge", uid_set))
        else:
            await conn.command(client.expunge())
