"""CI checks what ``check`` checks: the README's test command runs format, lint, types and
import layers first.

``scripts/bootstrap.sh`` runs here against stand-ins (a fake venv whose ruff,
mypy, lint-imports and python only log their arguments, Debian packages and Synapse's env
reported present), so the test installs and starts nothing.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STATIC = [
    "ruff format --check .",
    "ruff check .",
    "mypy drills probes",
    "lint-imports",
]
# Set-up compiles the project's modules once (an editable install does not), before the checks.
COMPILE = "python -m compileall -q -j 0 drills probes"


def stand_in(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    log = tmp_path / "calls.log"
    venv, synapse, bin_ = tmp_path / "venv", tmp_path / "synapse", tmp_path / "bin"
    for tool in ("ruff", "mypy", "lint-imports", "python"):
        # Logs "tool args…"; fails when FAIL names "tool first-arg".
        stand_in(
            venv / "bin" / tool,
            f'echo "{tool}${{*:+ $*}}" >> "{log}"\ncase "{tool} $1" in "$FAIL") exit 1 ;; esac\n',
        )
    (venv / ".tsunagari-installed").touch()
    os.utime(venv / ".tsunagari-installed", (4e9, 4e9))  # newer than pyproject.toml
    stand_in(synapse / "bin" / "synapse_homeserver", "exit 0\n")
    stand_in(bin_ / "dpkg-query", "echo 'install ok installed'\n")
    return {
        **os.environ,
        "PATH": f"{bin_}:{os.environ['PATH']}",
        "TSUNAGARI_VENV": str(venv),
        "TSUNAGARI_SYNAPSE_VENV": str(synapse),
        "FAIL": "",
        "LOG": str(log),
    }


def calls(env: dict[str, str]) -> list[str]:
    log = Path(env["LOG"])
    return log.read_text().splitlines() if log.exists() else []


@pytest.mark.parametrize(
    "command",
    [[".ci/run"], ["scripts/bootstrap.sh", "test"], ["scripts/bootstrap.sh", "check"]],
)
def test_static_checks_run_before_the_tests(env: dict[str, str], command: list[str]) -> None:
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert calls(env) == [COMPILE, *STATIC, "python -m pytest"]


def test_pytest_arguments_pass_through(env: dict[str, str]) -> None:
    subprocess.run(
        ["scripts/bootstrap.sh", "test", "-k", "cli"], cwd=ROOT, env=env, timeout=60, check=True
    )
    assert calls(env)[-1] == "python -m pytest -k cli"


@pytest.mark.parametrize("failing", ["ruff format", "ruff check", "mypy drills", "lint-imports "])
def test_a_failing_check_fails_the_run_and_the_others_still_report(
    env: dict[str, str], failing: str
) -> None:
    proc = subprocess.run(
        ["scripts/bootstrap.sh", "test"],
        cwd=ROOT,
        env={**env, "FAIL": failing},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert calls(env) == [COMPILE, *STATIC]  # every check ran, pytest did not
    assert "failed:" in proc.stderr
