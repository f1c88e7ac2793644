"""Simulators in a process of their own, driven over a socket pair.

The demo and the benchmarks run the far ends (:mod:`probes.sim`) in a child
process, so the CPU a simulator spends and the event-loop time it takes are not
counted as the harness's. The probes talk to them over loopback as before; only
the simulators' *control* (add a channel, take it down, read the ground truth)
crosses the process boundary, as pickled messages on a Unix socket pair::

    host = SimHost(seed=1).start()                     # python -m drills.core.sim_host
    settings = host.add(ChatSimulator, "131211/chat", knobs, {})   # the probe's settings
    host.outage("131211/chat", True)
    ledgers = host.stop()                              # {simulator name: Ledger}

The ledgers' times are the machine's monotonic clock, shared by every process
(:mod:`probes.sim.ledger`), so :func:`drills.core.truth.compare` judges records
against them exactly as against an in-process simulator's.

*Priority.* ``SimHost(nice=-10)`` runs the child at that scheduling priority (a
lower nice value: the kernel gives it the CPU first). A far end in the field runs
on machines of its own, never slowed by the harness; here it shares the cores with
the harness (and whatever else runs), and a starved simulator is a far end slower
than the channel it simulates — its ledger says so truthfully, but the benchmark
then measures the machine's crowding, not the channel. A lower value needs the
privilege to take it (root, CAP_SYS_NICE); without it the child keeps the default
and :attr:`SimHost.nice_applied` says which value it runs at.

The child ignores SIGINT and SIGTERM: a Ctrl-C at the terminal reaches the whole
process group, and the parent (:mod:`drills.core.interrupt`) decides what a signal
means — it stops the child itself. When the parent dies without stopping it, the
socket's end of file stops the child.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from typing import Any

from drills.core import gcpolicy
from drills.core.errors import HarnessError
from probes.sim.base import SimKnobs, Simulator
from probes.sim.ledger import Ledger

__all__ = ["SimHost", "sim_name"]

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


def sim_name(cls: type[Simulator]) -> str:
    """``module.QualName``: how a simulator class is named across the process boundary."""
    return cls.__module__ + "." + cls.__qualname__


def _sim_class(name: str) -> type[Simulator]:
    module, _, qualname = name.rpartition(".")
    cls = getattr(importlib.import_module(module), qualname)
    if not (isinstance(cls, type) and issubclass(cls, Simulator)):
        raise TypeError(f"{name} is not a simulator")
    return cls


def _raise_fd_limit() -> None:
    """Thousands of channels hold thousands of sockets: the soft limit up to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 1 << 20), hard))


class SimHost:
    """One child process running any number of simulators (one per class)."""

    def __init__(self, seed: int | None = None, nice: int | None = None) -> None:
        self.seed = seed
        self.nice = nice
        self.nice_applied: int | None = None  # the child's nice value, once started
        self.proc: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._lock = threading.Lock()

    def start(self) -> SimHost:
        """Start the child and wait until it answers (raises :class:`HarnessError`)."""
        _raise_fd_limit()
        mine, theirs = socket.socketpair()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "drills.core.sim_host", str(theirs.fileno())]
                + ["-" if self.seed is None else str(self.seed)]
                + ([] if self.nice is None else [str(self.nice)]),
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        self._conn = Connection(mine.detach())
        if not self._conn.poll(START_TIMEOUT_S):
            self.kill()
            raise HarnessError(
                "シミュレータのプロセスが起動しません / the simulator process did not start"
            )
        try:
            self.nice_applied = int(self._answer())  # "ready": the child's nice value
        except HarnessError:
            self.kill()
            self._conn.close()
            self._conn = None
            raise
        return self

    # ------------------------------------------------------------------ calls

    def call(self, op: str, *args: Any) -> Any:
        """Send one request, wait for its answer (thread-safe; blocking)."""
        with self._lock:
            if self._conn is None:
                raise HarnessError(
                    "シミュレータのプロセスは停止しています / the simulator process is stopped"
                )
            try:
                self._conn.send((op, args))
            except OSError as exc:
                raise self._gone(exc) from None
            return self._answer()

    def _answer(self) -> Any:
        assert self._conn is not None
        try:
            status, value = self._conn.recv()
        except (EOFError, OSError) as exc:
            raise self._gone(exc) from None
        if status == "err":
            raise HarnessError(
                f"シミュレータのプロセスでエラー: {value} / error in the simulator process: {value}"
            )
        return value

    def _gone(self, exc: BaseException) -> HarnessError:
        code = self.proc.poll() if self.proc is not None else None
        return HarnessError(
            f"シミュレータのプロセスが終了しました（{code}） / the simulator process ended "
            f"({code}; {type(exc).__name__})"
        )

    async def acall(self, op: str, *args: Any) -> Any:
        """:meth:`call` from an event loop, without blocking it."""
        return await asyncio.to_thread(self.call, op, *args)

    def add(
        self, cls: type[Simulator], key: str, knobs: SimKnobs, raw: dict[str, Any]
    ) -> dict[str, Any]:
        """Add channel *key* to the child's simulator of *cls*; the probe's settings."""
        settings: dict[str, Any] = self.call("add", [(sim_name(cls), key, knobs, raw)])[0]
        return settings

    def add_many(
        self, items: list[tuple[type[Simulator], str, SimKnobs, dict[str, Any]]]
    ) -> list[dict[str, Any]]:
        """:meth:`add` for many channels in one round trip."""
        out: list[dict[str, Any]] = self.call(
            "add", [(sim_name(c), k, kn, raw) for c, k, kn, raw in items]
        )
        return out

    def outage(self, key: str, down: bool) -> None:
        self.call("outage", key, down)

    def ledgers(self) -> dict[str, Ledger]:
        """A snapshot of every simulator's ledger (the child keeps running)."""
        out: dict[str, Ledger] = self.call("ledgers")
        return out

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the child has used so far."""
        return float(self.call("cpu"))

    def stop(self) -> dict[str, Ledger]:
        """Stop the simulators and the child; their ledgers as they were at the end."""
        ledgers: dict[str, Ledger] = {}
        if self._conn is not None:
            with contextlib.suppress(HarnessError):
                ledgers = self.call("stop")
            with self._lock:
                self._conn.close()
                self._conn = None
        if self.proc is not None:
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.kill()
        return ledgers

    def kill(self) -> None:
        """Kill the child (if it still runs) and reap it."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()


# --------------------------------------------------------------------------- the child


def _settle_heap() -> None:
    """The channels just added are long-lived: collect once, then freeze them out of the
    collector's way (no later collection walks them)."""
    gc.collect()
    gc.freeze()


class _Child:
    def __init__(self, conn: Connection, seed: int | None) -> None:
        self.conn = conn
        self.seed = seed
        self.sims: dict[str, Simulator] = {}
        self.of_key: dict[str, Simulator] = {}

    async def handle(self, op: str, args: tuple[Any, ...]) -> Any:
        if op == "add":
            out = []
            for name, key, knobs, raw in args[0]:
                sim = self.sims.get(name)
                if sim is None:
                    sim = _sim_class(name)(seed=self.seed)
                    await sim.start()
                    self.sims[name] = sim
                out.append(sim.add_channel(key, knobs, raw))
                self.of_key[key] = sim
            _settle_heap()
            return out
        if op == "outage":
            self.of_key[args[0]].set_outage(args[0], args[1])
            return None
        if op == "ledgers":
            return {name: sim.ledger for name, sim in self.sims.items()}
        if op == "cpu":
            usage = resource.getrusage(resource.RUSAGE_SELF)
            return usage.ru_utime + usage.ru_stime
        if op == "stop":
            await self.stop()
            return {name: sim.ledger for name, sim in self.sims.items()}
        raise ValueError(f"unknown request {op!r}")

    async def stop(self) -> None:
        for sim in self.sims.values():
            with contextlib.suppress(Exception):
                await sim.stop()

    async def run(self) -> None:
        # The far ends serve like one long drill step: the collector on the loop's clock,
        # never a long walk while answers wait (drills.core.gcpolicy, rule 2). Under Python's
        # own schedule each far end here stopped for collections of 20–170 ms (wall time, a
        # loaded machine) at 10,000 channels: every answer and visibility timer then late.
        with gcpolicy.step():
            await self._serve()

    async def _serve(self) -> None:
        self.conn.send(("ok", os.getpriority(os.PRIO_PROCESS, 0)))  # ready, at this nice
        while True:
            try:
                op, args = await asyncio.to_thread(self.conn.recv)
            except (EOFError, OSError):  # the parent is gone: stop quietly
                await self.stop()
                return
            try:
                answer = ("ok", await self.handle(op, args))
            except Exception as exc:
                answer = ("err", f"{type(exc).__name__}: {exc}")
            self.conn.send(answer)
            if op == "stop":
                return


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _raise_fd_limit()
    conn = Connection(int(argv[0]))
    seed = int(argv[1]) if len(argv) > 1 and argv[1] != "-" else None
    if len(argv) > 2:  # a priority asked for: taken if this process may (see the docstring)
        with contextlib.suppress(PermissionError, OSError):
            os.setpriority(os.PRIO_PROCESS, 0, int(argv[2]))
    asyncio.run(_Child(conn, seed).run())
    conn.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
