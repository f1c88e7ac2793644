"""Opt-in pytest plugin: a test that leaves a connection unclosed, or the collector frozen, fails.

    PYTHONTRACEMALLOC=25 python -m pytest -p tests.leakcheck tests/chat tests/core …

After every test (once its event loop and fixtures are gone) it collects the garbage
in full and fails the test on any ``ResourceWarning`` the collection raises, naming
the transport's protocol (a ``start_server`` handler's name, an aiosmtpd session, an
aiohttp handler…) and, under ``PYTHONTRACEMALLOC``, where it was made. It also fails
a test that leaves ``gc.freeze()`` in force: frozen garbage is invisible to every
collection until something thaws it, and then surfaces in a later, unrelated test —
which is how an unclosed transport once failed tests/mail's 200-channel test
(tests/core/test_unclosed_transports.py). Not in the default run: a full collection
after each of ~2,000 tests costs minutes.
"""

from __future__ import annotations

import gc
import tracemalloc
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

_THAWED = pytest.StashKey[bool]()


def _describe(source: Any) -> str:
    if source is None:
        return "    (no source object)"
    lines = [f"    {source!r}"]
    protocol = getattr(source, "_protocol", None)
    if protocol is not None:
        lines.append(f"    protocol: {protocol!r}")
        handler = getattr(protocol, "_client_connected_cb", None)
        if handler is not None:
            lines.append(f"    start_server handler: {getattr(handler, '__qualname__', handler)}")
    made = tracemalloc.get_object_traceback(source)
    if made is not None:
        lines.append("    made at:")
        lines.extend(f"      {line}" for line in made.format())
    return "\n".join(lines)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    item.stash[_THAWED] = gc.get_freeze_count() == 0
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """After the test's own teardown (its event loop closed, its fixtures gone)."""
    result = yield
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    leaks = [w for w in caught if issubclass(w.category, ResourceWarning)]
    problems = [f"{w.message}\n{_describe(w.source)}" for w in leaks]
    if item.stash.get(_THAWED, False) and gc.get_freeze_count():
        problems.append(f"gc.freeze() left in force ({gc.get_freeze_count()} objects frozen)")
        gc.unfreeze()
    if problems:
        pytest.fail("left behind by this test:\n" + "\n".join(problems), pytrace=False)
    return result
