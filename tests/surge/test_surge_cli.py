"""``tsunagari surge`` as cron or an operator runs it: headless, JSON out, stopped by a signal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from drills.core.journal import Journal
from tests.surge.conftest import CHAT_FAST


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "drills.cli", "--lang", "en", "surge", *args]


def _args(rates: str, step: str, rest: str) -> list[str]:
    return ["--channel", "131016/chat", "--rates", rates, "--step", step, "--rest", rest]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1"}


def test_headless_run_prints_json_and_exits_0_when_the_slo_holds(
    write_registry: Callable[[str], Path], tmp_path: Path
) -> None:
    reg = write_registry(CHAT_FAST)
    db = tmp_path / "journal.sqlite"
    args = [str(reg), *_args("10,20", "1s", "0.5s")]
    done = subprocess.run(
        _cli(*args, "--journal", str(db), "--json", "--probes", "2"),
        capture_output=True,
        text=True,
        timeout=90,
        env=_env(),
    )
    assert done.returncode == 0, done.stderr
    event = json.loads(done.stdout)
    assert [s["rate"] for s in event["steps"]] == [0.0, 10.0, 20.0]
    assert event["breaking_point"] is None and event["stop_reason"] == "completed"
    assert event["totals"]["requests"] == sum(s["load"]["requests"] for s in event["steps"]) > 20
    with Journal(db) as journal:
        run = journal.latest_run()
        assert run is not None and run["status"] == "finished" and run["scenario"] == "サージ訓練"
        assert journal.events(run["run_id"], "surge")[0]["data"] == event


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_surge_cleanly_and_keeps_the_stats(
    sig: signal.Signals, write_registry: Callable[[str], Path], tmp_path: Path
) -> None:
    reg = write_registry(CHAT_FAST)
    db = tmp_path / "journal.sqlite"
    args = [str(reg), *_args("20,40", "60s", "1s")]
    proc = subprocess.Popen(
        _cli(*args, "--journal", str(db), "--probes", "30"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        # Wait (with a deadline) until the first load step has been probed at least once.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not _probed(db, "surge 1.1 "):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.1)
        assert _probed(db, "surge 1.1 ")
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err
    assert "stopped early after 2 steps" in out
    with Journal(db) as journal:
        run = journal.latest_run()
        assert run is not None and run["status"] == "incomplete"
        data = journal.events(run["run_id"], "surge")[0]["data"]
    assert data["stop_reason"] == "stopped" and data["steps_run"] == 2
    load = data["steps"][1]["load"]
    assert load["requests"] > 0 and load["failures"] == 0
    assert data["steps"][2]["load"]["requests"] == 0
    assert data["workers"][0]["requests"] == data["totals"]["requests"] == load["requests"]
    assert data["steps"][1]["probes"]["delivered"] >= 1


def _probed(db: Path, step_prefix: str) -> bool:
    if not db.exists():
        return False
    with Journal(db) as journal:
        run = journal.latest_run()
        return run is not None and any(
            d.step.startswith(step_prefix) for d in journal.deliveries(run["run_id"])
        )
