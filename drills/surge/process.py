"""Running Locust in its own processes: local, ``--processes N``, or master + workers.

The harness (asyncio) never imports Locust (gevent); it starts
``python -m locust -f drills/surge/locustfiles.py --headless …`` as
subprocesses, each in its own session so that a terminal's Ctrl-C reaches
only the harness, which then stops Locust cleanly (SIGTERM to the master:
load idled, final stats written). Statistics come back through Locust's
``--json-file``; progress (ramp clock, worker tallies) through the progress
file the master appends to (:mod:`drills.surge.config`).

Topologies (:class:`Topology`)::

    Topology()                                   one Locust process
    Topology(processes=4)                        Locust forks 4 workers + a master, this machine
    Topology(master=True, local_workers=2)       master bound to 127.0.0.1 + 2 workers started here
    Topology(master=True, expect_workers=3,      master that also waits for workers from other
             bind_host="10.0.0.5", port=5557)    machines (``tsunagari surge --worker …`` there)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drills.core.errors import HarnessError, ScenarioError
from drills.surge.config import ENV_VAR, SurgeConfig, read_progress
from drills.surge.endpoint import scrub
from drills.surge.plan import RampStep, SurgePlan
from probes.sim.base import free_port

__all__ = ["LOCUSTFILE", "LocustRun", "Progress", "Topology", "locust_env", "worker_command"]

LOCUSTFILE = str(Path(__file__).with_name("locustfiles.py"))
_BACKSTOP_S = 60.0  # Locust's own --run-time, beyond the plan: a last resort if the clock dies
_TERM_GRACE_S = 15.0  # after SIGTERM, how long the master may take to drain and write stats
_START_GRACE_S = 30.0  # Locust start-up (imports, spawning users) beyond waiting for workers
_END_GRACE_S = 20.0  # after the plan's duration, before the hard stop
_POLL_S = 0.02

OnProgress = Callable[[dict[str, Any]], None]
OnStep = Callable[[RampStep], None]


@dataclass(frozen=True)
class Topology:
    """Where the Locust processes run (see the module docstring)."""

    processes: int = 1
    master: bool = False
    local_workers: int = 0
    expect_workers: int | None = None
    bind_host: str = "127.0.0.1"
    port: int | None = None
    worker_wait_s: float = 60.0

    def __post_init__(self) -> None:
        if self.processes < 1 or self.local_workers < 0:
            raise ScenarioError("プロセス数が不正です / invalid process or worker count")
        if self.master and self.processes > 1:
            raise ScenarioError(
                "--processes と --master は同時に使えません / "
                "use either --processes or --master, not both"
            )
        if self.master and self.workers_expected < 1:
            raise ScenarioError(
                "マスターにはワーカーが必要です / a master needs at least one worker"
            )

    @property
    def workers_expected(self) -> int:
        return self.expect_workers if self.expect_workers is not None else self.local_workers

    @property
    def mode(self) -> str:
        if self.master:
            return "distributed"
        return "processes" if self.processes > 1 else "local"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": self.mode, "processes": self.processes}
        if self.master:
            out.update(
                workers=self.workers_expected,
                local_workers=self.local_workers,
                bind_host=self.bind_host,
            )
        return out


@dataclass
class Progress:
    """What the harness learnt from the progress file while Locust ran."""

    started_wall: float | None = None
    steps_seen: list[int] = field(default_factory=list)
    step_walls: dict[int, float] = field(default_factory=dict)  # step index → wall time it began
    tallies: list[dict[str, Any]] = field(default_factory=list)
    finished: str | None = None
    finished_wall: float | None = None
    stop_reason: str = "completed"  # completed | stopped | cap

    def ran_s(self, index: int) -> float | None:
        """How long step *index* really ran (shorter than planned when stopped); None if never."""
        began = self.step_walls.get(index)
        if began is None:
            return None
        later = [w for i, w in self.step_walls.items() if i > index]
        ended = min(later) if later else self.finished_wall
        return None if ended is None else max(0.0, ended - began)

    def absorb(
        self, events: list[dict[str, Any]], on_progress: OnProgress | None = None
    ) -> list[int]:
        """Take in new events; return the indexes of steps that just began."""
        new_steps = []
        for ev in events:
            kind = ev.get("event")
            if kind == "clock":
                self.started_wall = float(ev["wall"])
            elif kind == "step":
                self.steps_seen.append(int(ev["index"]))
                self.step_walls[int(ev["index"])] = float(ev["wall"])
                new_steps.append(int(ev["index"]))
            elif kind == "tally":
                self.tallies.append({k: v for k, v in ev.items() if k != "event"})
            elif kind == "finished":
                self.finished = str(ev["reason"])
                self.finished_wall = float(ev["wall"])
                if self.finished != "completed" and self.stop_reason == "completed":
                    self.stop_reason = self.finished
            if on_progress is not None:
                on_progress(ev)
        return new_steps


def _locust(*args: str) -> list[str]:
    return [sys.executable, "-m", "locust", "-f", LOCUSTFILE, *args]


def worker_command(
    master_host: str, master_port: int, user_class: str, logfile: str | None = None
) -> list[str]:
    """The command line of one Locust worker of a surge (configuration in the environment)."""
    cmd = _locust("--worker", "--master-host", master_host, "--master-port", str(master_port))
    cmd += ["--loglevel", "WARNING"]
    if logfile:
        cmd += ["--logfile", logfile]
    return [*cmd, user_class]


def locust_env(config_path: Path) -> dict[str, str]:
    """The environment of a surge's Locust process: ours minus LOCUST_* settings, plus the config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
    return {**env, ENV_VAR: str(config_path), "PYTHONUNBUFFERED": "1"}


class LocustRun:
    """The Locust processes of one surge, started in *workdir* (private, removed by the caller)."""

    def __init__(
        self,
        config: SurgeConfig,
        host: str,
        topology: Topology,
        workdir: Path,
        secrets: tuple[str, ...] = (),
    ) -> None:
        self.config = config
        self.host = host
        self.topology = topology
        self.workdir = workdir
        self.secrets = secrets
        self.master: asyncio.subprocess.Process | None = None
        self.workers: list[asyncio.subprocess.Process] = []
        self._offset = 0
        self._port = topology.port
        self.terminated = False

    @property
    def stats_path(self) -> Path:
        return self.workdir / "stats.json"  # Locust appends ".json" to --json-file

    @property
    def config_path(self) -> Path:
        return self.workdir / "config.json"

    def master_command(self) -> list[str]:
        plan = self.config.plan
        users = int(plan["users"])
        duration = sum(float(s["duration_s"]) for s in plan["steps"])
        cmd = _locust(
            "--headless",
            "--only-summary",
            "-u", str(users),
            "-r", str(max(100, users * 10)),
            "-t", f"{int(duration + _BACKSTOP_S)}s",
            "--json-file", str(self.workdir / "stats"),
            "--exit-code-on-error", "0",
            "--loglevel", "WARNING",
            "--logfile", str(self.workdir / "master.log"),
        )  # fmt: skip
        if self.host:
            cmd += ["-H", self.host]
        t = self.topology
        if t.processes > 1:
            cmd += ["--processes", str(t.processes)]
        if t.master:
            cmd += [
                "--master",
                "--master-bind-host", t.bind_host,
                "--master-bind-port", str(self.port),
                "--expect-workers", str(t.workers_expected),
                "--expect-workers-max-wait", str(int(t.worker_wait_s)),
            ]  # fmt: skip
        return [*cmd, self.config.user_class]

    @property
    def port(self) -> int:
        if self._port is None:
            # Only local workers: any free port. Remote workers need a known one (5557).
            self._port = free_port(self.topology.bind_host) if not self._remote_workers() else 5557
        return self._port

    def _remote_workers(self) -> bool:
        return self.topology.workers_expected > self.topology.local_workers

    async def start(self) -> None:
        self.config.write(self.config_path)
        env = locust_env(self.config_path)
        self.master = await self._spawn(self.master_command(), env, "master.out")
        if self.topology.master:
            connect = (
                "127.0.0.1"
                if self.topology.bind_host in ("0.0.0.0", "*", "")
                else self.topology.bind_host
            )
            for i in range(self.topology.local_workers):
                log = str(self.workdir / f"worker{i}.log")
                cmd = worker_command(connect, self.port, self.config.user_class, log)
                self.workers.append(await self._spawn(cmd, env, f"worker{i}.out"))

    async def _spawn(
        self, cmd: list[str], env: dict[str, str], out: str
    ) -> asyncio.subprocess.Process:
        # cwd: the private run folder, so no stray locust.conf / pyproject.toml is picked up.
        with open(self.workdir / out, "wb") as sink:
            return await asyncio.create_subprocess_exec(
                *cmd,
                env=env,
                cwd=self.workdir,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=sink,
                stderr=sink,
                start_new_session=True,
            )

    async def drive(
        self,
        plan: SurgePlan,
        *,
        stop: asyncio.Event | None = None,
        on_progress: OnProgress | None = None,
        on_step: OnStep | None = None,
    ) -> Progress:
        """Start Locust, follow its ramp clock to the end, wait for every process to exit.

        *on_step* is called as each step begins. Setting *stop* (or overrunning
        the plan by more than a grace period — the hard duration cap) stops
        the load cleanly; the statistics are then those measured until then.
        Raises :class:`HarnessError` if Locust does not start or fails.
        """
        try:
            await self.start()
            progress = await self._follow(plan, stop, on_progress, on_step)
            code = await self.wait()
            progress.absorb(self.poll(), on_progress)
        except BaseException:
            await self.kill()
            raise
        if not self.stats() and code != 0:
            raise HarnessError(
                f"Locust が異常終了しました（終了コード {code}） / "
                f"Locust failed (exit code {code})\n" + self.log_tail()
            )
        return progress

    async def _follow(
        self,
        plan: SurgePlan,
        stop: asyncio.Event | None,
        on_progress: OnProgress | None,
        on_step: OnStep | None,
    ) -> Progress:
        progress = Progress()
        wait_workers = self.topology.worker_wait_s if self.topology.master else 0.0
        start_deadline = time.monotonic() + _START_GRACE_S + wait_workers
        end_deadline: float | None = None
        while not self.exited:
            for index in progress.absorb(self.poll(), on_progress):
                if on_step is not None:
                    on_step(plan.step(index))
            now = time.monotonic()
            if progress.started_wall is not None and end_deadline is None:
                end_deadline = now + plan.duration_s + _END_GRACE_S
            if not self.terminated:
                if stop is not None and stop.is_set():
                    progress.stop_reason = "stopped"
                    await self.terminate()
                elif end_deadline is not None and now > end_deadline:
                    progress.stop_reason = "cap"  # the clock overran: the hard duration cap
                    await self.terminate()
                elif progress.started_wall is None and now > start_deadline:
                    raise HarnessError(
                        "Locust が起動しませんでした / Locust did not start\n" + self.log_tail()
                    )
            if stop is not None and not self.terminated:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), _POLL_S)
            else:
                await asyncio.sleep(_POLL_S)
        return progress

    def poll(self) -> list[dict[str, Any]]:
        """Progress events appended since the last poll."""
        events, self._offset = read_progress(self.config.progress, self._offset)
        return events

    @property
    def exited(self) -> bool:
        return self.master is not None and self.master.returncode is not None

    async def terminate(self) -> None:
        """Ask the master to stop cleanly (it idles the load and writes its stats)."""
        self.terminated = True
        if self.master is not None and self.master.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.master.send_signal(signal.SIGTERM)

    async def wait(self, timeout: float = _TERM_GRACE_S) -> int:
        """Wait for the master, then the workers, to exit; kill what does not. The master's code."""
        assert self.master is not None
        code = await _reap(self.master, timeout)
        for worker in self.workers:
            await _reap(worker, 5.0)
        return code

    async def kill(self) -> None:
        for proc in [p for p in (self.master, *self.workers) if p is not None]:
            await _reap(proc, 0.0)

    def stats(self) -> list[dict[str, Any]]:
        try:
            data = json.loads(self.stats_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        return data if isinstance(data, list) else []

    def log_tail(self, lines: int = 15) -> str:
        """The end of the Locust logs, scrubbed of secrets (for an error message)."""
        chunks = []
        for name in ("master.out", "master.log", "worker0.out", "worker0.log"):
            path = self.workdir / name
            with contextlib.suppress(OSError):
                text = path.read_text(encoding="utf-8", errors="replace").strip()
                if text:
                    chunks.append(f"[{name}] " + "\n".join(text.splitlines()[-lines:]))
        return scrub("\n".join(chunks), self.secrets)


async def _reap(proc: asyncio.subprocess.Process, timeout: float) -> int:
    if proc.returncode is None and timeout > 0:
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(proc.wait(), timeout)
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
    assert proc.returncode is not None
    return proc.returncode
