"""When a drill message actually left: the *send mark*.

The runner asks a probe to send at one instant; the message leaves later —
after a pacing slot, a connection, TLS, and whatever else the event loop was
doing first. Under load that gap is the harness's own queue, not the
channel's latency. The runner therefore opens a :class:`SendMark` around
``probe.send`` and the send path stamps the instant the message leaves:

- HTTP (every kind on the drill's shared aiohttp session, :meth:`ProbeEnv.http
  <probes.base.ProbeEnv.http>`): the session's connector (:func:`connector`) stamps
  the moment the send path starts talking to the network — a request asks for a
  connection, to be created or taken from the pool. The connector has no limit, so
  no request ever waits for a free slot first (a limit would be the harness's own
  queue, to be stamped after). Only requests made inside the send's context count:
  observers and long-polls were started elsewhere and never stamp. (A connector
  method, not an aiohttp trace: a trace costs every request of the session its
  eight signals, observers' looks included.)
- Its answers are stamped too: each connection's protocol notes when the first bytes
  of the current request's answer reached the process (:func:`answered_at`), so an
  observer's sighting is when the answer came in, not when a busy event loop got back
  to the task that asked (measured at 10,000 channels: the sighting's median lag behind
  the far end's ledger 14.6 → 10.2 ms).
- Other protocols call :func:`mark_left` at their own instant (SMTP: the session
  for this message is about to be opened — connecting, TLS and AUTH are the
  channel's time, not the harness's; Twilio: its API slot is held and the create
  request is about to be made).

What is excluded (``queue_s``) is only the harness's own wait: the pacing slot, the
event loop, a free connection slot. A server or a network that is slow to accept a
connection is the channel's latency, never hidden: a link that is down while a
message is being sent shows as that message's latency.

The first stamp wins: a send retried after "slow down" counts from the first
time the message left. A send path that never stamps leaves ``left`` unset,
and the runner falls back to the instant it called ``send`` (``how = "call"``).

The mark is carried in a :mod:`contextvars` variable, so it reaches every task
the send creates and no task created before (observers, watchers).

    >>> mark = SendMark("TSG-0000000000AB", queued=10.0)
    >>> with opened(mark):
    ...     mark_left("smtp", at=10.25)
    ...     mark_left("smtp", at=10.5)        # the first stamp wins
    >>> mark.left, mark.how, mark.queue_s
    (10.25, 'smtp', 0.25)
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import aiohttp

__all__ = ["SendMark", "answered_at", "connector", "current", "mark_left", "opened"]

_CURRENT: ContextVar[SendMark | None] = ContextVar("tsunagari_send_mark", default=None)


@dataclass(slots=True)
class SendMark:
    """One message's send: when the runner asked (``queued``) and when it left (``left``)."""

    token: str
    queued: float  # monotonic: the runner wanted to send
    called: float | None = None  # monotonic: the runner called probe.send (after pacing)
    left: float | None = None  # monotonic: the message left (None: the send path never said)
    how: str = ""  # what stamped ``left``: "http", "smtp", "twilio", … ("call": the fallback)

    @property
    def queue_s(self) -> float:
        """Seconds from wanting to send to the message leaving (0.0 until it left)."""
        return max(0.0, self.left - self.queued) if self.left is not None else 0.0

    def stamp(self, how: str, at: float | None = None) -> None:
        """The message left now (or at *at*); only the first stamp counts."""
        if self.left is None:
            self.left = time.monotonic() if at is None else at
            self.how = how

    def sent_instant(self) -> tuple[float, str]:
        """``(instant, how)``: when it left, else when send was called (``"call"``)."""
        if self.left is not None:
            return self.left, self.how
        return (self.called if self.called is not None else self.queued), "call"


def current() -> SendMark | None:
    """The mark of the send running in this context, if any."""
    return _CURRENT.get()


def mark_left(how: str, *, at: float | None = None) -> None:
    """Stamp the current send's mark (no mark open: nothing happens)."""
    mark = _CURRENT.get()
    if mark is not None and mark.left is None:
        mark.stamp(how, at)


class opened:  # used as a function: ``with opened(mark):``
    """Make *mark* the current send's mark for the ``with`` block (and tasks made in it).

    (A class, not a generator: it is entered once per message sent.)
    """

    __slots__ = ("_mark", "_reset")

    def __init__(self, mark: SendMark) -> None:
        self._mark = mark

    def __enter__(self) -> SendMark:
        self._reset = _CURRENT.set(self._mark)
        return self._mark

    def __exit__(self, *exc: object) -> None:
        _CURRENT.reset(self._reset)


_MARKING: type[aiohttp.TCPConnector] | None = None


def answered_at(resp: aiohttp.ClientResponse) -> float | None:
    """When the first bytes of *resp* reached this process (monotonic), if its connection
    came from :func:`connector` and is still held (call before reading the body)."""
    conn = resp.connection
    return getattr(conn.protocol, "answer_at", None) if conn is not None else None


def connector() -> aiohttp.TCPConnector:
    """The drill session's connector: no limit, and a request that asks it for a connection
    inside a send stamps that send's mark (the first use of the network wins)."""
    global _MARKING
    if _MARKING is None:
        import functools

        import aiohttp
        from aiohttp.client_proto import ResponseHandler

        class StampingHandler(ResponseHandler):
            """A connection's protocol that notes when its current answer began to arrive."""

            answer_at: float | None = None

            def set_response_params(self, **kw: Any) -> None:  # once per request, before it
                self.answer_at = None
                super().set_response_params(**kw)

            def data_received(self, data: bytes) -> None:
                if self.answer_at is None and data:
                    self.answer_at = time.monotonic()
                super().data_received(data)

        class MarkingConnector(aiohttp.TCPConnector):
            def __init__(self, **kw: Any) -> None:
                super().__init__(**kw)
                # Its connections' protocols are StampingHandlers (aiohttp makes each with
                # the connector's factory; tests/core/test_send_mark.py checks it still does).
                stamping: Any = functools.partial(StampingHandler, loop=self._loop)
                self._factory = stamping

            async def connect(self, req: Any, traces: Any, timeout: Any) -> Any:
                mark = _CURRENT.get()
                if mark is not None and mark.left is None:
                    mark.stamp("http")
                return await super().connect(req, traces, timeout)

        _MARKING = MarkingConnector
    return _MARKING(limit=0, limit_per_host=0, ttl_dns_cache=300)
