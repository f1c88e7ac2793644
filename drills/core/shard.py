"""Past one core: one broadcast step fanned out over worker processes, sharded by municipality.

One process paces its sends (:mod:`drills.core.pacing`) so that it never times
its own queue; a drill bigger than one process can pace honestly runs a step
in ``workers`` processes instead (``Drill(workers=…)`` or
``TSUNAGARI_WORKERS=N|auto``; ``auto`` is one per core). Each worker:

- gets whole municipalities (:func:`shard`: the biggest first, each to the least
  loaded worker), so one municipality's channels share one process;
- builds its own probes and session, paces at the full rate and journals into
  the *same* journal file (SQLite WAL; a writer waits up to 30 s for another's
  commit), into the same run, with the same group commit;
- reaches simulated channels at the parent's simulators (their settings are
  passed; the ground-truth ledgers stay in the parent);
- sends each delivery to the parent once it is committed: the parent builds the
  one :class:`~drills.core.step.StepResult`, calls ``watch`` / ``on_delivery``, and
  finishes the run. The operator API and the scorecard see one step, as before.

Signals: the workers ignore SIGINT/SIGTERM; the parent decides. Once it is
stopping (:mod:`drills.core.interrupt`) it tells every worker, which sends
nothing new; when the parent aborts the step, the workers cancel theirs and
record what they were still watching as interrupted.

Not sharded (the step runs in this process): a journal in memory, a single
municipality, or any paid channel (SMS): the cost guard must see every send
of a run in one place.

Workers are started with ``spawn`` (never ``fork`` of a process with a running
loop): a script that drives :class:`~drills.core.runner.Drill` itself must keep
its top level under ``if __name__ == "__main__":``, as :mod:`multiprocessing`
requires. Each worker pays its start-up (imports, opening its probes) before its
first send; on a machine whose cores are also busy with the far ends (the
simulators of the benchmarks) more workers can be slower, not faster — measure.

    >>> from types import SimpleNamespace as NS
    >>> t = lambda code, n: [NS(municipality=NS(code=code), key=f"{code}/{i}") for i in range(n)]
    >>> [[x.key for x in s] for s in shard(t("1", 3) + t("2", 1) + t("3", 2), 2)]
    [['1/0', '1/1', '1/2'], ['3/0', '3/1', '2/0']]
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from drills.core import evloop
from drills.core.errors import HarnessError, ScenarioError
from probes.redact import redact

if TYPE_CHECKING:
    from drills.core.attempt import StepSpec
    from drills.core.delivery import Delivery
    from drills.core.journal.target import JournalTarget
    from drills.core.pacing import Pacing
    from drills.core.registry import Registry, Target
    from drills.core.runner import Drill, OnDelivery
    from drills.core.step import StepResult
    from probes.sim.ledger import Outage

__all__ = ["ENV_VAR", "ShardJob", "broadcast_sharded", "run_shards", "shard", "workers_from_env"]

ENV_VAR = "TSUNAGARI_WORKERS"
STOP, ABORT = "stop", "abort"  # what the parent tells a worker


class _Placed(Protocol):
    @property
    def municipality(self) -> Any: ...


T = TypeVar("T", bound=_Placed)


def shard(targets: Sequence[T], workers: int) -> list[list[T]]:
    """*targets* split into at most *workers* shards of whole municipalities, balanced.

    Deterministic: municipalities in order of size (biggest first, then first seen),
    each to the shard with the fewest targets so far (the lowest index on a tie).
    """
    groups: dict[str, list[T]] = {}
    for t in targets:
        groups.setdefault(t.municipality.code, []).append(t)
    order = sorted(groups.values(), key=len, reverse=True)  # stable: ties keep their order
    shards: list[list[T]] = [[] for _ in range(max(1, min(workers, len(order))))]
    for group in order:
        min(shards, key=len).extend(group)
    return [s for s in shards if s]


def workers_from_env(env: Mapping[str, str] | None = None) -> int:
    """``TSUNAGARI_WORKERS``: a count, or ``auto`` (one per core); unset: 1.

    >>> workers_from_env({}), workers_from_env({"TSUNAGARI_WORKERS": "3"})
    (1, 3)
    """
    value = (os.environ if env is None else env).get(ENV_VAR, "").strip().lower()
    if not value:
        return 1
    if value == "auto":
        return os.cpu_count() or 1
    try:
        count = int(value)
        if count < 1:
            raise ValueError(value)
    except ValueError:
        raise ScenarioError(
            f"{ENV_VAR} の指定が読めません: {value!r}（1 以上の整数または auto） / "
            f"cannot read {ENV_VAR} {value!r} (a whole number ≥ 1, or auto)"
        ) from None
    return count


@dataclass(frozen=True)
class ShardJob:
    """Everything one worker needs for its part of one step (picklable)."""

    registry: Registry
    keys: tuple[str, ...]
    journal_path: str | JournalTarget
    """The journal's file, or a PostgreSQL target (its resolved password crosses only
    the pipe to the worker, never a command line or a log)."""
    run_id: str
    scenario: str
    vantage: str
    live: bool
    lang: str
    seed: int | None
    pacing: Pacing
    text: str
    subject: str
    step: str
    timeout: float
    slo: float | None
    repeat: int
    interval: float
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)  # simulated channels
    outages: tuple[Outage, ...] = ()  # the drill's own outages so far (monotonic)


async def broadcast_sharded(
    drill: Drill,
    spec: StepSpec,
    active: Sequence[Target],
    repeat: int,
    interval: float,
    result: StepResult,
    watch: OnDelivery | None,
) -> None:
    """*drill*'s step over *active* in worker processes; the one *result* filled here."""
    run_id = drill.begin()  # the workers write into this run
    settings = {t.key: await drill.sims.settings_for(t) for t in active if t.channel.simulated}
    jobs = []
    for part in shard(active, drill.workers):
        keys = tuple(t.key for t in part)
        jobs.append(
            ShardJob(
                registry=drill.registry,
                keys=keys,
                journal_path=drill.journal.target,
                run_id=run_id,
                scenario=drill.scenario,
                vantage=drill.vantage,
                live=drill.live,
                lang=drill.lang,
                seed=drill.seed,
                pacing=drill.pacing,
                text=spec.text,
                subject=spec.subject,
                step=spec.name,
                timeout=spec.timeout,
                slo=spec.slo,
                repeat=repeat,
                interval=interval,
                settings={k: settings[k] for k in keys if k in settings},
                outages=tuple(drill.outages()),
            )
        )

    def arrived(delivery: Delivery) -> None:  # committed by its worker already
        result.deliveries.append(delivery)
        if watch is not None:
            watch(delivery)
        if drill.on_delivery is not None:
            drill.on_delivery(delivery)

    stats = await run_shards(jobs, arrived)
    paced = result.pacing
    paced.pacing = f"{paced.pacing} ×{len(jobs)} workers"
    paced.sends, paced.waited = int(stats["sends"]), int(stats["waited"])
    paced.waited_total_s = float(stats["waited_total_s"])
    paced.waited_max_s = float(stats["waited_max_s"])
    lowest = stats.get("rate_lowest")
    paced.rate_lowest = None if lowest is None else float(lowest)


async def run_shards(
    jobs: Sequence[ShardJob], on_delivery: Callable[[Delivery], None]
) -> dict[str, float | int | str]:
    """Run *jobs* in worker processes; *on_delivery* for each committed delivery as it
    comes. Returns the merged pacing stats. Raises if a worker failed."""
    from drills.core import interrupt

    ctx = multiprocessing.get_context("spawn")  # never fork a process with a running loop
    loop = asyncio.get_running_loop()
    procs: list[Any] = []
    conns: list[Connection] = []
    finished: dict[int, dict[str, Any]] = {}
    failed: list[str] = []
    all_done = loop.create_future()

    def readable(i: int, conn: Connection) -> None:
        try:
            while conn.poll():
                kind, payload = conn.recv()
                if kind == "delivery":
                    on_delivery(payload)
                elif kind == "done":
                    finished[i] = payload
                elif kind == "error":
                    failed.append(str(payload))
                    finished[i] = {}
        except (EOFError, OSError):
            loop.remove_reader(conn.fileno())
            finished.setdefault(i, {})
            if procs[i].exitcode not in (None, 0):
                failed.append(f"worker {i} exited with {procs[i].exitcode}")
        if len(finished) == len(jobs) and not all_done.done():
            all_done.set_result(None)

    told = ""
    try:
        for i, job in enumerate(jobs):
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(job, theirs), name=f"tsunagari-shard-{i}")
            proc.start()
            theirs.close()
            procs.append(proc)
            conns.append(ours)
            loop.add_reader(ours.fileno(), readable, i, ours)
        while not all_done.done():
            if interrupt.stopping() and not told:
                told = _tell(conns, STOP)
            await asyncio.wait([all_done], timeout=0.05)
    except asyncio.CancelledError:
        _tell(conns, ABORT)  # the parent aborts the step: the workers cut theirs
        deadline = time.monotonic() + 5.0
        while not all_done.done() and time.monotonic() < deadline:
            await asyncio.wait([all_done], timeout=0.05)
        raise
    finally:
        for conn in conns:
            loop.remove_reader(conn.fileno())
        for proc in procs:
            proc.join(5.0)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for conn in conns:
            conn.close()
    if failed:
        raise HarnessError(
            "訓練のワーカープロセスが失敗しました / a drill worker process failed: "
            + "; ".join(failed)
        )
    merged: dict[str, Any] = {"sends": 0, "waited": 0, "waited_total_s": 0.0, "waited_max_s": 0.0}
    for stats in finished.values():
        for key in ("sends", "waited", "waited_total_s"):
            merged[key] += stats.get(key, 0)
        merged["waited_max_s"] = max(merged["waited_max_s"], stats.get("waited_max_s", 0.0))
        low = stats.get("rate_lowest")
        if low is not None:  # the lowest any worker's governor went
            merged["rate_lowest"] = min(merged.get("rate_lowest") or low, low)
    return merged


def _tell(conns: Sequence[Connection], word: str) -> str:
    for conn in conns:
        try:
            conn.send(word)
        except (BrokenPipeError, OSError):
            pass
    return word


def _worker(job: ShardJob, conn: Connection) -> None:
    """A worker process: its shard of the step, each committed delivery sent to the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        stats = evloop.run(_work(job, conn))  # the drill's kind of loop (drills.core.evloop)
        conn.send(("done", stats))
    except BaseException as exc:  # reported to the parent, by class and (redacted) text
        conn.send(("error", redact(f"{exc.__class__.__name__}: {exc}")))
    finally:
        conn.close()


async def _work(job: ShardJob, conn: Connection) -> dict[str, Any]:
    from drills.core import interrupt
    from drills.core.journal import open_journal
    from drills.core.runner import Drill

    stop = interrupt.Stop(grace_s=-1)
    interrupt._CURRENT = stop  # this process's stop state, set by the parent's word
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()

    def heard() -> None:
        try:
            while conn.poll():
                word = conn.recv()
                if word in (STOP, ABORT) and stop.signal is None:
                    stop.signal = "SIGTERM"
                if word == ABORT and task is not None:
                    task.cancel()
        except (EOFError, OSError):  # the parent is gone: send nothing more
            stop.signal = stop.signal or "SIGTERM"
            loop.remove_reader(conn.fileno())

    loop.add_reader(conn.fileno(), heard)
    journal = open_journal(job.journal_path)
    drill = Drill(
        job.registry,
        journal,
        scenario=job.scenario,
        vantage=job.vantage,
        live=job.live,
        lang=job.lang,
        seed=job.seed,
        pacing=job.pacing,
        workers=1,
        on_delivery=lambda d: conn.send(("delivery", d)),
    )
    drill.run_id, drill.begun = job.run_id, True  # the parent's run, already in the journal
    drill.sims.settings.update(job.settings)  # the parent's simulators, over loopback
    drill.drill_outages = list(job.outages)
    keys = set(job.keys)
    try:
        step = await drill.broadcast(
            job.text,
            [t for t in job.registry.targets() if t.key in keys],
            timeout=job.timeout,
            slo=job.slo,
            repeat=job.repeat,
            interval=job.interval,
            step=job.step,
            subject=job.subject,
        )
    except asyncio.CancelledError:
        return {}
    finally:
        drill.begun = False  # the run is the parent's to finish
        await drill.finish()
        loop.remove_reader(conn.fileno())
        journal.close()
    return step.pacing.to_data()
