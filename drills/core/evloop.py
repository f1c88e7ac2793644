"""Which event loop the harness runs on: uvloop where it is installed, else asyncio's own.

One place decides, so a drill, ``serve``, ``check`` and the benchmarks all run on
the same kind of loop and a benchmark that compares loops compares exactly this:

- ``TSUNAGARI_LOOP=uvloop``  — uvloop; an error if it is not installed;
- ``TSUNAGARI_LOOP=asyncio`` — the standard library's loop, always;
- unset or ``auto``          — uvloop if it imports, else asyncio's.

uvloop is a dependency (it is a C loop on libuv: fewer CPU cycles per socket
event); ``asyncio`` stays selectable so any difference can be measured and any
uvloop fault worked around without a new release.

    >>> chosen({"TSUNAGARI_LOOP": "asyncio"})
    'asyncio'
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

ENV = "TSUNAGARI_LOOP"
CHOICES = ("auto", "uvloop", "asyncio")

T = TypeVar("T")


def _uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def chosen(environ: Mapping[str, str] | None = None) -> str:
    """``"uvloop"`` or ``"asyncio"``, from ``TSUNAGARI_LOOP`` (see the module docstring)."""
    env = os.environ if environ is None else environ
    want = (env.get(ENV) or "auto").strip().lower()
    if want not in CHOICES:
        raise ValueError(
            f"{ENV}={want!r} は不正です（{' / '.join(CHOICES)}） / "
            f"{ENV}={want!r} is not one of {', '.join(CHOICES)}"
        )
    if want == "asyncio":
        return "asyncio"
    if want == "uvloop":
        if not _uvloop_available():
            raise ValueError(
                f"{ENV}=uvloop ですが uvloop がインストールされていません / "
                f"{ENV}=uvloop but uvloop is not installed"
            )
        return "uvloop"
    return "uvloop" if _uvloop_available() else "asyncio"


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new loop of the chosen kind (for a thread of its own)."""
    if chosen() == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on a loop of the chosen kind."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main)
