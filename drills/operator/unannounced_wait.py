"""``tsunagari run --unannounced-window 09:00-17:00 --unannounced-seed REF``: wait, then drill.

cron cannot pick a random time, so ``tsunagari cron --random-within`` fires
``tsunagari run`` at the window's start and this module waits until the time
drawn by :func:`drills.core.unannounced.draw_start` for today's date (Asia/Tokyo)
from the secret seed. Then the run goes on as any other, recorded
``announced: false`` (``--unannounced seed:WINDOW`` is passed on to the session).

What it says, and when (JSON records on stderr, info ones with ``-v`` only):

- ``unannounced_waiting`` while it waits: the window and the date, **never the
  drawn time** — the log is read by the same people the drill is for, and a
  line written at 09:00 saying "the drill starts at 14:23" would announce it.
- ``unannounced_started`` at the moment the drill starts: the drawn time (now
  nobody can act on it), and ``late_s`` if the run was started after it (the
  machine was down at the window's start: the drill starts at once, inside the
  window, rather than at a new time an auditor could not reproduce).
- ``unannounced_skipped`` (exit 0) on a Saturday or Sunday with ``--weekdays``.
- ``unannounced_cancelled`` (error) when SIGTERM or SIGINT came during the wait:
  nothing was sent and **nothing is written to the journal** (no run began);
  the exit code is 143 or 130, as :mod:`drills.core.interrupt`.

A window that has already ended today, an empty, inverted or malformed window,
a missing or too short seed are usage errors (exit 2) naming the argument.

The wait sleeps at most :data:`CHUNK_S` at a time and reads the clock again, so a
clock set forward or back (NTP) is followed. The clock is injectable
(:func:`default_clock`): tests replace it and never sleep for real.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from types import FrameType
from typing import Any, Protocol

from drills.core.i18n import Text
from drills.core.unannounced import (
    TOKYO,
    UnannouncedError,
    Window,
    check_seed,
    draw_start,
    is_drill_day,
    parse_window,
)

__all__ = [
    "CHUNK_S",
    "Clock",
    "Plan",
    "Signals",
    "SystemClock",
    "WaitStopped",
    "add_arguments",
    "default_clock",
    "hold_until_drawn",
    "plan_today",
    "read_seed",
    "sleep_until",
    "stop_on_signals",
    "wait_until",
]

CHUNK_S = 60.0
_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Clock(Protocol):
    """Wall-clock time (epoch seconds) and a way to pass it."""

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def default_clock() -> Clock:
    """The clock the wait uses (tests replace this function)."""
    return SystemClock()


class WaitStopped(Exception):
    """SIGTERM or SIGINT came during the wait."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.name = signal.Signals(signum).name


@dataclass(frozen=True)
class Plan:
    """Today's unannounced drill: None from :func:`plan_today` when today is skipped."""

    day: date
    window: Window
    drawn: datetime  # aware, Asia/Tokyo


def plan_today(window: Window, seed: bytes, now: float, *, weekdays: bool) -> Plan | None:
    """Today's (Asia/Tokyo) drawn time; None on a skipped day; UnannouncedError if the window
    has already ended today."""
    at = datetime.fromtimestamp(now, TOKYO)
    if not is_drill_day(at.date(), weekdays=weekdays):
        return None
    end = window.on(at.date())[1]
    if at >= end:
        raise UnannouncedError(
            f"--unannounced-window の時間帯 {window}（日本時間）は今日はもう終わっています"
            f"（現在 {at:%H:%M}） / --unannounced-window {window} (Asia/Tokyo) has already ended "
            f"today (it is {at:%H:%M} now)"
        )
    return Plan(at.date(), window, draw_start(seed, at.date(), window))


class Signals:
    """SIGTERM/SIGINT while :func:`stop_on_signals` is in force: noted at once, raised as
    :class:`WaitStopped` only while asleep (or at the next sleep), never in the middle of
    writing a log record — a record cut short by the exception would be written twice."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.asleep = False

    def handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        if self.asleep:
            self.asleep = False
            raise WaitStopped(self.signum)

    def sleep(self, clock: Clock, seconds: float) -> None:
        self.asleep = True  # first: a signal from here on raises
        try:
            if self.signum is not None:  # one that came before (while logging)
                raise WaitStopped(self.signum)
            clock.sleep(seconds)
        finally:
            self.asleep = False


@contextmanager
def stop_on_signals() -> Iterator[Signals]:
    """Handle SIGTERM and SIGINT with a :class:`Signals` inside the block (main thread only)."""
    state = Signals()
    previous = {s: signal.getsignal(s) for s in _SIGNALS}
    for s in _SIGNALS:
        signal.signal(s, state.handle)
    try:
        yield state
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def sleep_until(
    target: float, clock: Clock, signals: Signals | None = None, chunk_s: float = CHUNK_S
) -> None:
    """Sleep on *clock* until *target* (epoch seconds), at most *chunk_s* at a time;
    with *signals*, :class:`WaitStopped` once a signal came."""
    while (left := target - clock.now()) > 0:
        if signals is None:
            clock.sleep(min(left, chunk_s))
        else:
            signals.sleep(clock, min(left, chunk_s))
    if signals is not None and signals.signum is not None:
        raise WaitStopped(signals.signum)


def wait_until(target: float, clock: Clock, chunk_s: float = CHUNK_S) -> None:
    """:func:`sleep_until`; :class:`WaitStopped` on SIGTERM/SIGINT (main thread only)."""
    with stop_on_signals() as signals:
        sleep_until(target, clock, signals, chunk_s)


def read_seed(ref_text: str) -> bytes:
    """The seed behind a reference (registered for redaction: never printed)."""
    from probes.settings import SecretRef, SecretUnresolvable

    try:
        ref = SecretRef.parse(ref_text)
    except ValueError:
        raise UnannouncedError(
            "--unannounced-seed は秘密情報の参照（env:変数名 か file:パス）です。値そのものは書けません"
            " / --unannounced-seed is a secret reference (env:NAME or file:PATH), never the value"
        ) from None
    try:
        return check_seed(ref.reveal())  # registered for redaction: never printed
    except SecretUnresolvable as exc:
        raise UnannouncedError(
            f"--unannounced-seed: {exc.ja} / --unannounced-seed: {exc.en}"
        ) from None


def hold_until_drawn(args: Any, log: Any, t: Text, clock: Clock | None = None) -> int | None:
    """The ``tsunagari run`` side: None to go on (``args.unannounced`` set), else an exit code.

    *args* carries ``unannounced_window``, ``unannounced_seed``, ``weekdays`` (and the
    drill options); *log* is the run's :class:`drills.core.runlog.RunLog`.
    """
    clock = clock or default_clock()
    try:
        if getattr(args, "unannounced", None):
            raise UnannouncedError(
                "--unannounced と --unannounced-window は一緒に使えません"
                " / --unannounced and --unannounced-window cannot be used together"
            )
        if getattr(args, "dry_run", None):
            raise UnannouncedError(
                "--dry-run と --unannounced-window は一緒に使えません（試行は待たずに計画を表示します）"
                " / --dry-run and --unannounced-window cannot be used together (a dry run "
                "shows the plan without waiting)"
            )
        if not args.unannounced_window:
            raise UnannouncedError(
                "--unannounced-seed と --weekdays は --unannounced-window と一緒に使います"
                " / --unannounced-seed and --weekdays go with --unannounced-window"
            )
        window = parse_window(args.unannounced_window, "--unannounced-window")
        if not args.unannounced_seed:
            raise UnannouncedError(
                "--unannounced-window には --unannounced-seed（env:変数名 か file:パス）が必要です"
                " / --unannounced-window needs --unannounced-seed (env:NAME or file:PATH)"
            )
        plan = plan_today(
            window, read_seed(args.unannounced_seed), clock.now(), weekdays=args.weekdays
        )
    except UnannouncedError as exc:
        log.error("usage_error", message=t.pick(str(exc)))
        return 2
    if plan is None:
        today = datetime.fromtimestamp(clock.now(), TOKYO).date()
        log.info(
            "unannounced_skipped",
            date=today.isoformat(),
            message=t(
                "土日のため訓練しません（--weekdays）", "not a weekday: no drill (--weekdays)"
            ),
        )
        return 0
    try:
        with stop_on_signals() as signals:  # before the record: a signal after it is caught
            log.info(
                "unannounced_waiting",
                date=plan.day.isoformat(),
                window=str(window),
                zone="Asia/Tokyo",
                message=t(
                    "抜き打ち訓練: 時間帯の中の決められた時刻まで待ちます（時刻は開始時に記録します）",
                    "unannounced drill: waiting for the drawn time inside the window (logged "
                    "when it starts)",
                ),
            )
            sleep_until(plan.drawn.timestamp(), clock, signals)
    except WaitStopped as stopped:
        log.error(
            "unannounced_cancelled",
            signal=stopped.name,
            message=t(
                f"待機中に {stopped.name} を受けたため訓練を取りやめました。何も送信せず、記録もしていません",
                f"{stopped.name} came during the wait: the drill was called off; nothing was sent "
                "and nothing was journalled",
            ),
        )
        return 128 + stopped.signum
    late = clock.now() - plan.drawn.timestamp()
    log.info(
        "unannounced_started",
        drawn_at=plan.drawn.isoformat(),
        window=str(window),
        late_s=round(late, 3) if late >= 1 else None,
    )
    args.unannounced = f"seed:{window}"
    return None


def add_arguments(p: Any, t: Callable[[str, str], str]) -> None:
    """The ``tsunagari run`` flags of the seeded wait."""
    p.add_argument(
        "--unannounced-window",
        metavar="HH:MM-HH:MM",
        help=t(
            "抜き打ち訓練: 日本時間のこの時間帯の中の、種と日付から決まる時刻まで待ってから実行する",
            "unannounced drill: wait until a time drawn from the seed and the date inside this "
            "window (Asia/Tokyo), then run",
        ),
    )
    p.add_argument(
        "--unannounced-seed",
        metavar="env:NAME|file:PATH",
        help=t(
            "時刻を決める秘密の種（参照のみ。値は表示・記録しません）",
            "the secret seed of the drawn time (a reference; the value is never shown or journalled)",
        ),
    )
    p.add_argument(
        "--weekdays",
        action="store_true",
        help=t(
            "月〜金だけ実行する（祝日は除外しません）",
            "run Monday to Friday only (public holidays are not skipped)",
        ),
    )
