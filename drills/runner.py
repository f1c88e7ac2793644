"""The runner: fan a drill step out over municipality × channel, concurrently.

    async with Drill(registry, journal, scenario="首都直下地震") as drill:
        step = await drill.broadcast("全職員は参集してください", timeout=30)
        print(step.reachability())

Every delivery is journalled the moment it completes. A step's wall time is
about its slowest delivery, not the sum: deliveries run concurrently, bounded
by ``concurrency``. Channels with a ``sim:`` block run against local
simulators; any other channel is *live* and needs ``live=True`` — without it the
whole step is refused before a single message leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from drills.delivery import Delivery, Outcome, classify
from drills.errors import DrillSafetyError, ScenarioError
from drills.journal import Journal, RunStatus
from drills.registry import Registry, Target
from probes.base import (
    Accepted,
    ChannelRejected,
    ChannelUnreachable,
    Clock,
    DrillMessage,
    ObserverFault,
    Probe,
    ProbeEnv,
    Sighting,
    new_token,
)
from probes.sim.base import Simulator

if TYPE_CHECKING:
    from drills.surge.runner import SurgeResult

__all__ = ["Drill", "StepResult"]

OnDelivery = Callable[[Delivery], None]


@dataclass
class StepResult:
    """All deliveries of one step, with the questions operators ask of them."""

    name: str
    deliveries: list[Delivery] = field(default_factory=list)
    started_mono: float = 0.0
    finished_mono: float = 0.0

    @property
    def wall_s(self) -> float:
        return self.finished_mono - self.started_mono

    def counted(self) -> list[Delivery]:
        """Deliveries that say something about the channels (harness errors excluded)."""
        return [d for d in self.deliveries if d.outcome is not Outcome.ERROR]

    def reachability(self, within_s: float | None = None) -> float:
        """Share of counted deliveries confirmed at the far end (within *within_s*)."""
        counted = self.counted()
        if not counted:
            return 0.0
        ok = [
            d
            for d in counted
            if d.outcome.reached and (within_s is None or (d.latency_s or 0.0) <= within_s)
        ]
        return len(ok) / len(counted)

    def missed(self, within_s: float | None = None) -> list[Delivery]:
        return [
            d
            for d in self.deliveries
            if not d.outcome.reached or (within_s is not None and (d.latency_s or 0.0) > within_s)
        ]

    def by_outcome(self) -> dict[Outcome, int]:
        out = dict.fromkeys(Outcome, 0)
        for d in self.deliveries:
            out[d.outcome] += 1
        return out


@dataclass(frozen=True)
class _Step:
    """What one broadcast step sends, and how it is judged."""

    name: str
    text: str
    subject: str
    timeout: float
    slo: float | None


class SimulatorPool:
    """One running simulator per channel kind, started on first use."""

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self.running: dict[str, Simulator] = {}
        self.settings: dict[str, dict[str, Any]] = {}
        self._by_target: dict[str, Simulator] = {}
        self._lock = asyncio.Lock()

    async def settings_for(self, target: Target) -> dict[str, Any]:
        if target.key in self.settings:
            return self.settings[target.key]
        channel = target.channel
        sim_cls = channel.probe_class().simulator()
        if sim_cls is None or channel.sim is None:
            raise ScenarioError(f"channel {target.key} has no simulator")
        name = sim_cls.__module__ + "." + sim_cls.__qualname__
        async with self._lock:  # concurrent first uses must share one simulator
            sim = self.running.get(name)
            if sim is None:
                sim = sim_cls(seed=self.seed)
                await sim.start()
                self.running[name] = sim
        if target.key in self.settings:
            return self.settings[target.key]
        settings = sim.add_channel(target.key, channel.sim, dict(channel.raw_settings))
        self.settings[target.key] = settings
        self._by_target[target.key] = sim
        return settings

    def simulator_of(self, target: Target) -> Simulator:
        return self._by_target[target.key]

    async def stop(self) -> None:
        for sim in self.running.values():
            with contextlib.suppress(Exception):
                await sim.stop()
        self.running.clear()


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
    ) -> None:
        self.registry = registry
        self.journal = journal
        self.scenario = scenario
        self.vantage = vantage
        self.live = live
        self.lang = lang
        self.on_delivery = on_delivery
        self.meta = meta or {}
        self.env = ProbeEnv(live=live, lang=lang, vantage=vantage)
        self.sims = SimulatorPool(seed)
        self._limit = asyncio.Semaphore(concurrency)
        self._probes: dict[str, Probe] = {}
        self._open_failures: dict[str, BaseException] = {}
        self._skipped: set[str] = set()
        self.run_id: str | None = None
        self.steps: list[StepResult] = []

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Drill:
        self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        await self.finish(RunStatus.FINISHED if exc_type is None else RunStatus.FAILED)

    def start(self) -> str:
        meta = {"registry": self.registry.path, "live": self.live, **self.meta}
        self.run_id = self.journal.begin_run(self.scenario, self.vantage, meta)
        return self.run_id

    async def finish(self, status: str = RunStatus.FINISHED) -> None:
        for probe in self._probes.values():
            with contextlib.suppress(Exception):
                await probe.close()
        self._probes.clear()
        await self.env.aclose()
        await self.sims.stop()
        if self.run_id is not None:
            self.journal.finish_run(self.run_id, status)

    # ------------------------------------------------------------------ targets

    def targets(self, select: Iterable[str] = (), kinds: Iterable[str] = ()) -> list[Target]:
        return self.registry.targets(select, kinds)

    def check_safe(self, targets: Sequence[Target]) -> None:
        """Refuse (before anything is sent) a live channel without ``live``."""
        if self.live:
            return
        live = [t.key for t in targets if not t.channel.simulated]
        if live:
            raise DrillSafetyError(
                "live channels need --live (実チャネルへの送信には --live が必要です): "
                + ", ".join(live)
            )

    async def take_down(self, target: Target) -> None:
        """Outage: a simulated channel's far end goes down; a live channel is skipped."""
        if target.channel.simulated:
            await self.sims.settings_for(target)
            self.sims.simulator_of(target).set_outage(target.key, True)
        else:
            self._skipped.add(target.key)

    async def restore(self, target: Target) -> None:
        if target.channel.simulated:
            self.sims.simulator_of(target).set_outage(target.key, False)
        self._skipped.discard(target.key)

    async def probe(self, target: Target) -> Probe:
        """The (opened) probe of *target*, built on first use."""
        probe = self._probes.get(target.key)
        if probe is not None:
            return probe
        channel = target.channel
        cls = channel.probe_class()
        if channel.simulated:
            settings = cls.Settings.model_validate(await self.sims.settings_for(target))
        else:
            settings = channel.settings
        probe = cls(target.key, settings, self.env)
        self._probes[target.key] = probe
        try:
            await probe.open()
        except Exception as exc:
            self._open_failures[target.key] = exc
        return probe

    # ------------------------------------------------------------------ steps

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
    ) -> StepResult:
        """Send *text* to every recipient of every target; confirm each at the far end.

        ``slo`` (seconds) overrides each channel's latency SLO for this step.
        ``repeat`` sends that many messages per recipient, ``interval`` apart.
        """
        if self.run_id is None:
            self.start()
        chosen = list(self.registry.targets() if targets is None else targets)
        if not chosen:
            raise ScenarioError("a step needs at least one channel (対象チャネルがありません)")
        self.check_safe(chosen)
        result = StepResult(step, started_mono=time.monotonic())
        active = [t for t in chosen if t.key not in self._skipped]
        probes = await asyncio.gather(*(self.probe(t) for t in active))
        self._check_costs(probes, text, subject, repeat)
        spec = _Step(step, text, subject, timeout, slo)
        jobs = [
            self._deliver(spec, target, probe, recipient, i * interval, result)
            for target, probe in zip(active, probes, strict=True)
            for recipient in probe.recipients()
            for i in range(repeat)
        ]
        await asyncio.gather(*jobs)
        result.finished_mono = time.monotonic()
        self.steps.append(result)
        return result

    async def surge(
        self,
        target: Target,
        rates: Sequence[float],
        *,
        step_s: float = 10.0,
        rest_s: float | None = None,
        users: int | None = None,
        **options: Any,
    ) -> SurgeResult:
        """Surge step: Locust puts *rates* (messages/s, one step each) on *target* while
        the probes keep measuring delivery; see :func:`drills.surge.runner.run_surge`
        for ``options`` (``topology``, ``probes_per_step``, ``timeout``, ``slo``, ``stop``).

            result = await drill.surge(target, [10, 50, 100], step_s=20)
            assert result.breaking_point is None
        """
        from drills.surge.plan import SurgePlan
        from drills.surge.runner import run_surge

        plan = SurgePlan.of(rates, step_s, step_s if rest_s is None else rest_s, users)
        return await run_surge(self, target, plan, **options)

    def _check_costs(self, probes: Sequence[Probe], text: str, subject: str, repeat: int) -> None:
        """Refuse the whole step, before the first send, if a paid channel's cap would be crossed."""
        priced = [p for p in probes if hasattr(p, "cost_profile")]
        if not priced:
            return
        from probes.sms_budget import CostCapExceeded, plan_cost

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
    ) -> Delivery:
        if delay > 0:
            await asyncio.sleep(delay)
        async with self._limit:
            delivery = await self._attempt(spec, target, probe, recipient)
        self.journal.record(delivery)
        result.deliveries.append(delivery)
        if self.on_delivery is not None:
            self.on_delivery(delivery)
        return delivery

    async def _attempt(
        self, spec: _Step, target: Target, probe: Probe, recipient: str | None
    ) -> Delivery:
        assert self.run_id is not None
        step, timeout, slo = spec.name, spec.timeout, spec.slo
        slo_s = slo if slo is not None else target.channel.slo.latency
        message = DrillMessage(
            token=new_token(),
            text=spec.text,
            marker=self.registry.marker,
            subject=spec.subject,
            recipient=recipient,
            meta={"run_id": self.run_id, "step": step, "municipality": target.municipality.code},
        )
        base: dict[str, Any] = {
            "run_id": self.run_id,
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
        sent_wall = Clock.wall()
        if failed is not None:
            outcome, reason = _fault_outcome(failed)
            return Delivery(**base, outcome=outcome, reason=f"{reason} (open)", sent_at=sent_wall)
        sent_mono = Clock.monotonic()
        observing: asyncio.Future[Sighting] | None = None
        if probe.confirms():
            observing = asyncio.ensure_future(probe.observe(message))
        accepted: Accepted | None = None
        try:
            accepted = await asyncio.wait_for(probe.send(message), timeout)
        except BaseException as exc:
            if observing is not None:
                observing.cancel()
            if isinstance(exc, asyncio.CancelledError):
                raise
            outcome, reason = _fault_outcome(exc, sending=True)
            return Delivery(**base, outcome=outcome, reason=reason, sent_at=sent_wall)
        accept_latency = accepted.at - sent_mono
        base.update(
            sent_at=sent_wall,
            accepted_at=sent_wall + accept_latency,
            accept_latency_s=accept_latency,
            throttled=accepted.throttled,
        )
        extra: dict[str, Any] = {}
        if accepted.provider_id:
            extra["provider_id"] = accepted.provider_id
        if accepted.segments is not None:
            extra["segments"] = accepted.segments
        if accepted.detail:
            extra["accepted_detail"] = accepted.detail
        if observing is None:
            return Delivery(
                **base,
                outcome=Outcome.ACCEPTED,
                reason="受付のみ・着信未確認 / accepted only, arrival not confirmable",
                extra=extra,
            )
        remaining = timeout - (Clock.monotonic() - sent_mono)
        try:
            sighting = await asyncio.wait_for(observing, max(remaining, 0.0))
        except TimeoutError:
            why = getattr(probe, "timeout_reason", None)
            reason = (why(message) if callable(why) else None) or (
                f"{timeout:g} 秒以内に着信を確認できず / not seen within {timeout:g} s"
            )
            return Delivery(**base, outcome=Outcome.LOST, reason=reason, extra=extra)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            outcome, reason = _fault_outcome(exc)
            return Delivery(**base, outcome=outcome, reason=reason, extra=extra)
        latency = sighting.at - sent_mono
        extra.update(sighting.extra)
        if sighting.detail:
            extra["seen_detail"] = sighting.detail
        return Delivery(
            **base,
            outcome=classify(latency, slo_s),
            reason="" if latency <= slo_s else f"SLO {slo_s:g} 秒超過 / over the {slo_s:g} s SLO",
            delivered_at=sent_wall + latency,
            latency_s=latency,
            error_bound_s=sighting.error_bound_s,
            extra=extra,
        )


def _fault_outcome(exc: BaseException, sending: bool = False) -> tuple[Outcome, str]:
    """Map an exception at a channel boundary to (outcome, reason)."""
    if isinstance(exc, ChannelRejected):
        return Outcome.REJECTED, exc.reason
    if isinstance(exc, ChannelUnreachable):
        return Outcome.LOST, exc.reason
    if isinstance(exc, ObserverFault):
        return Outcome.ERROR, f"観測できません / observer failed: {exc.reason}"
    if isinstance(exc, TimeoutError) and sending:
        return Outcome.LOST, "送信がタイムアウト / send timed out"
    return Outcome.ERROR, f"ハーネスの障害 / harness fault: {type(exc).__name__}: {exc}"
