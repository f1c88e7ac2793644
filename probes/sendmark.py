"""When a drill message actually left: the *send mark*.

The runner asks a probe to send at one instant; the message leaves later —
after a pacing slot, a connection, TLS, and whatever else the event loop was
doing first. Under load that gap is the harness's own queue, not the
channel's latency. The runner therefore opens a :class:`SendMark` around
``probe.send`` and the send path stamps the instant the message leaves:

- HTTP (every kind on the drill's shared aiohttp session, :meth:`ProbeEnv.http
  <probes.base.ProbeEnv.http>`): the session's connector
  (:func:`probes.stamped_http.connector`) stamps
  the moment the send path starts talking to the network — a request asks for a
  connection, to be created or taken from the pool. The connector has no limit, so
  no request ever waits for a free slot first (a limit would be the harness's own
  queue, to be stamped after). Only requests made inside the send's context count:
  observers and long-polls were started elsewhere and never stamp. (A connector
  method, not an aiohttp trace: a trace costs every request of the session its
  eight signals, observers' looks included.)
- The same connections stamp each answer's arrival too (:mod:`probes.stamped_http`).
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

__all__ = ["SendMark", "current", "mark_left", "opened"]

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
