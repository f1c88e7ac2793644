"""An asyncio event loop in a background thread, driven by synchronous callers.

Scenario files are plain synchronous pytest functions; the runner is asyncio.
One :class:`BackgroundLoop` per drill session runs every step, keeps probes,
observers and simulators alive between steps, and returns each step's result
to the calling thread::

    loop = BackgroundLoop()
    result = loop.run(drill.broadcast("参集してください"))   # blocks until done
    journal = loop.call(Journal, "journal.sqlite")           # runs in the loop thread
    loop.close()

Everything that touches the journal runs in the loop thread (a SQLite connection
belongs to the thread that made it; a PostgreSQL one is not shared between threads).

A :class:`KeyboardInterrupt` in the caller (the second SIGINT, :mod:`drills.core.interrupt`)
cancels the coroutine and waits, up to :data:`UNWIND_S`, until it has unwound before
it is raised: a cut step records every message it was watching as it unwinds, and
what the caller does next (finish the run, close the loop) comes after those records.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from drills.core import evloop

__all__ = ["UNWIND_S", "BackgroundLoop"]

T = TypeVar("T")

UNWIND_S = 5.0
"""How long :meth:`BackgroundLoop.run` waits for a cancelled coroutine to unwind."""


class BackgroundLoop:
    """A private event loop running forever in a daemon thread until :meth:`close`."""

    def __init__(self, name: str = "tsunagari-loop") -> None:
        # The drill's kind of loop: uvloop where installed (drills.core.evloop; measured
        # in benchmarks/bench_core_fanout.py: less CPU per delivery than asyncio's own).
        self.loop = evloop.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()
        self._ready.wait()
        self.closed = False

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run *coro* in the loop; block until it finishes; return or raise its result."""
        if self.closed:
            coro.close()
            raise RuntimeError("the drill's event loop is closed")
        unwound = threading.Event()

        async def tracked() -> T:
            try:
                return await coro
            finally:
                unwound.set()

        future = asyncio.run_coroutine_threadsafe(tracked(), self.loop)
        try:
            return future.result()
        except (KeyboardInterrupt, concurrent.futures.CancelledError):
            # The loop's task is cancelled in the loop thread, later: wait until it has
            # unwound (its deliveries recorded), or the caller's next call would race it.
            future.cancel()
            unwound.wait(UNWIND_S)
            raise

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call the synchronous *fn* in the loop thread (e.g. anything using the journal)."""

        async def inner() -> T:
            return fn(*args, **kwargs)

        return self.run(inner())

    def close(self) -> None:
        """Cancel what is left, stop the loop, join the thread. Idempotent."""
        if self.closed:
            return
        self.closed = True

        async def drain() -> None:
            me = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not me]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.loop.shutdown_asyncgens()
            await self.loop.shutdown_default_executor()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(drain(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.loop.close()
