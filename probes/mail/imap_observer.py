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
:mod:`probes.mail.observer`): IDLE alone cannot prove anything tighter than
"since the previous look", and says so. (Dovecot's 500 ms notify delay only
says the push came *at least* that late; it bounds nothing from above.)

Each look fetches the first 64 KiB of every new message (``BODY.PEEK[]<0.N>``,
once per message), so the token is found in the header, or in the subject or
body when a sanitising gateway stripped the header, and the content check
needs no second fetch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from probes.base import Clock, ObserverFault, Sighting
from probes.mail.imap_connection import ImapConnection, ImapSettings, LostConnection, response_text
from probes.mail.message import parse_fetch_headers, parse_select
from probes.mail.observer import MailObserver, stop_task

__all__ = ["ImapObserver", "ImapSettings"]

log = logging.getLogger(__name__)

FETCH_LIMIT = 64 * 1024
_FETCH_ITEM = f"(UID BODY.PEEK[]<0.{FETCH_LIMIT}>)"


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
        self.trouble = "IMAP 未接続 / not connected yet"

    # -------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(
                self._run(), name=f"imap-observer {self.settings.key()}"
            )
        # Wait for the first login (or a fault); an unreachable server is not a fault:
        # the observer keeps trying, and meanwhile ``trouble`` says why it cannot look
        # (a message not seen then is the drill's blind spot, not a lost message).
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
                self.trouble = exc.reason
                self._fault = exc
                self.sightings.fail(exc)
                self._ready.set()
                return
            except LostConnection as exc:
                self.trouble = (
                    f"IMAP メールボックスを見られません / cannot look at the mailbox: {exc}"
                )
                log.info("imap observer %s: %s", self.settings.key(), exc)
            except Exception as exc:  # a bug here must not leave probes waiting for nothing
                await conn.close()
                self._fault = ObserverFault(
                    f"IMAP 監視が停止 / IMAP observer stopped: {exc!r}", code="harness"
                )
                self.trouble = self._fault.reason
                self.sightings.fail(self._fault)
                self._ready.set()
                raise
            await conn.close()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def _connect(self, conn: ImapConnection) -> None:
        # Taken before SELECT: a message stored after SELECT answered has a UID at or
        # past its UIDNEXT, and was stored after this moment (the bracket stays true).
        started = Clock.monotonic()
        selected = await conn.open(readonly=not self.cleanup)
        assert selected is not None
        self.logins += 1
        codes = parse_select(selected.lines)
        validity = codes.get("UIDVALIDITY")
        if self._next_uid is None or validity != self._uidvalidity:
            # Messages already in the mailbox cannot carry tokens of this drill.
            self._next_uid = codes.get("UIDNEXT", 1)
            self._last_look = started
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
        response = await conn.command(client.uid("fetch", f"{self._next_uid}:*", _FETCH_ITEM))
        seen_at = Clock.monotonic()
        if response.result != "OK":
            raise LostConnection(f"IMAP FETCH failed: {response_text(response)}")
        self.looks += 1
        self.trouble = None  # a complete look: everything stored before `started` was seen
        previous, self._last_look = self._last_look, started
        found: list[tuple[int, str]] = []
        for item in parse_fetch_headers(response.lines):
            if item.uid < self._next_uid:
                continue  # "n:*" returns the last message when n is past the end
            self._next_uid = item.uid + 1
            tokens, matched_by = self.recognise(item.headers)
            for token in tokens:
                found.append((item.uid, token))
                extra: dict[str, Any] = {
                    "uid": item.uid,
                    "observer": f"imap-{self._mode}",
                    "matched_by": matched_by,
                    "imap_insecure": conn.insecure,
                }
                if conn.tls_days_left is not None:
                    extra["imap_tls_days_left"] = conn.tls_days_left
                if len(item.headers) < FETCH_LIMIT:
                    extra.update(self.content_extra(token, item.headers))
                bound = self.bound(token, seen_at, previous)
                self.record(token, Sighting(at=seen_at, error_bound_s=bound, extra=extra))
        if self.cleanup:
            mine = sorted({uid for uid, token in found if self.ours(token)})
            if mine:
                await self._delete(conn, mine)

    async def _delete(self, conn: ImapConnection, uids: list[int]) -> None:
        client = conn.client
        assert client is not None
        uid_set = ",".join(map(str, uids))
        await conn.command(client.uid("store", uid_set, "+FLAGS.SILENT", r"(\Deleted)"))
        if "UIDPLUS" in client.protocol.capabilities:
            await conn.command(client.uid("expunge", uid_set))
        else:
            await conn.command(client.expunge())
