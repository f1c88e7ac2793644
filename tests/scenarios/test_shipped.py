"""The shipped scenarios (scenarios/*.py): collected, and run against the demo registry.

The demo registry is deliberately degraded (DESIGN: some channels slow, lossy or
down), so most shipped drills *miss* a requirement there; what is asserted is
who misses and why — the facts the registry makes certain — not a lucky draw.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from drills.core.journal import Journal
from drills.operator.markers import DISASTERS

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "scenarios").glob("test_*.py"))

# file → (exit code, municipalities that must miss, municipalities that must not)
EXPECTED = {
    "test_shuto_chokka": (1, {"134210", "132012"}, {"131211", "131016", "130001"}),
    "test_taifu_hinan": (1, {"132012"}, {"133086"}),
    "test_telework": (1, {"132012"}, {"131211", "131016", "130001"}),
    "test_chat_outage": (0, set(), {"131211", "134210", "132012"}),
    "test_roll_call": (1, {"134210"}, {"131211", "131016"}),
    "test_anpi": (1, {"134210"}, set()),
}


def test_every_shipped_scenario_is_expected():
    assert {p.stem for p in SHIPPED} == set(EXPECTED)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_scenario_reads_like_a_drill_plan(path):
    spec = importlib.util.spec_from_file_location(f"shipped_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    doc = module.__doc__ or ""
    assert len(doc.strip().splitlines()) >= 3 and any("\u3040" <= ch <= "\u9fff" for ch in doc)
    marks = {m.name: m.args for m in module.pytestmark}
    assert set(marks) == {"scenario", "disaster", "severity", "deadline"}
    assert marks["disaster"][0] in DISASTERS and 1 <= marks["severity"][0] <= 5
    tests = [getattr(module, n) for n in dir(module) if n.startswith("test_")]
    assert tests and all(t.__code__.co_varnames[:1] == ("drill",) and t.__doc__ for t in tests)
    text = path.read_text(encoding="utf-8")
    for word in ("asyncio", "await", "token", "sqlite", "import drills"):
        assert word not in text.lower(), word


def test_shipped_scenarios_are_collected_with_strict_markers(pytester, demo_registry):
    for path in SHIPPED:
        pytester.makepyfile(**{path.stem: path.read_text(encoding="utf-8")})
    pytester.makeini("[pytest]\naddopts = --strict-markers -p no:asyncio\n")
    result = pytester.runpytest("--collect-only", "-q", f"--registry={demo_registry}")
    assert result.ret == 0
    assert "9 tests collected" in result.stdout.str()


@pytest.fixture(scope="module")
def shipped_runs(demo_registry, tmp_path_factory):
    """Every shipped scenario as cron would run it, all at once (each with its own journal)."""
    out = tmp_path_factory.mktemp("shipped")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTEST_ADDOPTS", None)
    procs = {}
    for path in SHIPPED:
        argv = [
            sys.executable,
            "-m",
            "drills.cli",
            "--lang",
            "ja",
            "run",
            str(path),
            "--registry",
            str(demo_registry),
            "--journal",
            str(out / f"{path.stem}.sqlite"),
            "--out",
            str(out / path.stem),
            "--seed",
            "7",
            "--lock",
            str(out / f"{path.stem}.lock"),
        ]
        procs[path.stem] = subprocess.Popen(
            argv, cwd=out, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    done = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=180)
        records = [json.loads(line) for line in stderr.splitlines() if line.strip()]
        done[name] = (proc.returncode, stdout, records, out)
    return done


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shipped_scenario_against_the_demo_registry(shipped_runs, name):
    code, stdout, records, out = shipped_runs[name]
    expected_code, must_miss, must_not = EXPECTED[name]
    assert code == expected_code, stdout + json.dumps(records, ensure_ascii=False)
    missed = {r["municipality"] for r in records if r["event"] == "requirement_missed"}
    assert must_miss <= missed and not (must_not & missed), missed
    assert not [r for r in records if r["event"] in ("scenario_error", "harness_failure")]
    with Journal(out / f"{name}.sqlite") as journal:
        (run,) = journal.runs()
        assert run["status"] == "finished" and run["scenario"]
    assert json.loads((out / name / "summary.json").read_text(encoding="utf-8"))["runs"] == [
        run["run_id"]
    ]
    if code:
        assert "要件未達" in stdout  # the operator's language


def test_shipped_steps_leave_their_events(shipped_runs):
    out = shipped_runs["test_anpi"][3]
    with Journal(out / "test_roll_call.sqlite") as j:
        (run,) = j.runs()
        (call,) = [e["data"] for e in j.events(run["run_id"], "roll_call")]
    assert (
        call["never"] == ["134210"]
        and call["room"] == "130001/chat"
        and call["all_answered_s"] is None
    )
    with Journal(out / "test_anpi.sqlite") as j:
        (run,) = j.runs()
        (ack,) = [e["data"] for e in j.events(run["run_id"], "acknowledgement")]
    overall = ack["overall"]
    assert ack["staff"] == 20 and overall["expected"] == 20 * len(ack["channels"])
    assert overall["t25_s"] is not None and overall["t25_s"] <= overall["t50_s"]
    assert overall["curve"][-1][1] == pytest.approx(
        overall["answered"] / overall["expected"], abs=1e-4
    )
    with Journal(out / "test_chat_outage.sqlite") as j:
        (run,) = j.runs()
        (fb,) = [e["data"] for e in j.events(run["run_id"], "fallback")]
        (outage,) = [e["data"] for e in j.events(run["run_id"], "outage")]
    assert all(m["reached_via"] in ("mail", "sms") for m in fb["municipalities"])
    assert len(outage["channels"]) == 7
