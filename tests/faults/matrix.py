"""The fault matrix's one case type: a named fault, injected and judged through the real runner.

Each ``cases_*.py`` module beside this one exports ``CASES: list[FaultCase]``;
``test_fault_matrix.py`` parametrizes over all of them, so ``pytest --collect-only
tests/faults`` reads like the list in the README's "Reliability / 信頼性" section.

A case's ``run(tmp_path)`` injects its fault, drives a drill through the real
runner (the operator API or the ``tsunagari`` command) and asserts the three
things every case must show: (a) the right outcome and reason, (b) no crash or
traceback anywhere a user would read, (c) the journal intact and the run's
status right (:mod:`tests.faults.checks`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

__all__ = ["FaultCase"]


@dataclass(frozen=True)
class FaultCase:
    """One row of the matrix: ``id`` reads like ``mail-tls-expired`` or ``sms-429-retry-after-date``."""

    id: str
    run: Callable[[Path], None]
    marks: Sequence[Any] = field(default_factory=tuple)
    fixtures: Sequence[str] = field(default_factory=tuple)

    def param(self) -> Any:
        return pytest.param(self, id=self.id, marks=tuple(self.marks))
