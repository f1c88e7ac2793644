"""A surge step: Locust loads one channel while the drill's own probes keep measuring it.

    async with Drill(registry, journal, scenario="災害当日の輻輳") as drill:
        target = drill.targets(["131211"], kinds=["webhook"])[0]
        plan = SurgePlan.ramp(start=10, peak=200, steps=5, step_s=20, rest_s=10)
        result = await run_surge(drill, target, plan)
        print(result.breaking_point)          # the first step whose probes missed the SLO

What happens, in order:

1. the guard (:func:`~drills.surge.plan.check_surge_allowed`) — refused here,
   before any process starts or any message leaves;
2. the channel's probe is opened (its observer parked) and its endpoint
   resolved — for a ``sim:`` channel, the simulator's bound address and token;
3. Locust starts in its own processes (:mod:`drills.surge.process`); when its
   users are up it begins the ramp clock and reports each step;
4. at each step, after a short settling time, the probes send marked drill
   messages over the same channel (``Drill.broadcast``) and confirm them at
   the far end — the delivered-latency curve, step by step;
5. at the end (or on ``stop``: Ctrl-C / SIGTERM in the CLI) the load is idled,
   every Locust process reports, the stats and the curve are journalled as a
   ``surge`` event, and a :class:`SurgeResult` is returned.
"""

from __future__ import annotations

import asyncio
import math
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drills.surge.config import SurgeConfig
from drills.surge.curve import CurvePoint, SurgeCurve
from drills.surge.endpoint import endpoint_for
from drills.surge.plan import RampStep, SurgePlan, SurgeRefused, check_surge_allowed
from drills.surge.process import LocustRun, OnProgress, Topology
from drills.surge.stats import LoadStats, by_step

if TYPE_CHECKING:
    from drills.core.journal import Journal
    from drills.core.registry import Target
    from drills.core.runner import Drill
    from probes.base import Probe

__all__ = ["LOAD_TEXT", "PROBE_TEXT", "SurgeResult", "record_surge", "run_surge", "surge"]

PROBE_TEXT = (
    "サージ訓練: 負荷下の着信確認です（返信不要） / "
    "surge drill: delivery check under load (no reply needed)"
)
LOAD_TEXT = (
    "サージ訓練の負荷メッセージです（返信不要） / surge drill load message (no reply needed)"
)


@dataclass
class SurgeResult:
    """What one surge measured (also journalled as the ``surge`` event, :attr:`event`)."""

    run_id: str
    target_key: str
    plan: SurgePlan
    topology: Topology
    curve: SurgeCurve
    totals: LoadStats
    workers: list[dict[str, Any]]
    stop_reason: str  # completed | stopped | cap
    event: dict[str, Any] = field(default_factory=dict)

    @property
    def breaking_point(self) -> CurvePoint | None:
        return self.curve.breaking_point

    @property
    def stopped(self) -> bool:
        return self.stop_reason != "completed"


async def surge(
    drill: Drill,
    target: Target,
    rates: Sequence[float],
    *,
    step_s: float = 10.0,
    rest_s: float | None = None,
    users: int | None = None,
    **options: Any,
) -> SurgeResult:
    """Surge step: Locust puts *rates* (messages/s, one step each) on *target* while
    *drill*'s probes keep measuring delivery; see :func:`run_surge` for ``options``
    (``topology``, ``probes_per_step``, ``timeout``, ``slo``, ``stop``).

        result = await surge(drill, target, [10, 50, 100], step_s=20)
        assert result.breaking_point is None
    """
    plan = SurgePlan.of(rates, step_s, step_s if rest_s is None else rest_s, users)
    return await run_surge(drill, target, plan, **options)


async def run_surge(
    drill: Drill,
    target: Target,
    plan: SurgePlan,
    *,
    topology: Topology | None = None,
    probes_per_step: int = 3,
    timeout: float | None = None,
    slo: float | None = None,
    stop: asyncio.Event | None = None,
    on_progress: OnProgress | None = None,
    load_text: str = LOAD_TEXT,
    probe_text: str = PROBE_TEXT,
    step: str | None = None,
) -> SurgeResult:
    """Surge *target* along *plan* while probing it; see the module docstring.

    ``timeout`` bounds each probe (default: three times the latency SLO, at
    least 10 s); ``slo`` overrides the channel's latency SLO (seconds);
    ``step`` names the probe steps in the journal (``<step>.<index> (<rate>)``,
    default ``surge <n>``).
    Raises :class:`~drills.core.errors.DrillSafetyError` before starting anything
    if the surge is not allowed, :class:`~drills.core.errors.HarnessError` if
    Locust fails.
    """
    topology = topology or Topology()
    check_surge_allowed(target, plan, live=drill.live)
    drill.check_safe([target])
    run_id = drill.run_id or drill.start()
    slo_latency = slo if slo is not None else target.channel.slo.latency
    probe_timeout = timeout if timeout is not None else max(3.0 * slo_latency, 10.0)
    probe = await drill.probe(target)  # observer parked before the load begins
    _check_paid(target, probe, plan, probes_per_step)
    endpoint = endpoint_for(target.channel.kind, probe.settings)
    seq = sum(1 for _ in drill.journal.events(run_id, "surge")) + 1
    workdir = Path(tempfile.mkdtemp(prefix="tsunagari-surge-"))
    config = SurgeConfig(
        load=endpoint.load,
        endpoint=endpoint.params,
        marker=drill.registry.marker,
        text=load_text,
        plan=plan.to_dict(),
        progress=str(workdir / "progress.jsonl"),
    )
    locust = LocustRun(config, endpoint.host, topology, workdir, endpoint.secrets)
    probing: list[asyncio.Task[Any]] = []
    prefix = step or f"surge {seq}"
    step_names = {s.index: f"{prefix}.{s.index} ({s.label('en')})" for s in plan.steps}

    async def probe_step(step: RampStep) -> None:
        settle = min(1.0, step.duration_s * 0.25)
        await asyncio.sleep(settle)
        interval = (step.duration_s - settle) / max(probes_per_step, 1)
        await drill.broadcast(
            probe_text,
            [target],
            timeout=probe_timeout,
            slo=slo_latency,
            repeat=probes_per_step,
            interval=interval,
            step=step_names[step.index],
        )

    def on_step(step: RampStep) -> None:
        probing.append(asyncio.create_task(probe_step(step)))

    try:
        follow = await locust.drive(
            plan,
            stop=stop,
            on_progress=on_progress,
            on_step=on_step if probes_per_step > 0 else None,
        )
        entries = locust.stats()
        if follow.stop_reason != "completed":
            await _settle(probing, grace=2.0)
        failed = [r for r in await asyncio.gather(*probing, return_exceptions=True) if _fault(r)]
        if failed:
            raise failed[0]
    except BaseException:
        for task in probing:
            task.cancel()
        await asyncio.gather(*probing, return_exceptions=True)
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    deliveries = drill.journal.deliveries(run_id)
    per_step = {
        index: [
            d
            for d in deliveries
            if d.step == name
            and d.channel_id == target.channel.id
            and d.municipality_code == target.municipality.code
        ]
        for index, name in step_names.items()
    }
    load = by_step(entries)
    ran = {s.index: follow.ran_s(s.index) or 0.0 for s in plan.steps}
    curve = SurgeCurve.build(
        plan.steps, load, per_step, slo_latency, target.channel.slo.reachability, ran
    )
    totals = LoadStats.merge(load.values())
    result = SurgeResult(
        run_id, target.key, plan, topology, curve, totals, follow.tallies, follow.stop_reason
    )
    record_surge(
        drill.journal,
        result,
        target,
        seq=seq,
        step=prefix,
        scenario=drill.scenario,
        vantage=drill.vantage,
        live=drill.live,
        started_at=follow.started_wall,
        steps_run=len(follow.steps_seen),
    )
    return result


def _check_paid(target: Target, probe: Probe, plan: SurgePlan, probes_per_step: int) -> None:
    """A live SMS surge costs money per message: load and probes must fit the channel's caps.

    Each load message goes to *one* registered number (round robin); each probe
    message to every number. Refused (:class:`SurgeRefused`) before Locust starts.
    """
    from probes.base import Priced

    if target.channel.simulated or not isinstance(probe, Priced):
        return
    from probes.sms.budget import CostCapExceeded, plan_cost

    recipients = max(1, len(probe.recipients()))
    load = sum(s.rate * s.duration_s for s in plan.steps)
    per_recipient = math.ceil(load / recipients) + probes_per_step * len(plan.steps)
    try:
        plan_cost([(probe, per_recipient)])
    except CostCapExceeded as exc:
        raise SurgeRefused([(v.ja, v.en) for v in exc.violations]) from exc


async def _settle(tasks: list[asyncio.Task[Any]], grace: float) -> None:
    """After a stop: let probes in flight finish for *grace* seconds, cancel the rest."""
    pending = [t for t in tasks if not t.done()]
    if pending:
        await asyncio.wait(pending, timeout=grace)
    for task in pending:
        task.cancel()


def _fault(outcome: object) -> bool:
    """A probe step that raised (not merely cancelled after a stop): a harness fault."""
    return isinstance(outcome, BaseException) and not isinstance(outcome, asyncio.CancelledError)


def record_surge(
    journal: Journal,
    result: SurgeResult,
    target: Target,
    *,
    seq: int,
    step: str,
    scenario: str,
    vantage: str,
    live: bool,
    started_at: float | None,
    steps_run: int,
) -> dict[str, Any]:
    """Journal *result* as the run's ``surge`` event (also kept as ``result.event``); return it.

    The event's shape is documented in the README (section surge); the metrics
    and the scorecard read it back (:mod:`drills.surge.summary`).
    """
    plan = result.plan
    load_s = sum(p.ran_s for p in result.curve.points if not p.step.at_rest)
    result.event = {
        "seq": seq,
        "step": step,
        "scenario": scenario,
        "vantage": vantage,
        "target": target.key,
        "municipality_code": target.municipality.code,
        "municipality_name": target.municipality.name,
        "channel_id": target.channel.id,
        "kind": target.channel.kind,
        "live": live,
        "topology": result.topology.to_dict(),
        "plan": {**plan.to_dict(), "peak_rate": plan.peak_rate, "duration_s": plan.duration_s},
        "started_at": started_at,
        "stop_reason": result.stop_reason,
        "steps_run": steps_run,
        "totals": result.totals.summary(load_s if load_s > 0 else None),
        "workers": result.workers,
        **result.curve.to_dict(),
    }
    from drills.core.events import SurgeEvent

    # Written through the typed event (with its schema version), as every step event is.
    result.event = SurgeEvent.from_data(result.event).to_data()
    journal.record_event(result.run_id, "surge", result.event)
    return result.event
