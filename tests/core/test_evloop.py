"""drills.core.evloop: which loop TSUNAGARI_LOOP selects, and that run() really uses it."""

from __future__ import annotations

import asyncio

import pytest

from drills.core import evloop


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


@pytest.mark.parametrize(
    ("env", "want"), [("asyncio", "asyncio"), ("uvloop", "uvloop"), ("auto", "uvloop")]
)
def test_choice_is_the_loop_that_runs(monkeypatch: pytest.MonkeyPatch, env: str, want: str) -> None:
    monkeypatch.setenv(evloop.ENV, env)
    assert evloop.chosen() == want
    assert evloop.run(_loop_module()).split(".")[0] == want


def test_unknown_choice_names_the_variable() -> None:
    with pytest.raises(ValueError, match="TSUNAGARI_LOOP='trio'"):
        evloop.chosen({"TSUNAGARI_LOOP": "trio"})
