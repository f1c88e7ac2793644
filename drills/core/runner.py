"""The runner: fan a drill step out over municipality × channel, concurrently.

    async with Drill(registry, journal, scenario="首都直下地震") as drill:
        step = await drill.broadcast("全職員は参集してください", timeout=30)
        print(step.reachability())

Every delivery is journalled as it completes: committed within 5 ms, with the
others of those 5 ms (:mod:`drills.core.journal.group`), and passed on — to the
step result, ``watch``, ``on_delivery`` — only once committed. A step's wall
time is about its slowest delivery, not the sum: deliveries run concurrently,
bounded by ``concurrency``, and leave at the pace of :mod:`drills.core.pacing`. Channels with a ``sim:`` block run against local
simulators; any other channel is *live* and needs ``live=True`` — without it the
whole step is refused before a single message leaves. The journal run is begun
lazily, with the first record: a drill refused before anything was sent leaves
no (empty) run behind.

What each delivery's record says — outcome, evidence, the send instant, the error
bound, ground truth — is :mod:`drills.core.attempt`.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import TYPE_CHECKING, Any

# The drills' HTTP client comes with the runner (every HTTP kind shares the drill's
# session, ProbeEnv.http): imported here, with the rest of the harness, not in the
# middle of a drill — the first channel kind a registry names imports it otherwise,
# ~0.1 s of CPU and ~110 modules while the registry is being read. (The commands
# import the runner only when they run a drill: `--help`, cron and reports do not.)
import aiohttp  # noqa: F401

from drills.core import gcpolicy, interrupt
from drills.core.attempt import StepSpec, attempt
from drills.core.delivery import Delivery
from drills.core.errors import DrillSafetyError, ScenarioError
from drills.core.journal import GroupCommit, Journal, RunStatus, new_run_id
from drills.core.live import LiveChannelRefused, check_live, live_channels
from drills.core.loop_lag import LagMonitor
from drills.core.pacing import Pacer, Pacing, PacingStats
from drills.core.registry import Registry, Target
from drills.core.shard import broadcast_sharded, workers_from_env
from drills.core.simulators import SimulatorPool
from drills.core.step import StepResult
from drills.core.truth import in_outage
from probes.base import (
    DrillMessage,
    Priced,
    Probe,
    ProbeEnv,
    new_token,
)
from probes.sim.ledger import Outage

if TYPE_CHECKING:
    from drills.core.preflight import Checked

__all__ = [
    "Drill",
    "LiveChannelRefused",
    "SimulatorPool",
    "StepResult",
    "check_live",
    "live_channels",
]

OnDelivery = Callable[[Delivery], None]


async def _gather_in_slices(jobs: list[Coroutine[Any, Any, Any]], per_turn: int = 64) -> None:
    """``gather(*jobs)``, the tasks started *per_turn* a loop turn.

    A 1,000-delivery step would otherwise run 1,000 first steps in one turn of the
    event loop (~10 ms it holds every webhook and reply behind it).
    """
    tasks: list[asyncio.Task[Any]] = []
    try:
        for start in range(0, len(jobs), per_turn):
            if start:
                await asyncio.sleep(0)
            tasks.extend(asyncio.ensure_future(job) for job in jobs[start : start + per_turn])
    except BaseException:  # cancelled while starting them: nothing is left running
        for task in tasks:
            task.cancel()
        for job in jobs[len(tasks) :]:
            job.close()
        raise
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        # One delivery failed (a full disk, …): gather leaves its siblings running — they
        # would go on sending after the run is closed, and fail unheard at shutdown. No
        # delivery outlives its step: the rest are cancelled and awaited. (A cancelled
        # step's gather has cancelled and awaited them already.)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


@functools.cache
def _priced(cls: type) -> bool:
    """Is a probe of *cls* :class:`Priced`? (Once per class: a protocol check costs ~10 µs.)"""
    return issubclass(cls, Priced)


class Drill:
    """One drill run: opens the journal record, runs steps, closes the record."""

    def __init__(
        self,
        registry: Registry,
        journal: Journal,
        *,
        scenario: str = "",
        vantage: str = "default",
        live: bool = False,
        concurrency: int = 512,
        lang: str = "ja",
        seed: int | None = None,
        on_delivery: OnDelivery | None = None,
        meta: dict[str, Any] | None = None,
        pacing: Pacing | None = None,
        workers: int | None = None,
    ) -> None:
        self.registry = registry
        self.journal = journal
        # Deliveries are committed a few milliseconds' worth at a time, each acknowledged
        # (and only then passed on) once committed: drills.core.journal.group.
        self.commits = GroupCommit(journal)
        self.scenario = scenario
        self.vantage = vantage
        self.live = live
        self.lang = lang
        self.on_delivery = on_delivery
        self.meta = meta or {}
        self.env = ProbeEnv(live=live, lang=lang, vantage=vantage)
        self.seed = seed
        self.sims = SimulatorPool(seed)
        self._limit = asyncio.Semaphore(concurrency)
        # How fast sends may leave (drills.core.pacing); TSUNAGARI_PACE, else the default.
        self.pacing = pacing if pacing is not None else Pacing.from_env()
        self.lag = LagMonitor()
        self._frozen = False  # gc.freeze() done (the first step), undone by finish()
        self._pacer = Pacer(self.pacing, lag=self.lag.current, halted=interrupt.stopping)
        # Processes a big step fans out over (drills.core.shard); TSUNAGARI_WORKERS, else 1.
        self.workers = workers if workers is not None else workers_from_env()
        self._probes: dict[str, Probe] = {}
        self._open_failures: dict[str, BaseException] = {}
        self._open_s: dict[str, float] = {}  # target key → seconds its probe took to open
        # One opening per channel: concurrent first uses (two steps, a gather over one
        # channel) wait for the same probe instead of each building their own.
        self._opening: dict[str, asyncio.Future[Probe]] = {}
        self._skipped: set[str] = set()
        self.run_id: str | None = None
        self.begun = False  # is the run in the journal yet (it is begun by the first record)
        self.status: str | None = None  # how finish() recorded the run (None: not yet)
        self.steps: list[StepResult] = []
        self.drill_outages: list[Outage] = []  # what the drill itself took down (monotonic)
        self._down_since: dict[str, float] = {}

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Drill:
        self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        await self.finish(RunStatus.FINISHED if exc_type is None else RunStatus.FAILED)

    def start(self) -> str:
        """Name the run; the journal gets it with the first record (:meth:`begin`)."""
        if self.run_id is None:
            self.run_id = new_run_id()
        return self.run_id

    def begin(self) -> str:
        """Put the run into the journal (once); every writer calls this before writing."""
        run_id = self.start()
        if not self.begun:
            meta = {"registry": self.registry.path, "live": self.live, **self.meta}
            self.journal.begin_run(self.scenario, self.vantage, meta, run_id=run_id)
            self.begun = True
        return run_id

    async def finish(self, status: str = RunStatus.FINISHED) -> None:
        self.lag.stop()
        self.commits.flush()  # nothing completed stays unwritten, whatever happens below
        try:
            # All at once: a thousand watchers stop in one turn of the loop, not one a turn.
            closing = [probe.close() for probe in self._probes.values()]
            for failed in await asyncio.gather(*closing, return_exceptions=True):
                if isinstance(failed, BaseException) and not isinstance(failed, Exception):
                    raise failed  # a cancellation or an interrupt is not a probe's fault
            self._probes.clear()
            await self.env.aclose()
            await self.sims.stop()
        finally:
            self.commits.flush()  # anything completed while closing
        if self._frozen:
            gcpolicy.release()
            self._frozen = False
        now = time.monotonic()
        for key in list(self._down_since):
            self.drill_outages.append(Outage(key, self._down_since.pop(key), now))
        if interrupt.stopping() and status in (RunStatus.FINISHED, RunStatus.FAILED):
            status = RunStatus.INTERRUPTED  # stopped by a signal: not a complete drill
        self.status = status
        if self.run_id is not None and self.begun:
            self.journal.finish_run(self.run_id, status)

    def stream(self, name: str) -> random.Random:
        """An independent random stream for *name* (simulated answers, …) from the seed.

        Like :meth:`probes.sim.base.Simulator.stream`: no two users of one ``--seed``
        share a stream, so simulated answers never mirror a simulator's loss draws.
        """
        if self.seed is None:
            return random.Random()
        return random.Random(f"tsunagari:{self.seed}:drill:{name}")

    # ------------------------------------------------------------------ targets

    def targets(self, select: Iterable[str] = (), kinds: Iterable[str] = ()) -> list[Target]:
        return self.registry.targets(select, kinds)

    def check_safe(self, targets: Sequence[Target]) -> None:
        """Refuse (before anything is sent) a live channel without ``live``: :func:`check_live`."""
        check_live(targets, live=self.live)

    async def take_down(self, target: Target) -> None:
        """Outage: a simulated channel's far end goes down; a live channel is skipped.

        The interval is kept in :attr:`drill_outages`: a message sent into it and
        not seen is ``drill_outage``, never the channel's ``lost``.
        """
        if target.channel.simulated:
            await self.sims.settings_for(target)
            self.sims.simulator_of(target).set_outage(target.key, True)
        else:
            self._skipped.add(target.key)
        self._down_since.setdefault(target.key, time.monotonic())

    async def restore(self, target: Target) -> None:
        if target.channel.simulated:
            self.sims.simulator_of(target).set_outage(target.key, False)
        self._skipped.discard(target.key)
        start = self._down_since.pop(target.key, None)
        if start is not None:
            self.drill_outages.append(Outage(target.key, start, time.monotonic()))

    def taken_away(self, target: Target) -> bool:
        """Is *target* a live channel an outage step took away (it is skipped)?"""
        return target.key in self._skipped

    def outages(self) -> list[Outage]:
        """The drill's own outages so far, closed and still open (for :mod:`drills.core.truth`)."""
        return self.drill_outages + [Outage(k, s) for k, s in self._down_since.items()]

    def _in_drill_outage(self, key: str, start: float, end: float) -> bool:
        return in_outage(self.outages(), key, start, end)

    async def probe(self, target: Target) -> Probe:
        """The (opened) probe of *target*, built and opened once on first use.

        Concurrent first uses share one opening: a channel never gets two probes
        (two connections, two SMS budgets), and nobody is handed a probe that is
        still opening.
        """
        got = self._ready_or_opening(target)
        return await asyncio.shield(got) if isinstance(got, asyncio.Future) else got

    async def _probes_of(self, targets: Sequence[Target]) -> list[Probe]:
        """:meth:`probe` of every target, opened concurrently (no task per target to wait)."""
        got = [self._ready_or_opening(target) for target in targets]
        waits = [g for g in got if isinstance(g, asyncio.Future)]
        if waits:  # shielded like probe(): a cancelled step never cancels a shared opening
            await asyncio.shield(asyncio.gather(*waits))
        return [g.result() if isinstance(g, asyncio.Future) else g for g in got]

    def _ready_or_opening(self, target: Target) -> Probe | asyncio.Future[Probe]:
        """*target*'s opened probe, or the one opening of it (started here on first use)."""
        probe = self._probes.get(target.key)
        if probe is not None and target.key not in self._opening:
            return probe
        opening = self._opening.get(target.key)
        if opening is None:
            opening = asyncio.ensure_future(self._open_probe(target))
            self._opening[target.key] = opening
            opening.add_done_callback(functools.partial(self._opened, target.key))
        return opening

    def _opened(self, key: str, _done: asyncio.Future[Probe]) -> None:
        self._opening.pop(key, None)

    async def _build_probe(self, target: Target) -> Probe:
        """A probe of *target* on this drill's simulators and HTTP session (not opened)."""
        channel = target.channel
        cls = channel.probe_class()
        if channel.simulated:
            settings = cls.Settings.model_validate(await self.sims.settings_for(target))
        else:
            settings = channel.settings
        return cls(target.key, settings, self.env)

    async def _open_probe(self, target: Target) -> Probe:
        probe = await self._build_probe(target)
        self._probes[target.key] = probe
        opening = time.monotonic()
        try:
            await probe.open()
        except Exception as exc:
            self._open_failures[target.key] = exc
        self._open_s[target.key] = time.monotonic() - opening
        return probe

    # ------------------------------------------------------------------ steps

    async def preflight(
        self, targets: Sequence[Target] | None = None, *, timeout: float = 10.0
    ) -> list[Checked]:
        """Check *targets* (default: all) without sending anything (:mod:`drills.core.preflight`).

        Nothing is journalled here and nothing is refused: the scenario API
        (``drill.preflight()``) records the step and stops the drill on a failure.
        """
        from drills.core.preflight import PreflightRunner

        interrupt.check()
        chosen = list(self.registry.targets() if targets is None else targets)
        if not chosen:
            raise ScenarioError("a step needs at least one channel (対象チャネルがありません)")
        runner = PreflightRunner(make_probe=self._build_probe, min_interval_s=0.0)
        return await runner.check_all(chosen, timeout_s=timeout)

    async def broadcast(
        self,
        text: str,
        targets: Sequence[Target] | None = None,
        *,
        timeout: float = 60.0,
        slo: float | None = None,
        repeat: int = 1,
        interval: float = 0.0,
        step: str = "broadcast",
        subject: str = "",
        watch: OnDelivery | None = None,
    ) -> StepResult:
        """Send *text* to every recipient of every target; confirm each at the far end.

        ``slo`` (seconds) overrides each channel's latency SLO for this step.
        ``repeat`` sends that many messages per recipient, ``interval`` apart.
        ``watch`` is called with each delivery of this step as it completes.
        """
        interrupt.check()  # after SIGTERM/SIGINT no step starts
        self.start()
        self.lag.start()
        chosen = list(self.registry.targets() if targets is None else targets)
        if not chosen:
            raise ScenarioError("a step needs at least one channel (対象チャネルがありません)")
        self.check_safe(chosen)
        result = StepResult(step, started_mono=time.monotonic())
        result.pacing = PacingStats(self.pacing.describe())
        active = [t for t in chosen if t.key not in self._skipped]
        spec = StepSpec(step, text, subject, timeout, slo)
        if self._shardable(active):
            await broadcast_sharded(self, spec, active, repeat, interval, result, watch)
            result.finished_mono = time.monotonic()
            self.steps.append(result)
            return result
        # The collector on the loop's clock from the probes' opening on: no full collection
        # mid-step, nor while 10,000 probes open (drills.core.gcpolicy).
        with gcpolicy.step():
            probes = await self._probes_of(active)
            self._check_costs(probes, text, subject, repeat)
            if not self._frozen:
                # Start-up is done (modules, registry, probes): the collector leaves those
                # objects alone (drills.core.gcpolicy); finish() hands them back.
                gcpolicy.after_startup()
                self._frozen = True
            jobs = [
                self._deliver(spec, target, probe, recipient, i * interval, result, watch)
                for target, probe in zip(active, probes, strict=True)
                for recipient in probe.recipients()
                for i in range(repeat)
            ]
            await _gather_in_slices(jobs)
        result.finished_mono = time.monotonic()
        self.steps.append(result)
        return result

    def _shardable(self, active: Sequence[Target]) -> bool:
        """Does this step fan out over worker processes? (:mod:`drills.core.shard`)"""
        return (
            self.workers > 1
            and self.journal.path != ":memory:"
            and len({t.municipality.code for t in active}) > 1
            and not any(_priced(t.channel.probe_class()) for t in active)
        )

    def _check_costs(self, probes: Sequence[Probe], text: str, subject: str, repeat: int) -> None:
        """Refuse the whole step, before the first send, if a paid channel's cap would be crossed."""
        priced = [p for p in probes if _priced(type(p)) and isinstance(p, Priced)]
        if not priced:
            return
        from probes.sms.budget import CostCapExceeded, plan_cost

        sample = DrillMessage(
            token=new_token(), text=text, marker=self.registry.marker, subject=subject
        )
        try:
            plan_cost([(p, [sample] * repeat) for p in priced])
        except CostCapExceeded as exc:
            raise DrillSafetyError(
                f"送信上限を超えるため訓練を中止しました（何も送信していません） / refused before sending: {exc.reason}"
            ) from exc

    async def _deliver(
        self,
        spec: StepSpec,
        target: Target,
        probe: Probe,
        recipient: str | None,
        delay: float,
        result: StepResult,
        watch: OnDelivery | None = None,
    ) -> Delivery | None:
        if delay > 0:
            await asyncio.sleep(delay)
        if interrupt.stopping():  # SIGTERM/SIGINT: nothing new is sent (drills.core.interrupt)
            return None
        queued = time.monotonic()  # the runner wants to send: queue_s counts from here
        async with self._limit:
            delivery = await attempt(self, spec, target, probe, recipient, queued, result.pacing)
        if delivery is None:  # a signal came while it waited for its turn: nothing was sent
            return None
        self.begin()
        await self.commits.commit(delivery)  # committed before anybody hears of it
        result.deliveries.append(delivery)
        if watch is not None:
            watch(delivery)
        if self.on_delivery is not None:
            self.on_delivery(delivery)
        return delivery
