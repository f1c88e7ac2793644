"""A port reserved for a listener that starts later cannot be taken meanwhile."""

from __future__ import annotations

import errno
import socket

import pytest
from aiohttp import web

from probes.sim.base import reserve_port


async def test_a_reserved_port_is_refused_to_others_and_free_for_its_listener() -> None:
    hold = reserve_port()
    port = int(hold.getsockname()[1])
    try:
        # Anybody else binding it (as free_port's callers do) is refused …
        with socket.socket() as other, pytest.raises(OSError) as refused:
            other.bind(("127.0.0.1", port))
        assert refused.value.errno == errno.EADDRINUSE
        # … while the listener it was reserved for (SO_REUSEADDR, aiohttp's default) binds it.
        runner = web.AppRunner(web.Application())
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", port).start()
            assert int(runner.addresses[0][1]) == port
        finally:
            await runner.cleanup()
    finally:
        hold.close()
