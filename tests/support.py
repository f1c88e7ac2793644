"""Helpers more than one test folder needs: the CLI in a child process, a small tmpfs,
a registry of simulated webhook channels."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from drills.core.registry import Registry, parse_registry

ROOT = Path(__file__).resolve().parents[1]


def run_tsunagari(
    *args: str,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    unset: Sequence[str] = (),
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """``tsunagari --lang en ARGS`` from this checkout in a child process, its output captured.

    The child gets this process's environment plus *env*, without *unset* and without
    ``PYTEST_ADDOPTS`` (the suite's options are not the child's pytest's).
    """
    full = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1", **(env or {})}
    for name in ("PYTEST_ADDOPTS", *unset):
        full.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "drills.cli", "--lang", "en", *args],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@contextlib.contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A small tmpfs mounted at *where* (made here) for the block; skips when mounting is
    refused, unmounts after."""
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def webhook_registry(
    n: int, latency: str = "200ms", defaults: str = "{slo: {latency: 5s}}"
) -> Registry:
    """One municipality (足立区) with *n* simulated webhook channels ``c0``… at *latency*."""
    lines = [
        f"defaults: {defaults}",
        "municipalities:",
        '  - code: "131211"',
        "    name: 足立区",
        "    channels:",
    ]
    lines += [f"      - {{id: c{i}, kind: webhook, sim: {{latency: {latency}}}}}" for i in range(n)]
    return parse_registry("\n".join(lines) + "\n", "reg.yaml")
