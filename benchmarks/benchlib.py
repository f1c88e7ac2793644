"""What every benchmark script shares: where its machine-readable result goes.

Each ``benchmarks/bench_*.py`` writes one JSON file into the results folder:
``benchmarks/results/`` by default, or ``$TSUNAGARI_BENCH_RESULTS`` when set (the
smoke test, tests/benchmarks/, runs every script at a tiny size into a temp folder
so it never overwrites a real result). ``benchmarks/run_all.py`` reads them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ENV = "TSUNAGARI_BENCH_RESULTS"


def results_dir() -> Path:
    """The folder results are written into (created)."""
    where = Path(os.environ[ENV]) if os.environ.get(ENV) else ROOT / "benchmarks" / "results"
    where.mkdir(parents=True, exist_ok=True)
    return where


def write_result(name: str, data: Any) -> Path:
    """Write ``<results>/<name>.json`` (UTF-8, indented); its path."""
    out = results_dir() / f"{name}.json"
    out.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return out
