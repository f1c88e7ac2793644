"""``tsunagari run`` as cron runs it (fresh processes, stdout not a TTY) and ``tsunagari cron``."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest

from drills.core.lock import RunLock

PASSING = '''\
"""点呼テスト（成功）"""
import pytest

pytestmark = [pytest.mark.scenario("成功する訓練"), pytest.mark.deadline("3s")]


def test_23区(drill):
    drill.broadcast("参集してください", channels="chat", to="23ku").expect(reached="100%", within="2s")
'''

MISSING = """\
def test_全団体(drill):
    drill.broadcast("参集してください", channels="chat").expect(reached="100%", within="2s")
"""

MISTAKE = """\
def test_団体名の誤り(drill):
    drill.broadcast("参集してください", to="足立")
"""

SLOW = """\
def test_ゆっくり(drill):
    drill.broadcast("参集してください", channels="chat").expect(reached="100%", within="10s")
"""


@pytest.fixture
def workdir(tmp_path, small_registry):
    (tmp_path / "s").mkdir()
    assert small_registry == tmp_path / "registry.yaml"
    return tmp_path


def run(helpers, workdir, scenario, *extra, name="test_drill.py"):
    (workdir / "s" / name).write_text(scenario, encoding="utf-8")
    return helpers.tsunagari(
        "--lang",
        "en",
        "run",
        f"s/{name}",
        "--registry",
        "registry.yaml",
        "--journal",
        "j.sqlite",
        *extra,
        cwd=workdir,
    )


def no_colour(done):
    assert "\x1b[" not in done.stdout and "\x1b[" not in done.stderr


def test_success_is_silent(helpers, workdir):
    done = run(helpers, workdir, PASSING)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == "" and done.stderr == ""
    runs = (
        sqlite3.connect(workdir / "j.sqlite")
        .execute("SELECT scenario, status FROM runs")
        .fetchall()
    )
    assert runs == [("成功する訓練", "finished")]


def test_verbose_success(helpers, workdir):
    done = run(helpers, workdir, PASSING, "-v")
    assert done.returncode == 0
    assert "PASSED" in done.stdout and "%]" not in done.stdout  # no progress percentages off a TTY
    no_colour(done)
    events = [r["event"] for r in helpers.log_records(done.stderr)]
    assert events == ["run_started", "run_finished"]


def test_missed_requirement_exits_1(helpers, workdir):
    done = run(helpers, workdir, MISSING)
    assert done.returncode == 1
    no_colour(done)
    assert "Ogasawara Village (134210): requirement missed" in done.stdout
    assert (
        "chat [webhook] rejected — HTTP 401: invalid_auth (the webhook refused our credentials)"
        in done.stdout
    )
    records = helpers.log_records(done.stderr)
    missed = [r for r in records if r["event"] == "requirement_missed"]
    assert [r["municipality"] for r in missed] == ["134210"]
    assert missed[0]["rows"] == [
        {
            "channel": "chat",
            "kind": "webhook",
            "outcome": "rejected",
            "reason": "HTTP 401: invalid_auth（Webhook の認証が拒否されました） / "
            "HTTP 401: invalid_auth (the webhook refused our credentials)",
            "stage": "send",  # where the chain broke and why (drills.core.taxonomy)
            "cause": "auth",
        }
    ]
    assert (missed[0]["stage"], missed[0]["cause"]) == ("send", "auth")
    assert missed[0]["where"] == "s/test_drill.py:2" and missed[0]["level"] == "error"
    assert records[-1]["event"] == "run_finished" and records[-1]["exit"] == 1


def test_scenario_mistake_exits_2(helpers, workdir):
    done = run(helpers, workdir, MISTAKE)
    assert done.returncode == 2
    (err, fin) = helpers.log_records(done.stderr)
    assert err["event"] == "scenario_error" and err["where"] == "s/test_drill.py:2"
    assert "unknown municipality '足立'" in err["message"] and fin["exit"] == 2
    assert "Traceback" not in done.stdout


@pytest.mark.parametrize(
    ("args", "scenario", "expected"),
    [
        (["--registry", "nope.yaml"], PASSING, "cannot read registry"),
        (["--municipality", "nowhere"], PASSING, "matches no municipality"),
        (["--vantage", ""], "def test_broken(drill:\n", "SyntaxError"),
    ],
    ids=["registry-missing", "bad-selection", "broken-scenario-file"],
)
def test_usage_and_registry_errors_exit_2(helpers, workdir, args, scenario, expected):
    done = run(helpers, workdir, scenario, *args)
    assert done.returncode == 2, done.stderr
    assert expected in done.stderr + done.stdout
    assert all(r["level"] == "error" for r in helpers.log_records(done.stderr))


def test_unknown_option_exits_2(helpers, workdir):
    done = helpers.tsunagari("run", "--no-such-option", cwd=workdir)
    assert done.returncode == 2


def test_harness_failure_exits_3(helpers, workdir, far_end):
    (workdir / "live.yaml").write_text(
        'municipalities:\n  - code: "131211"\n    name: 足立区\n    channels:\n'
        f"      - {far_end.channel('chat', 'locked')}\n",
        encoding="utf-8",
    )
    done = run(helpers, workdir, MISSING, "--registry", "live.yaml", "--live")
    assert done.returncode == 3, done.stdout + done.stderr
    records = helpers.log_records(done.stderr)
    harness = [r for r in records if r["event"] == "harness_failure"]
    assert (
        harness
        and harness[0]["status"] == "harness"
        and "observer" in harness[0]["rows"][0]["reason"]
    )
    assert "cannot judge (harness fault)" in done.stdout
    assert far_end.posts["locked"]  # the message did go out; only seeing it failed


def test_a_held_lock_exits_4(helpers, workdir):
    with RunLock(workdir / "j.sqlite.lock"):
        done = run(helpers, workdir, PASSING)
    assert done.returncode == 4
    (busy, fin) = helpers.log_records(done.stderr)
    assert busy["event"] == "lock_busy" and f"pid {os.getpid()}" in busy["message"]
    assert "another drill run is in progress" in busy["message"] and fin["exit"] == 4
    assert done.stdout == ""
    if (workdir / "j.sqlite").exists():
        assert sqlite3.connect(workdir / "j.sqlite").execute(
            "SELECT COUNT(*) FROM runs"
        ).fetchone() == (0,)


def test_two_runs_started_together_do_not_both_drill(workdir, small_registry):
    (workdir / "slow.yaml").write_text(
        small_registry.read_text(encoding="utf-8").replace("latency: 100ms", "latency: 3s"),
        encoding="utf-8",
    )
    (workdir / "s" / "test_slow.py").write_text(SLOW, encoding="utf-8")
    env = {
        **os.environ,
        "PYTHONPATH": str(os.path.dirname(os.path.dirname(os.path.dirname(__file__)))),
    }
    argv = [
        sys.executable,
        "-m",
        "drills.cli",
        "--lang",
        "en",
        "run",
        "s/test_slow.py",
        "--registry",
        "slow.yaml",
        "--journal",
        "j.sqlite",
        "-k",
        "ゆっくり",
    ]
    procs = [
        subprocess.Popen(
            argv, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [1, 4], (
        outs
    )  # one drilled (小笠原村 refuses: 1), the other was refused by the lock
    locked = next(err for p, (_out, err) in zip(procs, outs, strict=True) if p.returncode == 4)
    assert '"event": "lock_busy"' in locked
    runs = sqlite3.connect(workdir / "j.sqlite").execute("SELECT COUNT(*) FROM runs").fetchone()
    assert runs == (1,)


def test_cron_prints_a_crontab_line_and_a_timer(helpers, workdir):
    done = helpers.tsunagari(
        "--lang",
        "en",
        "cron",
        "--schedule",
        "*/30 8-18 * * 1-5",
        "--name",
        "drill-chuo",
        "--",
        "--registry",
        "registry.yaml",
        "--out",
        "out/%Y",
        "s/",
        cwd=workdir,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    cron = next(ln for ln in lines if ln.startswith("*/30 8-18 * * 1-5 "))
    assert f"cd {workdir.resolve()} && " in cron
    assert cron.endswith(
        "--lang en run --registry registry.yaml --out out/\\%Y s/"
    )  # % escaped for cron
    assert "# /etc/systemd/system/drill-chuo.service" in lines and "Type=oneshot" in lines
    exec_start = next(ln for ln in lines if ln.startswith("ExecStart="))
    assert exec_start.endswith(
        "run --registry registry.yaml --out out/%%Y s/"
    )  # % escaped for systemd
    assert os.path.isabs(exec_start.removeprefix("ExecStart=").split()[0])
    calendar = next(ln for ln in lines if ln.startswith("OnCalendar="))
    assert (
        calendar == "OnCalendar=Mon,Tue,Wed,Thu,Fri *-*-* 08,09,10,11,12,13,14,15,16,17,18:00/30:00"
    )
    assert "WantedBy=timers.target" in lines
    bad = helpers.tsunagari("--lang", "en", "cron", "--schedule", "every day", cwd=workdir)
    assert bad.returncode == 2 and "a cron expression has 5 fields" in bad.stderr
