"""The drill session's HTTP connections, which stamp both edges of a message's trip.

:meth:`ProbeEnv.http <probes.base.ProbeEnv.http>` builds the shared aiohttp session
on :func:`connector`:

- **leaving** — a request that asks the connector for a connection inside a send
  (:func:`probes.sendmark.opened`) stamps that send's mark: the first use of the
  network wins (see :mod:`probes.sendmark` for why there, and what is excluded).
  The connector has no limit, so no request ever waits for a free slot first.
- **arriving** — each connection's protocol notes when the first bytes of the
  current request's answer reached the process (reset when the next request on the
  connection is sent): :func:`answered_at`. A send's acceptance and an observer's
  sighting are that instant (:meth:`probes.chat.base.ChatProbe.fetch`), not
  when a busy event loop got back to the task that asked — measured at 10,000
  channels (benchmarks/bench_core_fanout.py, ``where.back``): the median from the far
  end's ledger to the sighting went from 14.6 to 10.2 ms.

A module of its own, imported when the first session is made: a process that sends
no HTTP never imports aiohttp for it.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import aiohttp
from aiohttp.client_proto import ResponseHandler

from probes.sendmark import current

__all__ = ["MarkingConnector", "StampingHandler", "answered_at", "connector"]


class StampingHandler(ResponseHandler):
    """A connection's protocol that notes when its current answer began to arrive."""

    answer_at: float | None = None

    def set_response_params(self, **kw: Any) -> None:  # once per request, before it is sent
        self.answer_at = None
        super().set_response_params(**kw)

    def data_received(self, data: bytes) -> None:
        if self.answer_at is None and data:
            self.answer_at = time.monotonic()
        super().data_received(data)


class MarkingConnector(aiohttp.TCPConnector):
    """Stamps the current send's mark when a request asks for a connection; its
    connections' protocols are :class:`StampingHandler`."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        # aiohttp makes each connection's protocol with the connector's factory
        # (tests/core/test_send_mark.py checks that it still does).
        stamping: Any = functools.partial(StampingHandler, loop=self._loop)
        self._factory = stamping

    async def connect(self, req: Any, traces: Any, timeout: Any) -> Any:
        mark = current()
        if mark is not None and mark.left is None:
            mark.stamp("http")
        return await super().connect(req, traces, timeout)


def connector() -> MarkingConnector:
    """The drill session's connector (no limit; stamps leaving and arriving, above)."""
    return MarkingConnector(limit=0, limit_per_host=0, ttl_dns_cache=300)


def answered_at(resp: aiohttp.ClientResponse) -> float | None:
    """When the first bytes of *resp* reached this process (monotonic), if its connection
    came from :func:`connector` and is still held (call before reading the body)."""
    conn = resp.connection
    return getattr(conn.protocol, "answer_at", None) if conn is not None else None
