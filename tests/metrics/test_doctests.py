"""The usage examples in the metrics modules' docstrings run."""

from __future__ import annotations

import doctest

import pytest

from drills.metrics import catalogue, digest, probe, push, send_wait
from drills.metrics import collector as metrics
from drills.metrics import state as metric_state
from drills.metrics.digest import channel as channel_digest
from drills.surge import summary


@pytest.mark.parametrize(
    "module",
    [catalogue, digest, channel_digest, metrics, metric_state, probe, push, send_wait, summary],
    ids=lambda m: m.__name__,
)
def test_docstring_examples(module: object) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert result.attempted > 0 and result.failed == 0
