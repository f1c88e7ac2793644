"""Every benchmark runs: each ``benchmarks/bench_*.py`` at a tiny size, so none rots.

All scripts start at once as child processes (most of their time is waiting on
servers and sleeps), each writing its result JSON into a temp folder
(``$TSUNAGARI_BENCH_RESULTS``, never ``benchmarks/results/``). Each must exit 0,
write its JSON with the keys ``benchmarks/run_all.py`` reads, and give run_all
figures; run_all then writes a RESULTS.md from them. The figures themselves are
not judged here (a tiny run on a shared machine measures nothing): the
benchmarks report them (``scripts/bootstrap.sh bench``).

Smallest sizes: bench_fanout always drills Tokyo's 62 × 3 channels (its point);
bench_matrix still starts a Synapse; bench_surge needs 3 s for one steady
second of Locust; bench_preflight_vs_blackbox needs 20 probes for a CPU reading
above the kernel's 10 ms tick.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
WAIT_S = 300

TINY: dict[str, tuple[list[str], set[str]]] = {
    "bench_core_fanout": (
        ["--channels", "20", "--sim-procs", "1", "--rounds", "1"],
        {"sizes", "targets"},
    ),
    "bench_sms": (
        ["--messages", "10", "--concurrency", "5"],
        {"loop_lag_on_cpu_max_ms", "results", "all_delivered"},
    ),
    "bench_exporter": (["--runs", "2", "--repeat", "1"], {"cold_scrape", "warm_scrape"}),
    "bench_startup": (["--runs", "1"], {"help", "cron", "baseline_python_pass"}),
    "bench_registry_load": (["--channels", "20", "--rounds", "1"], {"sizes"}),
    # a wait long enough for a crowded machine: it bounds the wait, it is not what is measured
    "bench_fanout": (
        ["--rounds", "1", "--latency", "0.5", "--timeout", "30"],
        {"ratio_fanout_vs_single"},
    ),
    "bench_mail_observer": (
        ["--messages", "3", "--min-gap", "0.05", "--max-gap", "0.1"],
        {"strategies", "target_met"},
    ),
    "bench_matrix": (
        ["--probes", "2", "--rounds", "1", "--spread", "0.5", "--burst", "0"],
        {"paced", "met"},
    ),
    "bench_preflight_vs_blackbox": (
        ["--probes", "20", "--rounds", "1", "--concurrency", "4"],
        {"ratio_cpu_tsunagari_vs_blackbox", "table"},
    ),
    "bench_read_model": (["--runs", "3", "--repeat", "1"], {"figures", "size"}),
    "bench_surge": (
        ["--seconds", "3", "--users", "2", "--rounds", "1"],
        {"ratio", "cpu_efficiency_ratio"},
    ),
    "bench_journal_backends": (
        ["--deliveries", "30", "--writers", "2", "--runs", "2", "--repeat", "1"],
        {"rows", "exposition_bytes"},
    ),
}


@functools.cache
def _run_all() -> ModuleType:
    """benchmarks/run_all.py as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("bench_run_all", BENCH / "run_all.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Start every tiny benchmark at once; {name: (exit code, output, JSON or None, skip reason)}."""
    out = tmp_path_factory.mktemp("bench-results")
    env = {**os.environ, "TSUNAGARI_BENCH_RESULTS": str(out)}
    run_all = _run_all()
    procs: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for name, (args, _keys) in TINY.items():
        why = run_all.missing(run_all.SPECS[name])
        if why is not None:
            skipped[name] = why
            continue
        log = (out / f"{name}.log").open("wb")
        procs[name] = (
            subprocess.Popen(
                [sys.executable, str(BENCH / f"{name}.py"), *args],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            ),
            log,
        )
    deadline = time.monotonic() + WAIT_S
    got: dict[str, Any] = {"_dir": out, "_skipped": skipped}
    for name, (proc, log) in procs.items():
        try:
            code = proc.wait(max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        log.close()
        path = out / f"{name}.json"
        data = json.loads(path.read_text("utf-8")) if path.exists() else None
        got[name] = (code, (out / f"{name}.log").read_text("utf-8", "replace"), data)
    return got


def test_every_benchmark_has_a_tiny_size() -> None:
    scripts = {p.stem for p in BENCH.glob("bench_*.py")}
    assert scripts == set(TINY), "a benchmark without a smoke size (add it to TINY)"
    assert scripts == set(_run_all().SPECS), "a benchmark run_all.py cannot read"


@pytest.mark.parametrize("name", sorted(TINY))
def test_benchmark_runs_and_writes_its_result(results: dict[str, Any], name: str) -> None:
    if name in results["_skipped"]:
        pytest.skip(results["_skipped"][name])
    code, output, data = results[name]
    assert code == 0, output[-3000:]
    assert data is not None, f"no {name}.json written:\n{output[-2000:]}"
    assert TINY[name][1] <= data.keys(), sorted(data)
    figures = _run_all().SPECS[name].figures(data)
    assert figures and all(f.kind in ("ratio", "machine-dependent") for f in figures)


def test_run_all_writes_one_table_from_the_results(results: dict[str, Any]) -> None:
    out = results["_dir"] / "RESULTS.md"
    env = {**os.environ, "TSUNAGARI_BENCH_RESULTS": str(results["_dir"])}
    names = sorted(TINY)
    done = subprocess.run(
        [sys.executable, str(BENCH / "run_all.py"), "--reuse", *names, "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    text = out.read_text("utf-8")
    assert "JST" in text and "cores" in text and "Python" in text
    assert "| benchmark | figure | value | kind | target | met | before |" in text
    for name in names:
        assert f" benchmarks/{name}.py" in text
    assert "result not readable" not in text
    ran = [n for n in names if n not in results["_skipped"]]
    for name in ran:
        assert f"| {name} | — |" not in text, name  # every benchmark that ran has figures
