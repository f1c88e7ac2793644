"""Small TCP fault servers for the mail fault cases, each on its own thread and loop.

- :class:`CutProxy` — forwards to a real server (Dovecot's IMAP); :meth:`CutProxy.cut`
  drops every open connection at once (both sides closed); after :meth:`CutProxy.down`
  every new connection is reset as soon as it is accepted (and noted in ``refused``)
  until :meth:`CutProxy.up`.
- :class:`SlowGreeter` — accepts and says nothing for ``delay`` seconds before its
  SMTP ``220`` greeting; it notes when each client gave up waiting.

They run on a thread of their own because the drill under test runs on its own
background loop (:mod:`drills.core.background`): the fault must not share it.
Every instant they note is ``time.monotonic()`` — the ground truth a case holds the
journal against.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["CutProxy", "SlowGreeter"]

T = TypeVar("T")


class _LoopThread:
    """An event loop on a daemon thread; :meth:`call` runs a coroutine there and waits."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


def _track(tasks: set[asyncio.Task[None]]) -> None:
    """Count the running connection handler among *tasks* (those a server's close cancels)."""
    task = asyncio.current_task()
    if task is not None:
        tasks.add(task)
        task.add_done_callback(tasks.discard)


class CutProxy:
    """A TCP forwarder to ``127.0.0.1:upstream_port`` whose connections a test can cut."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.accepted: list[float] = []  # monotonic, one per client connection
        self.cuts: list[float] = []  # monotonic, one per cut()
        self.refused: list[float] = []  # monotonic, connections reset while down
        self.refusing = False
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._thread: _LoopThread | None = None

    def start(self) -> CutProxy:
        self._thread = _LoopThread(f"cut-proxy-{self.upstream_port}")
        self._thread.call(self._listen())
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        self._thread.call(self._close())
        self._thread.close()
        self._thread = None

    def cut(self) -> int:
        """Drop every open connection now; return how many client connections were cut."""
        assert self._thread is not None
        return self._thread.call(self._cut())

    def down(self) -> int:
        """From now on reset every new connection; cut the open ones (how many)."""
        assert self._thread is not None
        self.refusing = True
        return self.cut()

    def up(self) -> None:
        """Forward new connections again."""
        self.refusing = False

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        await self._cut()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    async def _cut(self) -> int:
        writers = list(self._writers)
        self._writers.clear()
        for writer in writers:
            writer.transport.abort()
        self.cuts.append(time.monotonic())
        return len(writers) // 2

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            self.refused.append(time.monotonic())
            writer.transport.abort()
            return
        self.accepted.append(time.monotonic())
        # Tracked from the start: a handler still connecting upstream when the proxy stops
        # is cancelled by _close() and drops its client, not left open past the loop's end.
        _track(self._tasks)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        except asyncio.CancelledError:
            writer.transport.abort()  # _close(): the connection ends with the proxy
            return
        self._writers.update((writer, up_writer))
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.ensure_future(self._pipe(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            writer.transport.abort()


class SlowGreeter:
    """An SMTP server that greets ``delay`` seconds after a client connects (if still there)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.port = 0
        self.accepted: list[float] = []  # monotonic, per connection
        self.gave_up: list[float] = []  # the client closed before the greeting
        self.greeted: list[float] = []  # the greeting was sent (the client was still there)
        self._server: asyncio.Server | None = None
        self._thread: _LoopThread | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # connections still being served

    def start(self) -> SlowGreeter:
        self._thread = _LoopThread("slow-greeter")
        self._thread.call(self._listen())
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        self._thread.call(self._close())
        self._thread.close()
        self._thread = None

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        # A connection still open would wait out `delay` on a loop that stops now: end it
        # (its handler's finally drops the connection), never leave it open.
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted.append(time.monotonic())
        _track(self._tasks)
        try:
            data = await asyncio.wait_for(reader.read(1), self.delay)
        except TimeoutError:
            writer.write(b"220 slow.test ESMTP at last\r\n")
            self.greeted.append(time.monotonic())
        except (ConnectionError, OSError):
            self.gave_up.append(time.monotonic())
        except asyncio.CancelledError:
            pass  # _close(): the server stops (nobody else awaits this handler)
        else:
            if not data:
                self.gave_up.append(time.monotonic())
        finally:
            writer.transport.abort()
