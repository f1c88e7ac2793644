"""Fixtures for the whole suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from probes import redact


@pytest.fixture(autouse=True)
def _secrets_stay_with_their_test() -> Iterator[None]:
    """Each test starts with no registered secret values.

    ``probes.redact`` keeps every resolved secret for the life of the process, as a
    drill must; in one pytest process that would let one test's password (``nope``)
    mask the same word in another test's expected output.
    """
    redact.forget_all()
    yield
    redact.forget_all()
