"""A signal that arrives after every drill had finished stops nothing (issue 15).

The runs stay ``finished``, the exit code is the drills' own, and the records say the
signal came late — never that runs were "recorded as interrupted". The signal is real:
the scenario folder's ``conftest.py`` (or the demo's output writer) sends SIGTERM to
its own process once the drills are done, while the outputs are being written.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from drills.core.journal import Journal, RunStatus
from drills.operator import demo

ROOT = Path(__file__).resolve().parents[2]
CLI = (sys.executable, "-m", "drills.cli", "--lang", "en")

REGISTRY = """\
municipalities:
  - code: "131211"
    name: 足立区
    channels:
      - {id: chat, kind: webhook, sim: {latency: 50ms}}
"""
SCENARIO = """\
def test_chat(drill):
    drill.broadcast("参集してください", channels="chat").expect(reached="100%", within="5s")
"""
# After the last test, while pytest finishes (outputs, summary): SIGTERM to this process.
LATE_SIGTERM = """\
import os, signal

def pytest_sessionfinish(session):
    os.kill(os.getpid(), signal.SIGTERM)
"""


def records(stderr: str) -> dict[str, dict[str, Any]]:
    return {r["event"]: r for r in map(json.loads, stderr.splitlines())}


def test_run_signalled_after_its_drills_keeps_them_finished_and_exits_0(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "test_late.py").write_text(SCENARIO, encoding="utf-8")
    (tmp_path / "s" / "conftest.py").write_text(LATE_SIGTERM, encoding="utf-8")
    (tmp_path / "registry.yaml").write_text(REGISTRY, encoding="utf-8")
    done = subprocess.run(
        [*CLI, "run", "s", "--registry", "registry.yaml", "--out", "out", "-v"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PYTEST_ADDOPTS": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    said = records(done.stderr)
    assert done.returncode == 0, done.stdout + done.stderr
    assert said["signal_received"]["signal"] == "SIGTERM"  # it did come, and was told
    assert "the drills have finished" in said["signal_received"]["message"]
    assert "run_interrupted" not in said
    late = said["signal_after_drills"]
    [run_id] = late["runs"]
    assert late["statuses"] == {run_id: "finished"} and "after every drill" in late["message"]
    finished = said["run_finished"]
    assert finished["exit"] == 0 and "interrupted" not in finished
    assert finished["signal"] == "SIGTERM"
    summary = json.loads((tmp_path / "out" / "summary.json").read_text("utf-8"))
    assert summary["interrupted"] is None and summary["signal"] == "SIGTERM"
    with Journal(tmp_path / "out" / "journal.sqlite", read_only=True) as journal:
        assert journal.run(run_id)["status"] == RunStatus.FINISHED


def test_demo_signalled_while_writing_its_files_keeps_the_run_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write = demo.write_run_outputs

    def write_after_sigterm(*args: Any, **kwargs: Any) -> Any:
        os.kill(os.getpid(), signal.SIGTERM)  # the handler demo installed runs here
        return write(*args, **kwargs)

    monkeypatch.setattr(demo, "write_run_outputs", write_after_sigterm)
    registry = tmp_path / "registry.yaml"  # the demo's drill on one quick channel
    registry.write_text(REGISTRY, encoding="utf-8")
    monkeypatch.setattr(demo, "demo_registry_path", lambda: registry)
    assert demo.run_demo(tmp_path / "out", lang="en", seed=1, repeat=1) == 0
    err = capsys.readouterr().err
    assert "SIGTERM came after run" in err and "stays finished" in err, err
    assert "recorded as interrupted" not in err
    card = json.loads((tmp_path / "out" / "scorecard.json").read_text("utf-8"))
    assert card["status"] == RunStatus.FINISHED
