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

What a delivery record says (the outcomes and evidence in :mod:`drills.core.delivery`):

- A recipient no observer covers (``probe.observes(recipient)`` is False) is
  ``accepted``, evidence ``accepted`` — never ``lost``.
- A sighting's evidence (``seen``/``receipt``) is the record's evidence.
- Not seen within the timeout while ``probe.observer_trouble()`` names a reason:
  ``error`` ("the drill could not look"), not ``lost``.
- A send that ran out of time while the provider kept saying "slow down"
  (``probe.throttling(token)``): ``rejected``, with the count and the last code.
- Not seen, and sent into an outage the drill itself made (:meth:`Drill.take_down`
  … :meth:`Drill.restore`, overlapping ``[sent, watched until]``):
  ``drill_outage``. A message that arrived anyway stays ``delivered``/``late``.
- Every record not delivered carries ``extra["reason_code"]``: the probe's own code
  (:func:`drills.core.reasons.fault_code`) or the harness's (``not_seen``,
  ``unanswered``, ``rate_limited``, ``observer_trouble``, ``drill_outage``,
  ``interrupted``, ``over_slo`` …); :mod:`drills.core.taxonomy` turns it into a stage
  and a cause.

*When a message was sent.* ``sent_mono`` is the instant it left
(:mod:`probes.sendmark`: the write of the HTTP request carrying its token, the
start of the SMTP transaction; ``extra["sent_how"]`` says which, ``"call"`` when
the send path could not say and the instant ``send`` was called stands in).
Waiting for a pacing slot (:mod:`drills.core.pacing`), a connection or a busy
loop is ``extra["queue_s"]`` (from the moment the runner wanted to send), never
latency: a drill does not report a channel slower because the harness was busy.

*Error bound and loop lag.* ``error_bound_s`` = the observer's own bound for
the sighting + the event loop's lag at sighting (+ its lag at send when
``sent_how`` is ``"call"``: such a send may have left later). The lag is
measured by a :class:`drills.core.loop_lag.LagMonitor` on the drill's loop: a 10 ms
timer notes how late it ran; the lag at an instant is the lateness of the first
tick at or after it (the runner waits for that tick before it writes the
record). ``extra["loop_lag_s"]`` keeps the lag part. When the SLO lies within
``[latency - error_bound_s, latency]`` the record is flagged
``extra["slo_edge"] = True`` (the outcome follows the measured latency).

*Ground truth.* Every record carries the monotonic send instant
``extra["sent_mono"]`` and, when not confirmed, the instant the runner stopped
watching ``extra["watched_until_mono"]``, so :func:`drills.core.truth.compare` can
hold it against the simulators' ledgers exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from drills.core import interrupt
from drills.core.delivery import Delivery, Evidence, Outcome, classify
from drills.core.errors import DrillSafetyError, ScenarioError
from drills.core.journal import GroupCommit, Journal, RunStatus, new_run_id
from drills.core.live import LiveChannelRefused, check_live, live_channels
from drills.core.loop_lag import LagMonitor
from drills.core.pacing import Pacer, Pacing, PacingStats
from drills.core.reasons import fault_code as _fault_code
from drills.core.reasons import fault_outcome as _fault_outcome
from drills.core.reasons import unanswered as _unanswered
from drills.core.registry import Registry, Target
from drills.core.shard import broadcast_sharded, workers_from_env
from drills.core.simulators import SimulatorPool
from drills.core.step import StepResult
from drills.core.truth import in_outage
from probes.base import (
    Accepted,
    ChannelUnreachable,
    Clock,
    DrillMessage,
    ExplainsTimeout,
    Priced,
    Probe,
    ProbeEnv,
    Sighting,
    new_token,
)
from probes.sendmark import SendMark
from probes.sendmark import opened as send_marked
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


@functools.cache
def _priced(cls: type) -> bool:
    """Is a probe of *cls* :class:`Priced`? (Once per class: a protocol check costs ~10 µs.)"""
    return issubclass(cls, Priced)


@dataclass(frozen=True)
class _Step:
    """What one broadcast step sends, and how it is judged."""

    name: str
    text: str
    subject: str
    timeout: float
    slo: float | None


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
            for probe in self._probes.values():
                with contextlib.suppress(Exception):
                    await probe.close()
            self._probes.clear()
            await self.env.aclose()
            await self.sims.stop()
        finally:
            self.commits.flush()  # anything completed while closing
        if self._frozen:
            gc.unfreeze()
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
        probe = self._probes.get(target.key)
        if probe is not None and target.key not in self._opening:
            return probe
        opening = self._opening.get(target.key)
        if opening is None:
            opening = asyncio.ensure_future(self._open_probe(target))
            self._opening[target.key] = opening
            opening.add_done_callback(functools.partial(self._opened, target.key))
        return await asyncio.shield(opening)

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
        spec = _Step(step, text, subject, timeout, slo)
        if self._shardable(active):
            await broadcast_sharded(self, spec, active, repeat, interval, result, watch)
            result.finished_mono = time.monotonic()
            self.steps.append(result)
            return result
        probes = await asyncio.gather(*(self.probe(t) for t in active))
        self._check_costs(probes, text, subject, repeat)
        if not self._frozen:
            # Start-up is done (modules, registry, probes): the collector leaves those
            # objects alone while deliveries run (full collections stay short); finish()
            # hands them back, so a process running many drills keeps nothing for good.
            gc.freeze()
            self._frozen = True
        jobs = [
            self._deliver(spec, target, probe, recipient, i * interval, result, watch)
            for target, probe in zip(active, probes, strict=True)
            for recipient in probe.recipients()
            for i in range(repeat)
        ]
        await asyncio.gather(*jobs)
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
        spec: _Step,
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
            delivery = await self._attempt(spec, target, probe, recipient, queued, result.pacing)
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

    async def _attempt(
        self,
        spec: _Step,
        target: Target,
        probe: Probe,
        recipient: str | None,
        queued: float,
        pacing: PacingStats | None = None,
    ) -> Delivery | None:
        run_id = self.start()
        step, timeout, slo = spec.name, spec.timeout, spec.slo
        slo_s = slo if slo is not None else target.channel.slo.latency
        message = DrillMessage(
            token=new_token(),
            text=spec.text,
            marker=self.registry.marker,
            subject=spec.subject,
            recipient=recipient,
            meta={"run_id": run_id, "step": step, "municipality": target.municipality.code},
        )
        base: dict[str, Any] = {
            "run_id": run_id,
            "step": step,
            "municipality_code": target.municipality.code,
            "municipality_name": target.municipality.name,
            "channel_id": target.channel.id,
            "kind": target.channel.kind,
            "token": message.token,
            "recipient": recipient,
            "slo_latency_s": slo_s,
            "vantage": self.vantage,
            "scenario": self.scenario,
        }
        failed = self._open_failures.get(target.key)
        wall_minus_mono = Clock.wall() - Clock.monotonic()
        mark = SendMark(message.token, queued)
        sent_mono = Clock.monotonic()  # until the message has left: now (nothing was sent)
        extra: dict[str, Any] = {}

        def when_sent() -> None:
            """Put the instant the message left (or the fallback) into the record."""
            nonlocal sent_mono
            sent_mono, how = mark.sent_instant()
            extra["sent_mono"] = sent_mono
            extra["sent_how"] = how
            extra["queue_s"] = round(max(0.0, sent_mono - queued), 6)
            base["sent_at"] = wall_minus_mono + sent_mono

        def unseen(outcome: Outcome, reason: str, code: str) -> Delivery:
            """A record of a message not confirmed: the drill's own outage wins over lost.

            *code* is its reason code (``extra["reason_code"]``, :mod:`drills.core.taxonomy`).
            """
            until = Clock.monotonic()
            extra["watched_until_mono"] = until
            extra["reason_code"] = code
            if outcome is Outcome.LOST and self._in_drill_outage(target.key, sent_mono, until):
                outcome = Outcome.DRILL_OUTAGE
                extra["reason_code"] = "drill_outage"
                reason = (
                    "訓練で停止させたチャネルへの送信（チャネルの障害ではありません） / sent into "
                    f"an outage the drill itself made (not the channel's fault): {reason}"
                )
            return Delivery(**base, outcome=outcome, reason=reason, extra=extra)

        when_sent()
        if failed is not None:
            outcome, reason = _fault_outcome(failed)
            ja, sep, en = reason.partition(" / ")
            at_open = f"{ja}（開始時） / {en} (open)" if sep else f"{reason} (open)"
            return unseen(outcome, at_open, _fault_code(failed))
        observing: asyncio.Future[Sighting] | None = None
        if probe.confirms() and probe.observes(recipient):
            observing = asyncio.ensure_future(probe.observe(message))
        accepted: Accepted | None = None
        try:
            # The observer was started outside the mark: only the send's own tasks see it.
            with send_marked(mark):
                async with self._pacer.slot(pacing):
                    if interrupt.stopping():  # stopped while it waited its turn: never sent
                        if observing is not None:
                            observing.cancel()
                        return None
                    mark.called = Clock.monotonic()
                    async with asyncio.timeout(timeout):  # in this task: no task per send
                        accepted = await probe.send(message)
        except BaseException as exc:
            if observing is not None:
                observing.cancel()
            if mark.called is None and isinstance(exc, asyncio.CancelledError):
                if interrupt.stopping():  # cut while it waited for its turn: never sent
                    return None
                raise
            when_sent()
            if isinstance(exc, asyncio.CancelledError):
                if interrupt.stopping():  # cut by a signal: sent, fate unknown, said so
                    return unseen(Outcome.ERROR, interrupt.INTERRUPTED_REASON, "interrupted")
                raise
            throttled = probe.throttling(message.token) if isinstance(exc, TimeoutError) else None
            if throttled is not None and throttled.count > 0:
                base["throttled"] = throttled.count
                return unseen(
                    Outcome.REJECTED,
                    f"レート制限で {throttled.count} 回拒否され、{timeout:g} 秒以内に受け付けられず"
                    f"（{throttled.code}） / rate limited {throttled.count} times "
                    f"({throttled.code}) until the step's {timeout:g} s timeout",
                    "rate_limited",
                )
            if isinstance(exc, ChannelUnreachable | TimeoutError):  # say who saw what, how long
                waited = Clock.monotonic() - sent_mono
                opened = self._open_s.get(target.key, 0.0)
                code = _fault_code(exc) if isinstance(exc, ChannelUnreachable) else "unanswered"
                return unseen(Outcome.LOST, _unanswered(exc, probe, waited, opened), code)
            outcome, reason = _fault_outcome(exc, sending=True)
            return unseen(outcome, reason, _fault_code(exc, sending=True))
        when_sent()
        accept_latency = accepted.at - sent_mono
        base.update(
            accepted_at=base["sent_at"] + accept_latency,
            accept_latency_s=accept_latency,
            throttled=accepted.throttled,
        )
        if accepted.provider_id:
            extra["provider_id"] = accepted.provider_id
        if accepted.segments is not None:
            extra["segments"] = accepted.segments
        if accepted.detail:
            extra["accepted_detail"] = accepted.detail
        if observing is None:
            unconfirmed = (
                "観測対象外の宛先・着信未確認 / no observer covers this recipient, arrival not confirmed"
                if probe.confirms()
                else "受付のみ・着信未確認 / accepted only, arrival not confirmable"
            )
            return Delivery(
                **base,
                outcome=Outcome.ACCEPTED,
                reason=unconfirmed,
                extra=extra,
                evidence=Evidence.ACCEPTED,
            )
        remaining = timeout - (Clock.monotonic() - sent_mono)
        try:
            sighting = await asyncio.wait_for(observing, max(remaining, 0.0))
        except TimeoutError:
            trouble = probe.observer_trouble()
            if trouble is not None:
                ja, sep, en = trouble.partition(" / ")
                return unseen(
                    Outcome.ERROR,
                    f"訓練側が着信を確認できませんでした（{timeout:g} 秒待機）: {ja} / the drill "
                    f"could not look (waited {timeout:g} s): {en if sep else ja}",
                    "observer_trouble",
                )
            told = probe.timeout_reason(message) if isinstance(probe, ExplainsTimeout) else None
            return unseen(
                Outcome.LOST,
                str(
                    told or f"{timeout:g} 秒以内に着信を確認できず / not seen within {timeout:g} s"
                ),
                "not_seen",
            )
        except asyncio.CancelledError:
            if interrupt.stopping():
                return unseen(Outcome.ERROR, interrupt.INTERRUPTED_REASON, "interrupted")
            raise
        except BaseException as exc:
            outcome, reason = _fault_outcome(exc)
            return unseen(outcome, reason, _fault_code(exc))
        return await self._sighted(base, extra, sighting, sent_mono, slo_s)

    async def _sighted(
        self,
        base: dict[str, Any],
        extra: dict[str, Any],
        sighting: Sighting,
        sent_mono: float,
        slo_s: float,
    ) -> Delivery:
        """The record of a confirmed arrival: latency, evidence, bound with loop lag, SLO edge."""
        latency = sighting.at - sent_mono
        await self.lag.settle(sighting.at)
        lag = self.lag.lag_around(sighting.at)
        if extra.get("sent_how") == "call":  # not stamped at the write: it may have left later
            lag += self.lag.lag_at(sent_mono)
        bound = sighting.error_bound_s + lag
        extra.update(sighting.extra)
        extra["loop_lag_s"] = round(lag, 6)
        if sighting.detail:
            extra["seen_detail"] = sighting.detail
        if latency - bound <= slo_s <= latency:  # the true latency may be on either side
            extra["slo_edge"] = True
        if latency > slo_s:
            extra["reason_code"] = "over_slo"
        evidence = Evidence(sighting.evidence)
        return Delivery(
            **base,
            outcome=classify(latency, slo_s),
            reason="" if latency <= slo_s else f"SLO {slo_s:g} 秒超過 / over the {slo_s:g} s SLO",
            delivered_at=base["sent_at"] + latency,
            latency_s=latency,
            error_bound_s=bound,
            extra=extra,
            evidence=evidence,
        )
