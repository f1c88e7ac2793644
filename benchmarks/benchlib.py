"""What the benchmark scripts share: where the machine-readable result goes, and a
measurement in a fresh process of its own (:func:`run_side`).

Each ``benchmarks/bench_*.py`` writes one JSON file into the results folder:
``benchmarks/results/`` by default, or ``$TSUNAGARI_BENCH_RESULTS`` when set (the
smoke test, tests/benchmarks/, runs every script at a tiny size into a temp folder
so it never overwrites a real result). ``benchmarks/run_all.py`` reads them.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import queue
import time
from collections.abc import Callable
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


def run_side(target: Callable[..., None], args: tuple[Any, ...], wait_s: float) -> dict[str, Any]:
    """``target(*args, out)`` in a fresh (spawned) process; the dict it puts on ``out``.

    A dict with ``"error"`` (a traceback), no result within *wait_s* seconds, or a
    process gone without one raises :class:`RuntimeError`; the process is joined, or
    killed after 30 s.
    """
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, out))
    proc.start()
    deadline = time.monotonic() + wait_s
    try:
        while True:
            try:
                result: dict[str, Any] = out.get(timeout=1.0)
                break
            except queue.Empty:
                if not proc.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"{target.__name__} ended without a result") from None
        if "error" in result:
            raise RuntimeError(f"{target.__name__} failed:\n{result['error']}")
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.kill()
    return result
