"""A loopback stand-in for a live channel: answers 200 to anything and counts what arrived."""

from __future__ import annotations

from aiohttp import web

__all__ = ["HttpCounter"]


class HttpCounter:
    """An aiohttp server on a free loopback port (port 0: nothing else can be on it)."""

    def __init__(self) -> None:
        self.port = 0
        self.requests = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/live"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._any)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _any(self, request: web.Request) -> web.Response:
        self.requests += 1
        return web.json_response({"ok": True})
