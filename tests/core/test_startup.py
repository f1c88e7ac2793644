"""Start-up stays light: ``tsunagari --help`` and ``tsunagari cron`` load no pydantic, yaml or probe.

Each case runs in a fresh interpreter, the way the console script starts
(``from drills.cli import main``), and reads ``sys.modules`` afterwards —
``-X importtime`` would miss the modules ``importlib.import_module`` loads.
The cost in time is measured by ``benchmarks/bench_startup.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# Packages a help text or a crontab line has no use for; "probes" covers every kind.
HEAVY = (
    "pydantic",
    "pydantic_core",
    "yaml",
    "probes",
    "aiohttp",
    "httpx",
    "matplotlib",
    "jinja2",
    "prometheus_client",
    "rich",
    "locust",
    "twilio",
    "slack_sdk",
    "sqlite3",
    "asyncio",
    "drills.core.registry",
    "drills.core.journal",
    "drills.reporting.scorecard",
    "drills.core.runner",
)

CONSOLE_SCRIPT = """\
import json, sys
out, argv = sys.argv[1], sys.argv[2:]
from drills.cli import main
try:
    code = main(argv)
except SystemExit as exc:
    code = exc.code
with open(out, "w") as f:
    json.dump({"code": code, "modules": sorted(sys.modules)}, f)
"""


def heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]


def run_fresh(tmp_path: Path, code: str, *argv: str) -> dict:
    out = tmp_path / "modules.json"
    subprocess.run(
        [sys.executable, "-c", code, str(out), *argv],
        check=True,
        timeout=60,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return json.loads(out.read_text())


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["--help"], 0),
        (["--lang", "ja", "--help"], 0),
        ([], 2),  # no command: the help, exit 2
        (["cron", "--help"], 0),
        (["--lang", "en", "cron", "--schedule", "0 9 * * 1-5", "--", "--registry", "r.yaml"], 0),
        (["cron", "--schedule", "@daily", "--name", "nightly"], 0),
        (["cron", "--schedule", "61 * * * *"], 2),  # refused schedule: the error path too
    ],
)
def test_help_and_cron_import_nothing_heavy(tmp_path: Path, argv: list[str], code: int) -> None:
    seen = run_fresh(tmp_path, CONSOLE_SCRIPT, *argv)
    assert seen["code"] == code
    assert heavy(seen["modules"]) == []
    commands = [m for m in seen["modules"] if m.startswith("drills.commands.")]
    assert commands == (["drills.commands.cron"] if "cron" in argv else [])


def test_only_the_chosen_subcommand_is_imported(tmp_path: Path) -> None:
    seen = run_fresh(tmp_path, CONSOLE_SCRIPT, "registry", "--help")
    assert seen["code"] == 0
    assert [m for m in seen["modules"] if m.startswith("drills.commands.")] == [
        "drills.commands.registry"
    ]


def test_the_detector_sees_what_a_real_command_loads(tmp_path: Path) -> None:
    """Control: the same probe does see pydantic and the probes when a registry is read."""
    registry = tmp_path / "registry.yaml"
    registry.write_text(
        'municipalities:\n  - code: "131016"\n    name: 千代田区\n'
        "    channels:\n      - {id: c, kind: webhook, sim: {}}\n"
    )
    seen = run_fresh(tmp_path, CONSOLE_SCRIPT, "registry", "check", str(registry))
    assert seen["code"] == 0
    assert {"pydantic", "yaml", "probes", "drills.core.registry"} <= set(heavy(seen["modules"]))


PLAIN_IMPORT = """\
import json, sys
out, names = sys.argv[1], sys.argv[2:]
import importlib
for name in names:
    importlib.import_module(name)
with open(out, "w") as f:
    json.dump({"modules": sorted(sys.modules)}, f)
"""


@pytest.mark.parametrize(
    "module", ["drills", "probes", "drills.cli", "drills.core.runlog", "drills.commands.cron"]
)
def test_importing_is_light(tmp_path: Path, module: str) -> None:
    seen = run_fresh(tmp_path, PLAIN_IMPORT, module)
    assert [m for m in heavy(seen["modules"]) if m != module] == []


def test_python_m_drills_cli_help_is_light(tmp_path: Path) -> None:
    """``python -m drills.cli --help`` as well: -X importtime lists no heavy package."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "drills.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=True,
    )
    assert "usage:" in proc.stdout or "使い方" in proc.stdout
    imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()]
    assert "drills.core.i18n" in imported  # drills.cli itself runs as __main__
    assert heavy(imported) == []
