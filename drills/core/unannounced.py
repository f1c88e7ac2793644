"""Unannounced drills (抜き打ち訓練): a seeded start time inside a window, and how a run says so.

A drill staff know the time of measures how fast they answer when they are
waiting for it. An *unannounced* drill starts at a time drawn inside a window
(``09:00-17:00``, always Asia/Tokyo, whatever the machine's time zone), so the
acknowledgement and roll-call times measure real reaction.

The time is drawn by :func:`draw_start` from a secret seed and the date:
HMAC-SHA256(seed, ``"tsunagari-unannounced-v1|<date>|<window>"``) read as a
number of seconds into the window. The same seed, date and window give the same
time, so an auditor who holds the seed can reproduce the time afterwards; staff
who do not hold it cannot predict it, and different days give unrelated times.
(The draw is the first 8 bytes of the HMAC modulo the window's length in
seconds: the bias is below 2⁻⁴⁸, far under a second a year.)

>>> w = parse_window("09:00-17:00")
>>> str(w), w.seconds
('09:00-17:00', 28800)
>>> at = draw_start(b"an example seed, never a real one", date(2026, 12, 7), w)
>>> at.isoformat(), w.contains(at)
('2026-12-07T09:30:28+09:00', True)
>>> is_drill_day(date(2026, 12, 5), weekdays=True)   # a Saturday
False

Japanese public holidays (祝日) are *not* skipped by ``--weekdays``: no
holiday calendar is installed with tsunagari, and a hand-kept list goes stale.
An operator who wants them skipped removes those days from the schedule.

How a run records it: ``runs.meta`` (journal) of an unannounced run has
``"announced": false`` and ``"unannounced": {"window", "zone", "drawn_by"}``
(:func:`unannounced_meta`) — never the seed. A run without ``"announced"`` is an
announced one (every run journalled before this existed): read it with
:func:`is_announced`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

__all__ = [
    "DRAWN_BY",
    "MIN_SEED_BYTES",
    "TOKYO",
    "UnannouncedError",
    "Window",
    "check_seed",
    "draw_start",
    "is_announced",
    "is_drill_day",
    "parse_marker",
    "parse_window",
    "unannounced_meta",
]

TOKYO = ZoneInfo("Asia/Tokyo")
MIN_SEED_BYTES = 16
"""A shorter seed could be guessed by trying every value: refused."""

DRAWN_BY = {
    "seed": (
        "tsunagari run が秘密の種と日付から時刻を決め、その時刻まで待って開始（種があれば後から再現可能）",
        "tsunagari run drew the time from the secret seed and the date and waited for it "
        "(reproducible afterwards by whoever holds the seed)",
    ),
    "timer": (
        "スケジューラ（systemd の RandomizedDelaySec など）が時刻を決めた（再現不可、開始時刻だけが記録）",
        "the scheduler (e.g. systemd's RandomizedDelaySec) chose the time (not reproducible; "
        "only the start time is recorded)",
    ),
}

_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_DOMAIN = "tsunagari-unannounced-v1"


class UnannouncedError(ValueError):
    """A bad window, seed or date (message: "日本語 / English", naming the argument)."""


@dataclass(frozen=True)
class Window:
    """A time-of-day window in Asia/Tokyo, start inclusive, end exclusive, within one day."""

    start: time
    end: time

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    @property
    def seconds(self) -> int:
        return _secs(self.end) - _secs(self.start)

    def on(self, day: date) -> tuple[datetime, datetime]:
        """The window's start and end on *day* (aware, Asia/Tokyo)."""
        return datetime.combine(day, self.start, TOKYO), datetime.combine(day, self.end, TOKYO)

    def contains(self, at: datetime) -> bool:
        start, end = self.on(at.astimezone(TOKYO).date())
        return start <= at < end


def _secs(t: time) -> int:
    return t.hour * 3600 + t.minute * 60


def parse_window(text: str, arg: str = "--random-within") -> Window:
    """``"HH:MM-HH:MM"`` (Asia/Tokyo) → :class:`Window`; :class:`UnannouncedError` naming *arg*.

    >>> parse_window("9:00-9:30")
    Window(start=datetime.time(9, 0), end=datetime.time(9, 30))
    >>> parse_window("17:00-09:00")
    Traceback (most recent call last):
    ...
    drills.core.unannounced.UnannouncedError: --random-within の時間帯 '17:00-09:00' は終わりが始まりより前です（日付をまたぐ時間帯は使えません） / --random-within window '17:00-09:00' ends before it starts (a window cannot cross midnight)
    """
    m = _WINDOW.match(text or "")
    if not m:
        raise UnannouncedError(
            f"{arg} は HH:MM-HH:MM（日本時間）の形です: {text!r} / {arg} must look like "
            f"HH:MM-HH:MM (Asia/Tokyo): {text!r}"
        )
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    for h, mi in ((h1, m1), (h2, m2)):
        if h > 23 or mi > 59:
            raise UnannouncedError(
                f"{arg} の時刻 {h:02d}:{mi:02d} は 00:00〜23:59 の範囲外です / {arg} time "
                f"{h:02d}:{mi:02d} is outside 00:00-23:59"
            )
    window = Window(time(h1, m1), time(h2, m2))
    if window.seconds == 0:
        raise UnannouncedError(
            f"{arg} の時間帯 {text!r} は長さが 0 です / {arg} window {text!r} is empty"
        )
    if window.seconds < 0:
        raise UnannouncedError(
            f"{arg} の時間帯 {text!r} は終わりが始まりより前です（日付をまたぐ時間帯は使えません）"
            f" / {arg} window {text!r} ends before it starts (a window cannot cross midnight)"
        )
    return window


def check_seed(seed: str, arg: str = "--unannounced-seed") -> bytes:
    """The seed's bytes; :class:`UnannouncedError` if it is too short to stay secret."""
    data = seed.encode("utf-8")
    if len(data) < MIN_SEED_BYTES:
        raise UnannouncedError(
            f"{arg} の種が短すぎます（{MIN_SEED_BYTES} バイト以上。例: "
            "python3 -c 'import secrets; print(secrets.token_hex(32))'） / "
            f"{arg}: the seed is too short (at least {MIN_SEED_BYTES} bytes; e.g. "
            "python3 -c 'import secrets; print(secrets.token_hex(32))')"
        )
    return data


def draw_start(seed: bytes, day: date, window: Window) -> datetime:
    """The start time of *day*'s unannounced drill (aware, Asia/Tokyo), inside *window*."""
    message = f"{_DOMAIN}|{day.isoformat()}|{window}".encode()
    digest = hmac.new(seed, message, hashlib.sha256).digest()
    offset = int.from_bytes(digest[:8], "big") % window.seconds
    return window.on(day)[0] + timedelta(seconds=offset)


def is_drill_day(day: date, *, weekdays: bool) -> bool:
    """Is *day* a day to drill on? With *weekdays*, Monday to Friday only (holidays are not
    skipped: see the module docstring)."""
    return not weekdays or day.weekday() < 5


def parse_marker(value: str, arg: str = "--unannounced") -> tuple[str, str]:
    """``--unannounced`` value → (window text, drawn_by).

    ``WINDOW`` when the scheduler chose the time (systemd's ``RandomizedDelaySec``);
    ``seed:WINDOW`` is what ``tsunagari run --unannounced-window`` passes on after its
    seeded wait.

    >>> parse_marker("09:00-17:00"), parse_marker("seed:9:00-17:00")
    (('09:00-17:00', 'timer'), ('09:00-17:00', 'seed'))
    """
    drawn_by, sep, rest = value.partition(":")
    if sep and drawn_by == "seed":
        return str(parse_window(rest, arg)), "seed"
    return str(parse_window(value, arg)), "timer"


def unannounced_meta(marker: str | None) -> dict[str, Any]:
    """What ``runs.meta`` gets for the ``--unannounced`` setting (nothing for an announced run).

    >>> unannounced_meta("seed:09:00-17:00")
    {'announced': False, 'unannounced': {'window': '09:00-17:00', 'zone': 'Asia/Tokyo', 'drawn_by': 'seed'}}
    >>> unannounced_meta(None)
    {}
    """
    if not marker:
        return {}
    window, drawn_by = parse_marker(marker)
    return {
        "announced": False,
        "unannounced": {"window": window, "zone": "Asia/Tokyo", "drawn_by": drawn_by},
    }


def is_announced(meta: dict[str, Any] | None) -> bool:
    """Was the run announced? Absent (every older run) means announced.

    >>> is_announced({}), is_announced({"announced": False}), is_announced(None)
    (True, False, True)
    """
    return (meta or {}).get("announced", True) is not False
