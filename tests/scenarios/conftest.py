"""Fixtures for the scenario tests: registries, an operator's pytester, a loopback far end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

# Imported here, before any in-process pytester run takes its sys.modules snapshot, so
# inner runs and this session share one copy of every harness module. numpy (through
# matplotlib, for the scorecard charts) must be among them: an extension module
# dropped from sys.modules by the snapshot cannot be loaded a second time.
import httpcore  # noqa: F401
import httpx  # noqa: F401
import matplotlib.figure  # noqa: F401
import numpy  # noqa: F401
import pytest
import yaml

import drills.operator.plugin
import probes.chat.webhook
import probes.sim.chat  # noqa: F401
from drills.core.registry import known_kinds, load_kind
from drills.operator.demo import demo_registry_path

for _kind in known_kinds():  # every channel kind (and its client library) in this copy
    load_kind(_kind)
import drills.metrics.push  # noqa: E402
import drills.reporting.charts  # noqa: E402
import drills.reporting.html  # noqa: E402, F401

ROOT = Path(__file__).resolve().parents[2]

# A small registry: every outcome the harness knows, on simulated webhook channels.
SMALL = """\
defaults: {slo: {latency: 2s}}
municipalities:
  - {code: "131211", name: 足立区, name_en: Adachi City, tags: [23ku], channels: [
      {id: chat, kind: webhook, sim: {latency: 100ms}},
      {id: mail, kind: webhook, sim: {latency: 150ms}}]}
  - {code: "131016", name: 千代田区, name_en: Chiyoda City, tags: [23ku], channels: [
      {id: chat, kind: webhook, sim: {latency: 100ms}},
      {id: mail, kind: webhook, sim: {outage: true}}]}
  - {code: "134210", name: 小笠原村, name_en: Ogasawara Village, tags: [islands], channels: [
      {id: chat, kind: webhook, sim: {reject: auth}},
      {id: mail, kind: webhook, sim: {latency: 200ms}}]}
  - {code: "130001", name: 東京都, name_en: Tokyo Metropolitan Government, tags: [metro], channels: [
      {id: chat, kind: webhook, sim: {latency: 50ms}}]}
"""

INNER_INI = """\
[pytest]
addopts = --strict-markers -p no:asyncio -p no:cacheprovider
"""


@pytest.fixture(scope="session")
def demo_registry() -> Path:
    """The bundled demo registry, with its real kinds (webhook, mail, twilio).

    No stand-ins: a kind that cannot be loaded fails the test that asked for it.
    """
    path = demo_registry_path()
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for kind in sorted({c["kind"] for m in data["municipalities"] for c in m["channels"]}):
        try:
            load_kind(kind)
        except Exception as exc:
            pytest.fail(f"the demo registry's kind {kind!r} cannot be loaded: {exc!r}")
    return path


@pytest.fixture
def small_registry(tmp_path: Path) -> Path:
    path = tmp_path / "registry.yaml"
    path.write_text(SMALL, encoding="utf-8")
    return path


@pytest.fixture
def operator(pytester: pytest.Pytester, small_registry: Path) -> pytest.Pytester:
    """A pytester folder set up like an operator's: an ini, the small registry beside it."""
    pytester.makeini(INNER_INI)
    (pytester.path / "registry.yaml").write_text(
        small_registry.read_text(encoding="utf-8"), encoding="utf-8"
    )
    return pytester


class Helpers:
    """Small helpers the scenario tests share (a fixture: tests/ is not a package)."""

    @staticmethod
    def failed_subtests(reprec: pytest.HookRecorder) -> dict[str, list[str]]:
        """Test name → the labels of its failed subtests (one per municipality)."""
        out: dict[str, list[str]] = {}
        for rep in reprec.getreports("pytest_runtest_logreport"):
            if hasattr(rep, "context") and rep.failed:
                out.setdefault(rep.nodeid.split("::")[-1], []).append(rep.context.msg)
        return out

    @staticmethod
    def tsunagari(
        *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """``tsunagari ARGS`` in a fresh process, output captured (stdout is not a TTY)."""
        full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        full_env.pop("PYTEST_ADDOPTS", None)
        return subprocess.run(
            [sys.executable, "-m", "drills.cli", *args],
            cwd=cwd,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    @staticmethod
    def log_records(stderr: str) -> list[dict[str, object]]:
        """Every stderr line must be one JSON record."""
        return [json.loads(line) for line in stderr.splitlines() if line.strip()]


@pytest.fixture
def helpers() -> type[Helpers]:
    return Helpers


class FarEnd:
    """A live-looking chat far end on loopback: an incoming webhook and a read-back.

    ``POST /hook/{room}`` stores the text; ``GET /read/{room}`` echoes every stored
    text (the generic webhook kind's ``poll`` observer reads it); room ``locked``
    refuses the reader (HTTP 401), as an expired observer account would.
    """

    def __init__(self) -> None:
        from drills.core.background import BackgroundLoop

        self.loop = BackgroundLoop("far-end")
        self.posts: dict[str, list[str]] = {}
        self.port = self.loop.run(self._start())

    async def _start(self) -> int:
        from aiohttp import web

        async def post(request: web.Request) -> web.Response:
            body = await request.json()
            self.posts.setdefault(request.match_info["room"], []).append(body["text"])
            return web.json_response({"ok": True})

        async def read(request: web.Request) -> web.Response:
            room = request.match_info["room"]
            if room == "locked":
                return web.json_response({"ok": False, "error": "invalid_auth"}, status=401)
            return web.json_response({"messages": self.posts.get(room, [])})

        app = web.Application()
        app.router.add_post("/hook/{room}", post)
        app.router.add_get("/read/{room}", read)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return int(self.runner.addresses[0][1])

    def channel(self, cid: str, room: str) -> str:
        base = f"http://127.0.0.1:{self.port}"
        return (
            f'{{id: {cid}, kind: webhook, url: "{base}/hook/{room}", '
            f'observer: {{url: "{base}/read/{room}", mode: poll, interval: 50ms}}}}'
        )

    def close(self) -> None:
        self.loop.run(self.runner.cleanup())
        self.loop.close()


@pytest.fixture
def far_end() -> Iterator[FarEnd]:
    end = FarEnd()
    yield end
    end.close()
