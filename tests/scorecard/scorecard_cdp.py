"""A small headless-Chromium driver over the Chrome DevTools Protocol (websockets).

Debian's ``chromium`` is started with a fresh profile and no background
networking; the test talks CDP to it directly (no selenium, no chromedriver):

    async with Chromium.launch(tmp_path) as browser:
        async with browser.page() as page:
            await page.goto(path.as_uri())
            dom = await page.evaluate("document.title")
            png = await page.screenshot()

A page records every request it makes (``Network.requestWillBeSent``) and
every console/log entry (``Log.entryAdded``, ``Runtime.consoleAPICalled``),
so a test can assert that nothing but the file itself was requested and that
no Content-Security-Policy violation happened.
CDP reference: https://chromedevtools.github.io/devtools-protocol/
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--metrics-recording-only",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)


class CDPError(RuntimeError):
    pass


class Page:
    """One tab, attached through a flat CDP session."""

    def __init__(self, browser: Chromium, session_id: str) -> None:
        self.browser = browser
        self.session_id = session_id
        self.requests: list[dict[str, Any]] = []
        self.logs: list[dict[str, Any]] = []
        self._load = asyncio.Event()

    async def send(
        self, method: str, params: dict[str, Any] | None = None, timeout: float = 30.0
    ) -> dict[str, Any]:
        return await self.browser.send(method, params, session_id=self.session_id, timeout=timeout)

    def on_event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Network.requestWillBeSent":
            self.requests.append({"url": params["request"]["url"], "type": params.get("type")})
        elif method == "Log.entryAdded":
            self.logs.append(params["entry"])
        elif method == "Runtime.consoleAPICalled":
            self.logs.append({"level": params["type"], "text": str(params.get("args"))})
        elif method == "Page.loadEventFired":
            self._load.set()

    async def goto(self, url: str, timeout: float = 20.0) -> None:
        self._load.clear()
        result = await self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise CDPError(f"navigation failed: {result['errorText']}")
        await asyncio.wait_for(self._load.wait(), timeout)

    async def evaluate(self, expression: str) -> Any:
        result = await self.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}
        )
        if "exceptionDetails" in result:
            raise CDPError(f"script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def screenshot(self) -> bytes:
        data = await self.send(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}
        )
        return base64.b64decode(data["data"])

    async def print_pdf(self) -> bytes:
        # A4 in inches; margins come from the page's own @page rule.
        data = await self.send(
            "Page.printToPDF",
            {
                "paperWidth": 8.27,
                "paperHeight": 11.69,
                "printBackground": True,
                "preferCSSPageSize": True,
            },
            timeout=60.0,
        )
        return base64.b64decode(data["data"])


class Chromium:
    """A headless Chromium process with a fresh profile, driven over CDP."""

    def __init__(self, proc: subprocess.Popen[bytes], ws: ClientConnection, profile: Path) -> None:
        self.proc = proc
        self.ws = ws
        self.profile = profile
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._pages: dict[str, Page] = {}
        self._reader = asyncio.create_task(self._read())

    @classmethod
    @contextlib.asynccontextmanager
    async def launch(cls, workdir: Path, timeout: float = 30.0) -> AsyncIterator[Chromium]:
        profile = workdir / "chromium-profile"
        profile.mkdir(parents=True, exist_ok=True)
        port_file = profile / "DevToolsActivePort"
        port_file.unlink(missing_ok=True)  # a stale one would point at a dead browser
        log = (workdir / "chromium.log").open("wb")
        proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + timeout
            while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise CDPError(f"chromium did not start (see {workdir / 'chromium.log'})")
                await asyncio.sleep(0.05)
            port, path = port_file.read_text().splitlines()[:2]
            ws = await connect(f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=timeout)
            browser = cls(proc, ws, profile)
            try:
                yield browser
            finally:
                await browser.close()
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)
            log.close()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.send("Browser.close"), 5)
        await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
            await self._reader

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                self._dispatch(json.loads(raw))
        except ConnectionClosed:
            pass  # the browser went away (Browser.close, or a crash: pending calls fail below)
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(CDPError("the browser closed the DevTools connection"))
        self._waiting.clear()

    def _dispatch(self, msg: dict[str, Any]) -> None:
        if "id" in msg:
            fut = self._waiting.pop(msg["id"], None)
            if fut is not None and not fut.done():
                if "error" in msg:
                    fut.set_exception(CDPError(str(msg["error"])))
                else:
                    fut.set_result(msg.get("result", {}))
        elif "sessionId" in msg and msg["sessionId"] in self._pages:
            self._pages[msg["sessionId"]].on_event(msg["method"], msg.get("params", {}))

    async def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session_id: str | None = None,
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        msg_id = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[msg_id] = fut
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session_id is not None:
            msg["sessionId"] = session_id
        await self.ws.send(json.dumps(msg))
        return await asyncio.wait_for(fut, timeout)

    @contextlib.asynccontextmanager
    async def page(self, width: int = 1100, height: int = 1400) -> AsyncIterator[Page]:
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        page = Page(self, attached["sessionId"])
        self._pages[page.session_id] = page
        for domain in ("Page", "Network", "Log", "Runtime"):
            await page.send(f"{domain}.enable")
        await page.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        try:
            yield page
        finally:
            self._pages.pop(page.session_id, None)
            with contextlib.suppress(Exception):
                await self.send("Target.closeTarget", {"targetId": target["targetId"]})
