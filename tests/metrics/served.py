"""The harness's HTTP servers in their own processes, for the hardening and fuzz tests.

- :class:`Served` — ``tsunagari serve`` (the exporter) or the Twilio webhook
  receiver (:data:`CALLBACKS_SCRIPT`, a :class:`probes.sms.callbacks.CallbackListener`
  with one subscribed account) as a subprocess whose stderr is kept, so a test
  can say "no traceback reached stderr".
- :func:`raw` — send exact bytes, read the status line (malformed requests
  need a socket, not an HTTP client).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from drills.core.journal import Journal
from drills.core.registry import parse_registry
from drills.core.runner import Drill

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "AC" + "1" * 32
AUTH_TOKEN = "callback-test-token"

REGISTRY = """\
municipalities:
  - code: "131211"
    name: 足立区
    drill_interval: 30d
    channels:
      - {id: chat, kind: webhook, sim: {latency: 10ms}}
"""

CALLBACKS_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, signal, sys
    from probes.base import ProbeEnv
    from probes.sim.base import free_port
    from probes.sms.callbacks import CallbackListener

    class Sink:
        statuses = 0
        inbound = 0
        def on_status(self, params, at, wall, bound):
            Sink.statuses += 1
        def on_inbound(self, params, at, wall, bound):
            Sink.inbound += 1

    async def main():
        port = free_port()
        env = ProbeEnv()
        listener = await CallbackListener.shared(env, "127.0.0.1", port, f"http://127.0.0.1:{port}")
        listener.subscribe(sys.argv[1], sys.argv[2], Sink())
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        print(f"serving http://127.0.0.1:{port}", flush=True)
        await stop.wait()
        print(json.dumps({"accepted": listener.accepted, "refused": listener.refused,
                          "statuses": Sink.statuses, "inbound": Sink.inbound}), flush=True)
        await listener.aclose()

    asyncio.run(main())
    """
)


def make_journal(folder: Path) -> tuple[Path, Path]:
    """A journal with one short drill, and its registry file."""
    registry_path = folder / "registry.yaml"
    registry_path.write_text(REGISTRY, encoding="utf-8")
    registry = parse_registry(REGISTRY, str(registry_path))
    journal_path = folder / "journal.sqlite"

    async def drill() -> None:
        with Journal(journal_path) as journal:
            async with Drill(registry, journal, scenario="served", vantage="hq") as d:
                await d.broadcast("参集してください", timeout=5, repeat=2)

    asyncio.run(drill())
    return journal_path, registry_path


class Served:
    """A server process; ``stderr`` and ``tail`` (what it printed at exit) after :meth:`stop`."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self.proc = subprocess.Popen(
            args,
            env=full_env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # "serving URL" once it listens
        if "serving" not in line and "公開中" not in line:
            self.proc.kill()
            _, err = self.proc.communicate(timeout=20)
            raise RuntimeError(f"did not start: {line!r} {err!r}")
        self.url = line.split()[-1]
        self.port = int(self.url.rsplit(":", 1)[1].split("/")[0])
        self.stderr = ""
        self.tail = ""
        # Drained as it comes: a full pipe would block the server's next log line.
        self._err: list[str] = []
        self._drain = threading.Thread(target=self._read_stderr, daemon=True)
        self._drain.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._err.append(line)

    @classmethod
    def exporter(cls, journal: Path, *extra: str, env: dict[str, str] | None = None) -> Served:
        port = free_port()
        cmd = [sys.executable, "-m", "drills.cli", "--lang", "en", "serve"]
        return cls([*cmd, "--journal", str(journal), "--port", str(port), *extra], env)

    @classmethod
    def callbacks(cls) -> Served:
        return cls([sys.executable, "-c", CALLBACKS_SCRIPT, ACCOUNT, AUTH_TOKEN])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> Served:
        if self.proc.stdout is None or self.proc.stdout.closed:
            return self  # stopped before
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # then returncode says it did not stop cleanly
            self.proc.wait(timeout=20)
        assert self.proc.stdout is not None
        self.tail = self.proc.stdout.read()
        self._drain.join(timeout=20)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        self.stderr = "".join(self._err)
        return self

    def counts(self) -> dict[str, int]:
        """The callback receiver's counts, printed as it stopped."""
        result: dict[str, int] = json.loads(self.tail.strip().splitlines()[-1])
        return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raw(port: int, data: bytes, timeout: float = 10.0) -> tuple[int, bytes]:
    """Send *data* as is; the answer's status code (0: closed without one) and bytes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before it read everything
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            chunks.append(chunk)
            answer = b"".join(chunks)
            head, sep, body = answer.partition(b"\r\n\r\n")
            if sep and b"content-length:" in head.lower():
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                if len(body) >= length:
                    break
    answer = b"".join(chunks)
    if not answer.startswith(b"HTTP/1."):
        return 0, answer
    return int(answer.split(b" ", 2)[1]), answer
