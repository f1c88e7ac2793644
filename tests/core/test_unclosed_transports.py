"""No connection the suite makes outlives its test half-open, and nothing stays frozen.

A rare CI failure: ``ResourceWarning: unclosed transport <_SelectorSocketTransport …>``
raised by the garbage collector in tests/mail, in a test that had not made it.
Two faults made that possible; each is pinned here:

- ``tsunagari serve`` froze the collector (``gc.freeze()``) and never thawed it. In a
  process that goes on (the tests call :func:`drills.cli.main`) every object alive
  then — garbage of earlier tests included — left the collector's sight until a later
  drill's ``gcpolicy.release()`` thawed it, and the next *full* collection, modules
  later, found it: the leak surfaced far from where it was made, and a ``gc.collect()``
  after each test could not see it.
- The chat tests' :class:`~tests.servers.delay_proxy.DelayProxy`, stopped while a
  client's connection was still connecting upstream, never closed that client's side:
  the handler was cancelled when the test's loop ended, the transport was left open.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drills.cli import main
from tests.servers.delay_proxy import DelayProxy


@pytest.fixture
def thawed() -> Iterator[None]:
    """Start and end with nothing frozen (a failing case must not freeze later tests)."""
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_serve_thaws_the_collector_however_it_ends(
    thawed: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"\x89PNG\r\n" + bytes(range(256)) * 40)
    code = main(["--lang", "en", "serve", "--journal", str(garbage)])
    assert code == 3, capsys.readouterr()  # the journal is refused after the freeze
    assert gc.get_freeze_count() == 0


def _resource_warnings(run: Any) -> list[str]:
    """What the collector says about *run*'s leftovers once its loop is gone."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run()
        gc.collect()
    return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


def test_a_delay_proxy_stopped_mid_connect_closes_its_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An upstream whose accept queue is full (listen(0) and one connection never
    # accepted): the proxy's next connection to it stays in the TCP handshake.
    upstream = socket.socket()
    upstream.bind(("127.0.0.1", 0))
    upstream.listen(0)
    filler = socket.create_connection(upstream.getsockname())
    real_open = asyncio.open_connection
    received: list[bytes] = []

    async def scenario() -> None:
        connecting = asyncio.Event()

        async def open_connection(*args: Any, **kwargs: Any) -> Any:
            connecting.set()  # the proxy's handler is connecting upstream now
            return await real_open(*args, **kwargs)

        proxy = DelayProxy(*upstream.getsockname(), delay=0.01)
        await proxy.start()
        monkeypatch.setattr(asyncio, "open_connection", open_connection)
        reader, writer = await real_open("127.0.0.1", proxy.port)
        try:
            await connecting.wait()
            await proxy.stop()
            # The proxy closed the client's side: end of stream (a bound for the failure
            # only — before the fix the handler still waits on its handshake).
            received.append(await asyncio.wait_for(reader.read(), 10))
        finally:
            monkeypatch.setattr(asyncio, "open_connection", real_open)
            writer.close()
            await writer.wait_closed()

    try:
        leaks = _resource_warnings(lambda: asyncio.run(scenario()))
    finally:
        filler.close()
        upstream.close()
    assert received == [b""]
    assert leaks == []


def test_a_slow_greeter_stopped_mid_wait_drops_its_client() -> None:
    """tests/servers/tcp_faults.py's SlowGreeter, stopped while a client still waits for
    the greeting: the connection ends with the server (before: left open on a stopped loop)."""
    from tests.servers.tcp_faults import SlowGreeter

    def scenario() -> bytes:
        greeter = SlowGreeter(delay=30.0).start()
        with socket.create_connection(("127.0.0.1", greeter.port), timeout=10) as client:
            client.settimeout(10)  # a bound for the failure only
            while not greeter.accepted:  # the server's own record that it holds the connection
                threading.Event().wait(0.001)
            greeter.stop()
            try:
                return client.recv(1)
            except ConnectionResetError:
                return b""

    received: list[bytes] = []
    leaks = _resource_warnings(lambda: received.append(scenario()))
    assert received == [b""]
    assert leaks == []
