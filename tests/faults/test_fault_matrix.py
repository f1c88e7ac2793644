"""Fault matrix: every injected fault gives the right outcome, no traceback, an intact journal.

Cases live in ``cases_mail.py``, ``cases_sms.py``, ``cases_chat.py``,
``cases_network.py`` and ``cases_harness.py``; ids read like the list in
README "Reliability / 信頼性".
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from tests.faults.matrix import FaultCase

_MODULES = ("cases_mail", "cases_sms", "cases_chat", "cases_network", "cases_harness")


def _all_cases() -> list[FaultCase]:
    cases: list[FaultCase] = []
    for name in _MODULES:
        try:
            module = importlib.import_module(f"tests.faults.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"tests.faults.{name}":
                raise
            continue
        cases.extend(module.CASES)
    ids = [c.id for c in cases]
    dupes = {i for i in ids if ids.count(i) > 1}
    assert not dupes, f"duplicate fault case ids: {sorted(dupes)}"
    return cases


CASES = _all_cases()


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_fault(case: FaultCase, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    for name in case.fixtures:  # servers a case needs (e.g. the real Dovecot) by fixture name
        request.getfixturevalue(name)
    case.run(tmp_path)
