"""How many seeds each randomized oracle case runs (see README.md)."""

from __future__ import annotations

import os

import pytest

__all__ = ["DEFAULT_SEEDS", "ENV", "oracle_seeds"]

DEFAULT_SEEDS = 6
ENV = "TSUNAGARI_ORACLE_SEEDS"


def oracle_seeds(config: pytest.Config) -> int:
    """How many seeds each randomized case runs: the option, else the env var, else the default."""
    given = config.getoption("oracle_seeds", default=None)
    if given is None:
        raw = os.environ.get(ENV, "").strip()
        if raw:
            try:
                given = int(raw)
            except ValueError:
                raise pytest.UsageError(f"{ENV} must be a whole number: {raw!r}") from None
    n = DEFAULT_SEEDS if given is None else given
    if n < 1:
        raise pytest.UsageError(f"--oracle-seeds / {ENV} must be ≥ 1: {n}")
    return n
