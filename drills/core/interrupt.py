"""SIGTERM and SIGINT during a drill: stop on purpose, record honestly.

    with catch_signals(abort=...) as stop:   # in the main thread of ``run`` / ``demo``
        ...                                  # stop.signal is "SIGTERM" once one came

The first SIGTERM or SIGINT asks the drill to stop: no new step starts
(:func:`check` raises :class:`Interrupted` at the start of each), no new message
is sent (:func:`stopping` is checked before each send), the messages in
flight are watched until their step's timeout, but for at most
:data:`GRACE_S` seconds; then *abort* is called. A second signal calls *abort* at
once. *abort* (default: raise :class:`KeyboardInterrupt` in the main thread)
cancels the step in flight; the runner records each message it was still
watching as ``error`` ("interrupted before arrival could be confirmed") — the
message was sent, nobody knows whether it arrived, and it is not the channel's
fault. The run ends with status ``interrupted``
(:data:`drills.core.journal.RunStatus.INTERRUPTED`), and the caller still writes
its summary and outputs; while it does (:meth:`Stop.shield`), signals are noted
but abort nothing.

A signal that arrives after every drill has finished (every run already recorded
``finished`` or ``failed``, no test kept from running) stops nothing: the runs stay
as recorded, the exit code is the drill's own (:func:`exit_status` with
``cut_short=False``) and the caller says the signal came after the drills.

The state is per process, like signals themselves; outside :func:`catch_signals`
nothing here changes how a signal is handled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType

from drills.core.errors import TsunagariError

__all__ = [
    "GRACE_S",
    "INTERRUPTED_REASON",
    "Interrupted",
    "Stop",
    "catch_signals",
    "check",
    "current",
    "exit_status",
    "say",
    "stopping",
    "waiting_text",
]

GRACE_S = 10.0
"""How long messages in flight are watched after the first signal before the step is cut."""

INTERRUPTED_REASON = (
    "訓練が中断されたため着信を確認できませんでした / the drill was interrupted before "
    "arrival could be confirmed"
)

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(TsunagariError):
    """A step was not started because a signal asked the drill to stop (:func:`check`)."""

    def __init__(self, signal_name: str) -> None:
        self.signal_name = signal_name
        super().__init__(
            f"{signal_name} を受けたため訓練を中断しました（以降の手順は実行していません） / "
            f"the drill was stopped by {signal_name} (no further step was run)"
        )


def _raise_interrupt() -> None:
    raise KeyboardInterrupt


@dataclass
class Stop:
    """What signals asked for in this process (one per :func:`catch_signals`)."""

    abort: Callable[[], None] = _raise_interrupt
    grace_s: float = GRACE_S
    notice: Callable[[Stop], None] | None = None
    """Called once, at the first signal (say what happens now; :func:`say`)."""
    signal: str | None = None
    """Name of the first signal (``"SIGTERM"``/``"SIGINT"``), None while none came."""
    signum: int | None = None
    at: float | None = None
    aborted: bool = False
    shielded: bool = False
    count: int = 0

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def handle(self, signum: int, _frame: FrameType | None = None) -> None:
        self.count += 1
        if self.signal is None:
            self.signal, self.signum, self.at = signal.Signals(signum).name, signum, time.time()
            if not self.shielded and self.grace_s >= 0:
                # The timer only wakes the main thread: SIGALRM runs abort there.
                signal.signal(signal.SIGALRM, lambda *_: self._abort())
                signal.setitimer(signal.ITIMER_REAL, max(self.grace_s, 0.001))
            if self.notice is not None:
                with contextlib.suppress(Exception):
                    self.notice(self)
            return
        self._abort()

    def _abort(self) -> None:
        if self.shielded or self.aborted:
            return
        self.aborted = True
        self.abort()

    def shield(self) -> None:
        """From now on (writing outputs, the summary) signals abort nothing."""
        self.shielded = True
        signal.setitimer(signal.ITIMER_REAL, 0)


_CURRENT: Stop | None = None


def current() -> Stop | None:
    """The :class:`Stop` of the :func:`catch_signals` block in force, if any."""
    return _CURRENT


def stopping() -> bool:
    """Has a signal asked the drill in this process to stop?"""
    return _CURRENT is not None and _CURRENT.requested


def say(line: str, fd: int = 2) -> None:
    """Write *line* to stderr (or *fd*) from a signal handler: one unbuffered ``write(2)``,
    so it never re-enters a Python stream the interrupted code was writing to."""
    os.write(fd, (line.rstrip("\n") + "\n").encode("utf-8", "replace"))


def waiting_text(stop: Stop) -> str:
    """What the first signal does, ``日本語 / English``."""
    if stop.shielded:  # it came after the drills, while their outputs are written
        return (
            f"{stop.signal} を受けました。訓練は終わっています。出力を書き終えてから終了します / "
            f"got {stop.signal}: the drills have finished; exiting once the outputs are written"
        )
    return (
        f"{stop.signal} を受けました。新しい送信はせず、送信中のメッセージを最大 {stop.grace_s:g} 秒"
        f"待ってから中断します（もう一度送ると直ちに中断） / got {stop.signal}: nothing new is "
        f"sent; the messages in flight are watched for up to {stop.grace_s:g} s, then the drill "
        "stops (send it again to stop at once)"
    )


def check() -> None:
    """Raise :class:`Interrupted` if a signal asked the drill to stop (before each step)."""
    if _CURRENT is not None and _CURRENT.signal is not None:
        raise Interrupted(_CURRENT.signal)


def exit_status(stop: Stop | None, *, cut_short: bool = True) -> int | None:
    """The exit code of a run a signal stopped: 128 + the signal's number (130 SIGINT,
    143 SIGTERM, the shell's convention), else None.

    *cut_short* says whether the signal stopped anything: a run recorded ``interrupted``,
    a step or test it kept from running. A signal that came after every drill had
    finished (while the outputs were written) stopped nothing: None, and the caller
    exits with the drill's own code — a wrapper that saw 143 would run a complete
    drill again and message every member of staff twice.

    >>> stop = Stop(signal="SIGTERM", signum=15)
    >>> exit_status(stop), exit_status(stop, cut_short=False), exit_status(Stop())
    (143, None, None)
    """
    if stop is None or stop.signum is None or not cut_short:
        return None
    return 128 + stop.signum


@contextmanager
def catch_signals(
    abort: Callable[[], None] = _raise_interrupt,
    grace_s: float = GRACE_S,
    notice: Callable[[Stop], None] | None = None,
) -> Iterator[Stop]:
    """Handle SIGTERM and SIGINT as above inside the block (main thread only)."""
    global _CURRENT
    stop = Stop(abort=abort, grace_s=grace_s, notice=notice)
    previous = {s: signal.getsignal(s) for s in (*_SIGNALS, signal.SIGALRM)}
    outer = _CURRENT
    _CURRENT = stop
    for s in _SIGNALS:
        signal.signal(s, stop.handle)
    try:
        yield stop
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        for s, handler in previous.items():
            signal.signal(s, handler)
        _CURRENT = outer
