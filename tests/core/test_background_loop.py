"""BackgroundLoop: a caller's KeyboardInterrupt (the second SIGINT) is raised only after
the cut coroutine has unwound, so nothing the caller does next races the records a cut
step writes as it unwinds (``harness-sigint-twice-mid-run`` met that race under load)."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Iterator

import pytest

from drills.core.background import BackgroundLoop


@pytest.fixture
def loop() -> Iterator[BackgroundLoop]:
    background = BackgroundLoop()
    yield background
    background.close()


@pytest.fixture
def sigint_raises() -> Iterator[None]:
    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, interrupt)
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_cut_step_has_unwound_when_the_interrupt_reaches_the_caller(
    loop: BackgroundLoop, sigint_raises: None
) -> None:
    cut = threading.Event()
    recorded: list[str] = []

    async def step() -> None:
        loop.loop.call_soon(cut.set)
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            # A cut delivery records itself over a few turns of the loop (observer
            # cancelled and awaited, the record queued for its group commit).
            for _ in range(50):
                await asyncio.sleep(0.002)
            recorded.append("interrupted")
            raise

    threading.Thread(target=lambda: cut.wait(10) and os.kill(os.getpid(), signal.SIGINT)).start()
    with pytest.raises(KeyboardInterrupt):
        loop.run(step())
    assert recorded == ["interrupted"]  # before the caller could finish the run
    assert loop.run(asyncio.sleep(0, "still usable")) == "still usable"


def test_a_step_that_ends_normally_returns_its_result(loop: BackgroundLoop) -> None:
    async def step() -> int:
        await asyncio.sleep(0)
        return 7

    assert loop.run(step()) == 7
    with pytest.raises(ValueError, match="bad"):
        loop.run(_fails())


async def _fails() -> None:
    raise ValueError("bad")
