"""Unannounced drills: the seeded draw, the days, the wait on an injected clock, the printed
schedule (crontab line, systemd units checked by ``systemd-analyze`` when it is installed)."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drills.core.i18n import Text
from drills.core.runlog import RunLog
from drills.core.unannounced import (
    TOKYO,
    UnannouncedError,
    Window,
    draw_start,
    is_announced,
    is_drill_day,
    parse_window,
    unannounced_meta,
)
from drills.operator import unannounced_wait
from drills.operator.unannounced_cron import cron_fields, render_unannounced, reveal
from drills.operator.unannounced_wait import (
    CHUNK_S,
    WaitStopped,
    hold_until_drawn,
    plan_today,
    sleep_until,
    stop_on_signals,
)

SEED = b"a test seed that is long enough"

windows = st.tuples(st.integers(0, 23 * 60 + 58), st.integers(1, 24 * 60 - 1)).map(
    lambda p: Window(time(*divmod(p[0], 60)), time(*divmod(min(p[0] + p[1], 24 * 60 - 1), 60)))
)
days = st.dates(date(2000, 1, 1), date(2100, 12, 31))
seeds = st.binary(min_size=16, max_size=64)


class FakeClock:
    """Epoch seconds that move only when slept; records every sleep."""

    def __init__(self, at: datetime, on_sleep=None) -> None:
        self.t = at.timestamp()
        self.slept: list[float] = []
        self.on_sleep = on_sleep

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds
        if self.on_sleep is not None:
            self.on_sleep(self)


# --------------------------------------------------------------------------- the draw


@given(seeds, days, windows)
def test_the_drawn_time_is_inside_the_window_and_the_same_for_the_same_seed_and_date(
    seed, day, window
):
    at = draw_start(seed, day, window)
    assert at.tzinfo is TOKYO and at.date() == day
    start, end = window.on(day)
    assert start <= at < end
    assert draw_start(seed, day, window) == at


def test_the_time_differs_across_dates_and_seeds_and_covers_the_window():
    window = parse_window("09:00-17:00")
    first = date(2026, 1, 1)
    times = [draw_start(SEED, first + timedelta(days=i), window).time() for i in range(400)]
    # 400 draws among 28,800 seconds: a handful of repeats at most (birthday bound ~3)
    assert len(set(times)) >= 390
    hours = {t.hour for t in times}
    assert hours == set(range(9, 17))  # every hour of the window is drawn
    other = [draw_start(SEED + b"!", first + timedelta(days=i), window).time() for i in range(50)]
    assert sum(a == b for a, b in zip(times, other, strict=False)) <= 1


def test_weekdays_skip_saturday_and_sunday_not_holidays():
    week = [date(2026, 12, 7) + timedelta(days=i) for i in range(7)]  # Monday to Sunday
    assert [is_drill_day(d, weekdays=True) for d in week] == [True] * 5 + [False, False]
    assert all(is_drill_day(d, weekdays=False) for d in week)
    assert is_drill_day(date(2027, 1, 11), weekdays=True)  # 成人の日 (a holiday): not skipped
    saturday = datetime(2026, 12, 12, 8, 0, tzinfo=TOKYO).timestamp()
    window = parse_window("09:00-17:00")
    assert plan_today(window, SEED, saturday, weekdays=True) is None
    assert plan_today(window, SEED, saturday, weekdays=False) is not None


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("9-17", "must look like HH:MM-HH:MM"),
        ("09:00-24:00", "outside 00:00-23:59"),
        ("09:60-10:00", "outside 00:00-23:59"),
        ("10:00-10:00", "is empty"),
        ("17:00-09:00", "ends before it starts"),
        ("", "must look like"),
    ],
)
def test_a_bad_window_is_a_bilingual_error_naming_the_argument(text, says):
    with pytest.raises(UnannouncedError) as caught:
        parse_window(text, "--random-within")
    ja, en = str(caught.value).split(" / ")
    assert ja.startswith("--random-within") and en.startswith("--random-within") and says in en


def test_a_window_that_has_ended_today_is_refused_and_the_journal_meta_has_no_seed():
    evening = datetime(2026, 12, 7, 17, 0, tzinfo=TOKYO).timestamp()
    with pytest.raises(UnannouncedError, match="has already ended today"):
        plan_today(parse_window("09:00-17:00"), SEED, evening, weekdays=True)
    meta = unannounced_meta("seed:09:00-17:00")
    assert meta == {
        "announced": False,
        "unannounced": {"window": "09:00-17:00", "zone": "Asia/Tokyo", "drawn_by": "seed"},
    }
    assert not is_announced(meta) and is_announced({}) and unannounced_meta(None) == {}


# --------------------------------------------------------------------------- the wait


def test_the_wait_follows_the_injected_clock_in_chunks():
    clock = FakeClock(datetime(2026, 12, 7, 8, 0, tzinfo=TOKYO))
    target = clock.t + 3 * 3600 + 17.5
    sleep_until(target, clock)
    assert clock.t == target and max(clock.slept) <= CHUNK_S
    assert len(clock.slept) == 3 * 60 + 1
    # a clock set forward by NTP during the wait: it wakes at the target, not an hour late
    jumped = FakeClock(datetime(2026, 12, 7, 8, 0, tzinfo=TOKYO))
    jumped.on_sleep = lambda c: setattr(c, "t", c.t + 1800) if len(c.slept) == 1 else None
    sleep_until(jumped.t + 3600, jumped)
    assert sum(jumped.slept) == pytest.approx(1800)


def _args(window="09:00-17:00", **extra):
    given = {
        "unannounced_window": window,
        "unannounced_seed": "env:TSUNAGARI_TEST_UNANNOUNCED_SEED",
        "weekdays": True,
        "unannounced": None,
        "dry_run": None,
    }
    return SimpleNamespace(**{**given, **extra})


def _records(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_the_run_waits_for_the_drawn_time_and_says_it_only_when_it_starts(monkeypatch):
    monkeypatch.setenv("TSUNAGARI_TEST_UNANNOUNCED_SEED", SEED.decode())
    clock = FakeClock(datetime(2026, 12, 7, 8, 59, 30, tzinfo=TOKYO))  # a Monday
    start = clock.t
    out = io.StringIO()
    args = _args()
    assert hold_until_drawn(args, RunLog(out, verbose=True), Text("en"), clock) is None
    drawn = draw_start(SEED, date(2026, 12, 7), parse_window("09:00-17:00"))
    assert clock.t == drawn.timestamp() and sum(clock.slept) == drawn.timestamp() - start
    assert args.unannounced == "seed:09:00-17:00"  # recorded announced: false by the session
    waiting, started = _records(out)
    assert waiting["event"] == "unannounced_waiting" and started["event"] == "unannounced_started"
    assert started["drawn_at"] == drawn.isoformat()
    hhmm = f"{drawn:%H:%M}"
    assert hhmm not in json.dumps({k: v for k, v in waiting.items() if k != "ts"})
    assert SEED.decode() not in out.getvalue()


def test_a_run_started_after_the_drawn_time_starts_at_once_and_says_how_late(monkeypatch):
    monkeypatch.setenv("TSUNAGARI_TEST_UNANNOUNCED_SEED", SEED.decode())
    clock = FakeClock(datetime(2026, 12, 7, 16, 59, 59, tzinfo=TOKYO))  # 1 s before the end
    out = io.StringIO()
    assert hold_until_drawn(_args(), RunLog(out, verbose=True), Text("en"), clock) is None
    drawn = draw_start(SEED, date(2026, 12, 7), parse_window("09:00-17:00"))
    assert clock.slept == []
    started = _records(out)[-1]
    assert started["late_s"] == clock.t - drawn.timestamp() > 0


def test_a_signal_during_the_wait_calls_the_drill_off(monkeypatch):
    monkeypatch.setenv("TSUNAGARI_TEST_UNANNOUNCED_SEED", SEED.decode())

    def terminate(clock):  # SIGTERM arrives during the third sleep
        if len(clock.slept) == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    clock = FakeClock(datetime(2026, 12, 7, 8, 59, tzinfo=TOKYO), on_sleep=terminate)
    out = io.StringIO()
    args = _args()
    assert hold_until_drawn(args, RunLog(out), Text("en"), clock) == 143
    assert len(clock.slept) == 3 and args.unannounced is None
    (cancelled,) = _records(out)
    assert cancelled["event"] == "unannounced_cancelled" and cancelled["signal"] == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is put back


def test_a_signal_while_a_record_is_written_is_raised_at_the_next_sleep():
    clock = FakeClock(datetime(2026, 12, 7, 8, 59, tzinfo=TOKYO))
    before = signal.getsignal(signal.SIGINT)
    with stop_on_signals() as signals:
        os.kill(os.getpid(), signal.SIGINT)  # not asleep (e.g. writing the record): noted only
        assert signals.signum == signal.SIGINT
        with pytest.raises(WaitStopped) as stopped:
            sleep_until(clock.t + 100, clock, signals)
    assert clock.slept == [] and stopped.value.name == "SIGINT"
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (_args("17:00-09:00"), SEED.decode(), "--unannounced-window window '17:00-09:00' ends"),
        (_args(), None, "environment variable TSUNAGARI_TEST_UNANNOUNCED_SEED is not set"),
        (_args(), "Zq7#x", "the seed is too short"),
        (_args(unannounced_seed="literal-seed-value-here"), None, "a secret reference"),
        (_args(None), None, "go with --unannounced-window"),
        (_args(unannounced="09:00-17:00"), None, "cannot be used together"),
    ],
)
def test_bad_unannounced_run_arguments_exit_2_naming_them(monkeypatch, args, env, says):
    if env is None:
        monkeypatch.delenv("TSUNAGARI_TEST_UNANNOUNCED_SEED", raising=False)
    else:
        monkeypatch.setenv("TSUNAGARI_TEST_UNANNOUNCED_SEED", env)
    out = io.StringIO()
    clock = FakeClock(datetime(2026, 12, 7, 8, 0, tzinfo=TOKYO))
    assert hold_until_drawn(args, RunLog(out), Text("en"), clock) == 2
    (record,) = _records(out)
    assert record["event"] == "usage_error" and says in record["message"], record
    assert clock.slept == [] and "literal-seed-value-here" not in record["message"]


def test_the_wait_defaults_to_the_system_clock():
    assert isinstance(unannounced_wait.default_clock(), unannounced_wait.SystemClock)


# --------------------------------------------------------------------------- the schedule


def _render(weekdays=True, zone=TOKYO, window="09:00-17:00"):
    return render_unannounced(
        parse_window(window),
        weekdays,
        "file:/etc/tsunagari/unannounced.seed",
        "drill-x",
        Path("/srv/drills"),
        ["/opt/tsunagari/bin/tsunagari", "--lang", "en", "run", "--registry", "r.yaml", "s/%Y"],
        "en",
        zone,
        date(2026, 12, 7),
    )


def _units(text: str) -> dict[str, str]:
    parts = re.split(r"^# /etc/systemd/system/(\S+)\n", text, flags=re.M)
    return {
        name: body.split("\n# enable")[0].split("\n\n# /etc")[0]
        for name, body in zip(parts[1::2], parts[2::2], strict=True)
    }


def test_the_crontab_line_fires_at_the_window_start_and_runs_the_seeded_wait():
    lines = _render().splitlines()
    cron = next(ln for ln in lines if ln.startswith("0 9 * * 1-5 "))
    assert cron == (
        "0 9 * * 1-5 cd /srv/drills && /opt/tsunagari/bin/tsunagari --lang en run "
        "--unannounced-window 09:00-17:00 --unannounced-seed file:/etc/tsunagari/unannounced.seed "
        "--weekdays --registry r.yaml s/\\%Y"
    )
    assert not any("UTC" in ln for ln in lines)  # a machine on Japan time: no conversion note
    every_day = next(ln for ln in _render(weekdays=False).splitlines() if ln.startswith("0 9 "))
    assert every_day.startswith("0 9 * * * ") and "--weekdays" not in every_day
    # a machine on UTC: 08:30 JST Monday is 23:30 UTC Sunday
    utc = _render(zone=UTC, window="08:30-12:00")
    assert "\n30 23 * * 0-4 cd /srv/drills" in utc and "UTC+0000" in utc
    assert cron_fields(parse_window("09:00-17:00"), True, timezone(timedelta(hours=10)),
                       date(2026, 12, 7)) == ("0 10 * * 1-5", "10:00")  # fmt: skip


def test_the_systemd_timer_randomises_over_the_window_and_marks_the_run_unannounced():
    units = _units(_render())
    assert set(units) == {"drill-x.service", "drill-x.timer"}
    service, timer = units["drill-x.service"], units["drill-x.timer"]
    assert (
        "ExecStart=/opt/tsunagari/bin/tsunagari --lang en run --unannounced 09:00-17:00 "
        "--registry r.yaml s/%%Y\n" in service
    )
    assert "--unannounced-seed" not in service  # systemd draws; nothing to reproduce
    timer_lines = timer.splitlines()
    assert "OnCalendar=Mon..Fri *-*-* 09:00:00 Asia/Tokyo" in timer_lines
    assert "RandomizedDelaySec=28799" in timer_lines  # 8 h less 1 s: ends inside the window
    assert "FixedRandomDelay=false" in timer_lines and "Persistent=false" in timer_lines
    daily = _units(_render(weekdays=False))["drill-x.timer"]
    assert "OnCalendar=*-*-* 09:00:00 Asia/Tokyo" in daily.splitlines()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_accepts_the_printed_units(tmp_path):
    for name, body in _units(_render()).items():
        (tmp_path / name).write_text(body, encoding="utf-8")
    (tmp_path / "drill-x.service").write_text(
        (tmp_path / "drill-x.service")
        .read_text()
        .replace("/opt/tsunagari/bin/tsunagari", shutil.which("true") or "/bin/true")
        .replace("/srv/drills", str(tmp_path)),
        encoding="utf-8",
    )
    done = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "drill-x.timer")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr  # warnings are failures too
    on_calendar = next(ln for ln in _units(_render())["drill-x.timer"].splitlines()
                       if ln.startswith("OnCalendar="))  # fmt: skip
    calendar = subprocess.run(
        ["systemd-analyze", "calendar", "--iterations=7", on_calendar.removeprefix("OnCalendar=")],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "TZ": "UTC"},  # the machine's zone must not matter
    )
    assert calendar.returncode == 0, calendar.stderr
    elapses = re.findall(r"(?:Next elapse|Iter\. #\d+): \w{3} (\S+ \S+) UTC", calendar.stdout)
    assert len(elapses) == 7, calendar.stdout
    jst = [datetime.fromisoformat(e).replace(tzinfo=UTC).astimezone(TOKYO) for e in elapses]
    assert {(at.hour, at.minute, at.second) for at in jst} == {(9, 0, 0)}
    assert all(at.weekday() < 5 for at in jst) and len({at.date() for at in jst}) == 7


def test_reveal_shows_past_days_only(monkeypatch):
    window = parse_window("09:00-17:00")
    today = date(2026, 12, 10)
    line = reveal(SEED, date(2026, 12, 7), window, True, today, "en")
    assert (
        line
        == f"2026-12-07 (Mon) {draw_start(SEED, date(2026, 12, 7), window):%H:%M:%S} JST  (09:00-17:00)\n"
    )
    assert "no drill" in reveal(SEED, date(2026, 12, 6), window, True, today, "en")
    for day in (today, today + timedelta(days=1)):
        with pytest.raises(UnannouncedError, match="past dates only"):
            reveal(SEED, day, window, True, today, "en")


@pytest.mark.parametrize(
    "module",
    [
        "drills.core.unannounced",
        "drills.operator.unannounced_cron",
        "drills.reporting.announcement",
    ],
)
def test_docstring_examples(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
