"""Pure parts of the scenario machinery: requirements, replies, schedules, the lock."""

from __future__ import annotations

import argparse
import doctest
import shutil
import subprocess
import sys
import textwrap

import pytest

import drills.core.requirements
import drills.core.schedule
import drills.operator.exit_codes
import drills.steps.acknowledgement
import drills.steps.selection
import probes.replies
from drills.core.delivery import Delivery, Outcome
from drills.core.errors import LockBusy
from drills.core.lock import RunLock
from drills.core.requirements import (
    ScenarioMistake,
    Status,
    judge_broadcast,
    parse_seconds,
    parse_share,
)
from drills.core.schedule import ScheduleError, on_calendar
from probes.replies import ReplyBook, format_reply, parse_replies


@pytest.mark.parametrize(
    "module",
    [
        drills.core.requirements,
        drills.core.schedule,
        drills.steps.acknowledgement,
        drills.steps.selection,
        drills.operator.exit_codes,
        probes.replies,
    ],
)
def test_doctests(module):
    assert doctest.testmod(module).failed == 0


def delivery(
    code: str, channel: str, outcome: Outcome, latency: float | None = None, reason: str = ""
) -> Delivery:
    return Delivery(
        "r",
        "s",
        code,
        f"団体{code}",
        channel,
        "webhook",
        "TSG-0000000000AA",
        outcome,
        reason,
        latency_s=latency,
    )


def test_judge_broadcast_per_municipality():
    ds = [
        delivery("131211", "chat", Outcome.DELIVERED, 0.3),
        delivery("131211", "mail", Outcome.LATE, 5.0, "SLO 3 秒超過 / over the 3 s SLO"),
        delivery("131016", "chat", Outcome.DELIVERED, 0.2),
        delivery("131016", "mail", Outcome.REJECTED, None, "HTTP 401"),
        delivery("134210", "chat", Outcome.ERROR, None, "観測できません / observer failed"),
        delivery("134210", "mail", Outcome.DELIVERED, 0.5),
    ]
    by = {v.code: v for v in judge_broadcast(ds, 0.5, 6.0)}
    assert by["131211"].status is Status.MET  # late but within 6 s
    assert by["131016"].status is Status.MET  # 1/2 ≥ 50%
    assert (
        by["134210"].status is Status.HARNESS
    )  # the harness could not look: no verdict on the channel
    strict = {v.code: v for v in judge_broadcast(ds, 1.0, 1.0)}
    assert strict["131211"].status is Status.MISSED
    (row,) = strict["131211"].rows
    assert (row.channel, row.outcome) == ("mail", "late") and "after 1 s" in row.reason
    assert "mail [webhook] 拒否 — HTTP 401" in strict["131016"].render("ja")
    assert "1 秒以内の到達 1/2（50%、要件 100% 以上）" in strict["131016"].render("ja")
    # no within: each channel's SLO decides (late does not count)
    slo = {v.code: v for v in judge_broadcast(ds, 1.0, None)}
    assert slo["131211"].status is Status.MISSED and "within the SLO" in slo["131211"].summary_en


def test_judge_broadcast_reads_the_same_whatever_finished_first():
    """Verdicts in the registry's order (then by code), rows by channel: never in the
    order the deliveries finished, which differs from run to run."""
    ds = [
        delivery("134210", "mail", Outcome.LOST, None, "不達 / lost"),
        delivery("131016", "mail", Outcome.LOST, None, "不達 / lost"),
        delivery("134210", "chat", Outcome.REJECTED, None, "HTTP 401"),
        delivery("131016", "chat", Outcome.DELIVERED, 0.2),
        delivery("999999", "chat", Outcome.LOST, None, "不達 / lost"),
        delivery("100005", "chat", Outcome.LOST, None, "不達 / lost"),
    ]
    names = {"131016": "Chiyoda", "134210": "Ogasawara"}
    for order in (ds, ds[::-1]):
        verdicts = judge_broadcast(order, 1.0, 2.0, names)
        assert [v.code for v in verdicts] == ["131016", "134210", "100005", "999999"]
        assert [r.channel for r in verdicts[1].rows] == ["chat", "mail"]
    assert [v.code for v in judge_broadcast(ds, 1.0, 2.0)] == sorted(
        {d.municipality_code for d in ds}
    )


@pytest.mark.parametrize("bad", ["99", "120%", "0%", "abc", True, -0.5])
def test_share_mistakes(bad):
    with pytest.raises(ScenarioMistake):
        parse_share(bad) if bad != "99" else parse_share(99)


def test_seconds():
    assert parse_seconds("2m") == 120.0 and parse_seconds(1.5) == 1.5
    with pytest.raises(ScenarioMistake, match="60s"):
        parse_seconds("one minute")
    with pytest.raises(ScenarioMistake):
        parse_seconds(0)


def test_replies_round_trip_and_book():
    token = "TSG-7K3Q9XW2M4PD"
    text = f"【訓練】 {format_reply(token, '131211', '受信しました')}\n[{token}]"
    assert parse_replies(text) == [(token, "131211")]
    # the instruction in a roll call shows the format but is not an answer
    assert parse_replies("「RE[トークン] 団体コード」 RE[token] x RE[TSG-…] 131211") == []
    # JSON-escaped transport (the simulator's read-back) still parses
    assert parse_replies('{"text": "\\u3010RE[TSG-7K3Q9XW2M4PD] staff-001 \\u7121\\u4e8b"}') == [
        (token, "staff-001")
    ]
    with pytest.raises(ValueError):
        format_reply(token, "足立区")
    book = ReplyBook()
    assert book.feed(text, at=10.0) == 1
    assert (
        book.feed(text + "\n" + format_reply(token, "131016"), at=11.0) == 1
    )  # first answer per responder
    assert [(r.responder, r.at) for r in book.replies(token)] == [
        ("131211", 10.0),
        ("131016", 11.0),
    ]
    assert book.replies("TSG-0000000000AA") == []


def test_selection_suggestions():
    from drills.steps.selection import suggest

    assert suggest("twillio", ["webhook", "mail", "twilio"]) == "twilio"
    assert suggest("xyz", ["chat"]) is None


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("*/30 * * * *", ["*-*-* *:00/30:00"]),
        ("0 9 * * 1-5", ["Mon,Tue,Wed,Thu,Fri *-*-* 09:00:00"]),
        ("15 3 1 * *", ["*-*-01 03:15:00"]),
        ("0 6 1 * 0", ["*-*-01 06:00:00", "Sun *-*-* 06:00:00"]),  # cron: day OR weekday
        ("0 0 * jan,jul sun", ["Sun *-01,07-* 00:00:00"]),
        ("0 8-18/2 * * *", ["*-*-* 08,10,12,14,16,18:00:00"]),
        ("@weekly", ["weekly"]),
    ],
)
def test_on_calendar(expr, expected):
    assert on_calendar(expr) == expected
    if shutil.which("systemd-analyze"):
        for spec in expected:
            done = subprocess.run(
                ["systemd-analyze", "calendar", spec], capture_output=True, text=True
            )
            assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    "expr", ["* * * *", "61 * * * *", "*/0 * * * *", "0 9 * * 1-9", "@reboot", "5-1 * * * *"]
)
def test_bad_schedules(expr):
    with pytest.raises(ScheduleError):
        on_calendar(expr)


def test_lock_is_exclusive_across_processes_and_reentrant_within(tmp_path):
    path = tmp_path / "run.lock"
    with RunLock(path):
        with RunLock(path):  # the same process (tsunagari run + its plugin) may nest
            pass
        holder = subprocess.run(
            [
                sys.executable,
                "-c",
                textwrap.dedent(f"""
                from drills.core.lock import RunLock
                from drills.core.errors import LockBusy
                try:
                    RunLock({str(path)!r}).acquire()
                except LockBusy as exc:
                    print("busy", exc)
                """),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert (
            holder.stdout.startswith("busy ")
            and "another drill run is in progress" in holder.stdout
        )
        assert str(__import__("os").getpid()) in holder.stdout  # names the holder
    RunLock(path).acquire().release()  # free again after the block


def test_lock_released_when_the_holder_dies(tmp_path):
    path = tmp_path / "run.lock"
    code = textwrap.dedent(f"""
        import time
        from drills.core.lock import RunLock
        with RunLock({str(path)!r}):
            print("held", flush=True)
            time.sleep(30)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        with pytest.raises(LockBusy):
            RunLock(path).acquire()
    finally:
        proc.kill()
        proc.communicate()
    RunLock(path).acquire().release()  # the OS released the dead holder's lock


def test_pytest_args_for_cron():
    from drills.commands.run import pytest_args

    args = argparse.Namespace(
        paths=["scenarios"],
        lang="ja",
        registry="r.yaml",
        journal=None,
        out="o",
        push_gateway=None,
        textfile=None,
        vantage="LGWAN",
        lock=None,
        seed=None,
        municipality=["23ku"],
        live=None,
        keyword=None,
        verbose=0,
        pytest_args=[],
    )
    argv = pytest_args(args, tty=False)
    assert argv[0] == "scenarios" and "--strict-markers" in argv
    assert {
        "--registry=r.yaml",
        "--out=o",
        "--vantage=LGWAN",
        "--municipality=23ku",
        "--color=no",
        "-q",
    } <= set(argv)
    assert "--live" not in argv and "--color=no" not in pytest_args(args, tty=True)
