"""The usage examples in the scoring and report modules' docstrings run (they can fail)."""

from __future__ import annotations

import doctest

import pytest

from drills.core import scoring
from drills.reporting import scenario_events
from drills.reporting import send_wait as report_send_wait
from drills.reporting import text as report_text


@pytest.mark.parametrize(
    "module",
    [scoring, report_text, scenario_events, report_send_wait],
    ids=lambda m: m.__name__,
)
def test_docstring_examples(module: object) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert result.attempted > 0 and result.failed == 0
