"""Unannounced drills end to end, in fresh ``tsunagari`` processes: the seeded wait on an
injected clock, the journal's ``announced: false``, the scorecard's label, a SIGTERM during
a real wait, and ``tsunagari cron --random-within``."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from drills.core.journal import Journal
from drills.core.unannounced import TOKYO, Window, draw_start, parse_window
from drills.reporting.text import to_markdown
from drills.reporting.vantage import vantage_view

ROOT = Path(__file__).resolve().parents[2]
SEED = "seed-for-the-unannounced-run-tests"

PASSING = '''\
"""点呼テスト（成功）"""
import pytest

pytestmark = [pytest.mark.scenario("抜き打ちの訓練"), pytest.mark.deadline("3s")]


def test_23区(drill):
    drill.broadcast("参集してください", channels="chat", to="23ku").expect(reached="100%", within="2s")
'''

# A child process whose wait runs on a fake clock (it never sleeps); the rest is the real CLI.
FAKE_CLOCK = """\
import json, sys
from drills.operator import unannounced_wait

class FakeClock:
    def __init__(self, t):
        self.t, self.slept = t, []
    def now(self):
        return self.t
    def sleep(self, seconds):
        self.slept.append(seconds)
        self.t += seconds

clock = FakeClock(float(sys.argv[1]))
unannounced_wait.default_clock = lambda: clock
from drills.cli import main
code = main(sys.argv[3:])
with open(sys.argv[2], "w") as f:
    json.dump({"slept": clock.slept, "t": clock.t}, f)
sys.exit(code)
"""


def env() -> dict[str, str]:
    out = {**os.environ, "PYTHONPATH": str(ROOT), "TSUNAGARI_TEST_SEED": SEED}
    out.pop("PYTEST_ADDOPTS", None)
    return out


@pytest.fixture
def workdir(tmp_path, small_registry):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "test_drill.py").write_text(PASSING, encoding="utf-8")
    return tmp_path


RUN = ["--lang", "en", "run", "s/test_drill.py", "--registry", "registry.yaml"]
RUN += ["--journal", "j.sqlite", "-v"]


def runs(workdir: Path) -> list[tuple[str, dict]]:
    db = sqlite3.connect(workdir / "j.sqlite")
    return [(rid, json.loads(meta)) for rid, meta in db.execute("SELECT run_id, meta FROM runs")]


def test_the_seeded_wait_runs_the_drill_at_the_drawn_time_recorded_unannounced(helpers, workdir):
    monday = datetime(2026, 12, 7, 8, 59, 40, tzinfo=TOKYO)  # fake clock: 20 s before 09:00
    drawn = draw_start(SEED.encode(), date(2026, 12, 7), parse_window("09:00-17:00"))
    args = ["--unannounced-window", "09:00-17:00", "--unannounced-seed", "env:TSUNAGARI_TEST_SEED"]
    clock_file = workdir / "clock.json"
    child = [sys.executable, "-c", FAKE_CLOCK, str(monday.timestamp()), str(clock_file)]
    done = subprocess.run(
        [*child, *RUN, "--out", "out", *args, "--weekdays"],
        cwd=workdir,
        env=env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    clock = json.loads(clock_file.read_text())
    assert clock["t"] == drawn.timestamp()  # it waited exactly until the drawn time
    assert sum(clock["slept"]) == pytest.approx(drawn.timestamp() - monday.timestamp())
    events = [r["event"] for r in helpers.log_records(done.stderr)]
    assert events[:3] == ["unannounced_waiting", "unannounced_started", "run_started"]
    started = helpers.log_records(done.stderr)[1]
    assert started["drawn_at"] == drawn.isoformat()
    ((run_id, meta),) = runs(workdir)
    assert meta["announced"] is False
    assert meta["unannounced"] == {
        "window": "09:00-17:00",
        "zone": "Asia/Tokyo",
        "drawn_by": "seed",
    }
    assert SEED.encode() not in (workdir / "j.sqlite").read_bytes()  # never the seed
    assert SEED not in done.stdout + done.stderr
    # the scorecard says so, in JSON, Markdown and HTML
    (card_file,) = (workdir / "out").rglob("scorecard.json")
    card = json.loads(card_file.read_text(encoding="utf-8"))
    assert card["run_id"] == run_id and card["announcement"]["announced"] is False
    assert card["announcement"]["label"] == {"ja": "抜き打ち訓練", "en": "unannounced drill"}
    ja, en = to_markdown(card, "ja"), to_markdown(card, "en")
    assert "- **抜き打ち訓練**（予告なし・日本時間 09:00-17:00" in ja and "予告なしに測った" in ja
    assert "- **Unannounced drill** (no notice" in en and "measured without notice" in en
    html = card_file.with_name("scorecard.html").read_text(encoding="utf-8")
    assert '<p class="meta" id="unannounced"><strong>unannounced drill</strong>' in html
    with Journal(workdir / "j.sqlite") as journal:  # the vantage view's step times too
        (scenario,) = vantage_view([journal])["scenarios"]
    assert scenario["announced"] == {"default": False}


def test_a_run_the_timer_started_is_recorded_unannounced_without_waiting(helpers, workdir):
    done = subprocess.run(
        [sys.executable, "-m", "drills.cli", *RUN, "--unannounced", "09:00-17:00"],
        cwd=workdir,
        env=env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    ((_run_id, meta),) = runs(workdir)
    assert meta["announced"] is False and meta["unannounced"]["drawn_by"] == "timer"
    bad = helpers.tsunagari(*RUN, "--unannounced", "17:00-09:00", cwd=workdir)
    assert (
        bad.returncode == 2
        and "--unannounced window '17:00-09:00' ends before" in bad.stdout + bad.stderr
    )


def _window_ahead() -> tuple[Window, str, datetime]:
    """A window from this minute (Japan time) and a seed whose time is at least 2 min ahead."""
    now = datetime.now(TOKYO)
    start = now.replace(second=0, microsecond=0)
    end = min(start + timedelta(minutes=90), start.replace(hour=23, minute=59))
    if end - now < timedelta(minutes=5):
        pytest.skip("within 5 minutes of midnight Japan time: no window left today")
    window = parse_window(f"{start:%H:%M}-{end:%H:%M}")
    for i in range(1000):
        seed = f"{SEED}-{i}"
        drawn = draw_start(seed.encode(), now.date(), window)
        if drawn > now + timedelta(minutes=2):
            return window, seed, drawn
    raise AssertionError("no seed draws a time 2 minutes ahead")  # pragma: no cover


def test_sigterm_during_the_real_wait_exits_143_and_journals_nothing(workdir):
    window, seed, drawn = _window_ahead()
    wait = ["--unannounced-window", str(window), "--unannounced-seed", "env:TSUNAGARI_TEST_SEED"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "drills.cli", *RUN, *wait],
        cwd=workdir,
        env={**env(), "TSUNAGARI_TEST_SEED": seed},
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        first = json.loads(proc.stderr.readline())  # written once the signal is handled
        assert first["event"] == "unannounced_waiting", first
        assert "drawn_at" not in first
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
        ended = time.time()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    records = [json.loads(line) for line in err.splitlines()]
    assert len(records) == 1, err
    (record,) = records
    assert record["event"] == "unannounced_cancelled" and record["signal"] == "SIGTERM"
    assert ended < drawn.timestamp()  # it ended before the drawn time: it did not wait for it
    assert not (workdir / "j.sqlite").exists()  # nothing was journalled


def test_cron_random_within_prints_both_ways_and_refuses_bad_input(helpers, workdir):
    done = helpers.tsunagari(
        "--lang", "en", "cron", "--random-within", "09:00-17:00", "--weekdays",
        "--unannounced-seed", "file:/etc/tsunagari/unannounced.seed", "--name", "ua",
        "--", "--registry", "registry.yaml", "s/",
        cwd=workdir,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    cron = next(ln for ln in lines if " * * " in ln and not ln.startswith("#"))
    assert cron.endswith(
        "run --unannounced-window 09:00-17:00 --unannounced-seed "
        "file:/etc/tsunagari/unannounced.seed --weekdays --registry registry.yaml s/"
    )
    assert cron.split()[4] in ("1-5", "0-4", "2-6")  # shifted if this machine is not on JST
    assert "OnCalendar=Mon..Fri *-*-* 09:00:00 Asia/Tokyo" in lines
    assert "RandomizedDelaySec=28799" in lines and "FixedRandomDelay=false" in lines
    exec_start = next(ln for ln in lines if ln.startswith("ExecStart="))
    assert exec_start.endswith("run --unannounced 09:00-17:00 --registry registry.yaml s/")
    for args, says in [
        (["--random-within", "17:00-09:00"], "--random-within window '17:00-09:00' ends before"),
        (["--random-within", "9h-17h"], "--random-within must look like HH:MM-HH:MM"),
        (["--random-within", "09:00-17:00"], "needs --unannounced-seed"),
        (["--random-within", "09:00-17:00", "--unannounced-seed", "s3cret"], "never the value"),
        (["--schedule", "@daily", "--random-within", "09:00-17:00"], "either --schedule or"),
        (["--schedule", "@daily", "--weekdays"], "go with --random-within"),
        ([], "either --schedule or --random-within"),
    ]:
        bad = helpers.tsunagari("--lang", "en", "cron", *args, cwd=workdir)
        assert bad.returncode == 2 and says in bad.stderr, (args, bad.stderr)
        assert "Traceback" not in bad.stderr and "s3cret" not in bad.stderr
    seed_file = workdir / "seed"
    seed_file.write_text(SEED + "\n", encoding="utf-8")
    audit = helpers.tsunagari(
        "--lang", "en", "cron", "--random-within", "09:00-17:00",
        "--unannounced-seed", f"file:{seed_file}", "--reveal", "2026-11-30",
        cwd=workdir,
    )  # fmt: skip
    drawn = draw_start(SEED.encode(), date(2026, 11, 30), parse_window("09:00-17:00"))
    assert audit.returncode == 0, audit.stderr
    assert audit.stdout == f"2026-11-30 (Mon) {drawn:%H:%M:%S} JST  (09:00-17:00)\n"
    assert SEED not in audit.stdout + audit.stderr
