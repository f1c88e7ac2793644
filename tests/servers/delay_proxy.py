"""A TCP proxy that delays everything the server sends back by a fixed time.

Put in front of a real server's reader side, it makes "the observer can see
the message" happen ``delay`` seconds later than it otherwise would — an
injected far-end latency for a server (Synapse) that has no such knob.
Order and content are preserved; client → server bytes pass straight through.
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["DelayProxy"]


class DelayProxy:
    def __init__(self, upstream_host: str, upstream_port: int, delay: float) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.delay = delay
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # connection handlers and their pipes
        self._stopping = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and close every connection, also one still connecting upstream."""
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def _spawn(self, coro: object) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        # The client's side is closed on every path: a handler cancelled by stop() while it
        # still connects upstream would otherwise leave it open past the loop's end (an
        # "unclosed transport" ResourceWarning in whichever later test collects it).
        me = asyncio.current_task()
        if self._stopping or me is None:
            client_w.close()
            return
        self._tasks.add(me)
        try:
            up_r, up_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_w.close()
            return
        except asyncio.CancelledError:
            # stop(): this handler ends here (asyncio's stream callback would log a
            # cancelled handler as an error, and nobody else awaits it).
            client_w.close()
            return
        finally:
            self._tasks.discard(me)
        if self._stopping:
            up_w.close()
            client_w.close()
            return
        self._spawn(self._pipe(client_r, up_w))
        self._spawn(self._delayed_pipe(up_r, client_w))

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _delayed_pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def release() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    break
                await asyncio.sleep(max(0.0, due - loop.time()))
                writer.write(data)
                await writer.drain()

        sender = asyncio.ensure_future(release())
        try:
            while data := await reader.read(65536):
                queue.put_nowait((loop.time() + self.delay, data))
            queue.put_nowait((loop.time() + self.delay, b""))
            await sender
        except (ConnectionError, OSError):
            pass
        finally:
            sender.cancel()
            writer.close()
