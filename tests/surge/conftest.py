"""Fixtures for the surge tests: registries on disk, a journal, a loopback HTTP counter."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from drills.core.journal import Journal
from tests.surge.sinks import HttpCounter

CHAT_RATE_LIMITED = """
defaults:
  slo: {latency: 1s, reachability: 0.99}
municipalities:
  - code: "131211"
    name: 足立区
    channels:
      - id: chat
        kind: webhook
        sim: {latency: 20ms, rate_limit: 50, capacity: 20}
"""

CHAT_FAST = """
defaults:
  slo: {latency: 2s, reachability: 0.99}
municipalities:
  - code: "131016"
    name: 千代田区
    channels:
      - {id: chat, kind: webhook, sim: {latency: 10ms}}
"""


@pytest.fixture
def write_registry(tmp_path: Path) -> Callable[[str], Path]:
    def write(text: str) -> Path:
        path = tmp_path / "registry.yaml"
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    j = Journal(tmp_path / "journal.sqlite")
    yield j
    j.close()


@pytest.fixture
async def http_counter() -> AsyncIterator[HttpCounter]:
    sink = HttpCounter()
    await sink.start()
    yield sink
    await sink.stop()
