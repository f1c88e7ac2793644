"""The surge step of the scenario API: ``drill.surge(...)`` in a scenario file.

    def test_災害当日の輻輳(drill):
        surge = drill.surge([10, 50, 100], channels="chat", to="足立区", each="20s")
        surge.expect(holds_up_to="50/s")   # the SLO held at every step up to 50 msg/s

Each addressed channel is surged in turn (one surge at a time, so their loads
do not mix), with its probes alongside (:func:`drills.surge.runner.run_surge`).
Every channel is checked against the guard *before* the first surge starts.
``expect`` judges each municipality: met when none of its channels broke its
SLO at or below ``holds_up_to`` (default: the peak of the ramp); *harness*
when the surge was stopped or no probe could be counted.

>>> parse_rate("50/s"), parse_rate(20), parse_rate("30 通/秒")
(50.0, 20.0, 30.0)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from drills.core.events import SurgeEvent
from drills.core.requirements import Row, ScenarioMistake, Status, Verdict, located
from drills.steps.outcome import StepDrill, StepOutcome
from drills.surge.plan import SurgePlan
from drills.surge.process import Topology
from drills.surge.runner import SurgeResult, run_surge

if TYPE_CHECKING:
    from drills.core.registry import Target

__all__ = ["Surge", "SurgeOrder", "SurgeStep", "parse_rate", "run_surge_step"]

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/s|msg/s|通/秒|/秒)?\s*$")


def parse_rate(value: Any, what: str = "holds_up_to") -> float:
    """Messages per second from ``50``, ``"50/s"``, ``"50 msg/s"`` or ``"50 通/秒"``."""
    match = _RATE.match(str(value)) if not isinstance(value, bool) else None
    if match is None or float(match.group(1)) <= 0:
        raise ScenarioMistake(
            f'{what}= の負荷 {value!r} を読めません（例: "50/s" または 50）',
            f'cannot read the rate {what}={value!r} (write e.g. "50/s" or 50)',
        )
    return float(match.group(1))


@dataclass
class SurgeStep:
    """The surges of one scenario step, one per addressed channel, in order."""

    step: str
    plan: SurgePlan
    results: list[tuple[Target, SurgeResult]]

    def events(self) -> list[SurgeEvent]:
        """The ``surge`` events the surges journalled, typed (:class:`drills.core.events.SurgeEvent`).

        Raises :class:`drills.core.events.EventError` if one was written in a shape the readers
        cannot read (a bug of the writer, caught where it is made).
        """
        return [SurgeEvent.from_data(r.event) for _, r in self.results if r.event]

    def verdicts(self, holds_up_to: float | None = None) -> list[Verdict]:
        """Per municipality: did every surged channel hold its SLO up to *holds_up_to* msg/s?"""
        limit = self.plan.peak_rate if holds_up_to is None else holds_up_to
        grouped: dict[str, list[tuple[Target, SurgeResult]]] = {}
        for target, result in self.results:
            grouped.setdefault(target.municipality.code, []).append((target, result))
        out = []
        for items in grouped.values():
            muni = items[0][0].municipality
            rows, statuses = [], []
            for target, result in items:
                status, row = _judge(target, result, limit)
                statuses.append(status)
                rows.append(row)
            status = (
                Status.HARNESS
                if Status.HARNESS in statuses
                else Status.MISSED
                if Status.MISSED in statuses
                else Status.MET
            )
            out.append(
                Verdict(
                    muni.code,
                    muni.name,
                    muni.name_en,
                    status,
                    f"{limit:g} 通/秒 まで SLO を満たすこと",
                    f"the SLO must hold up to {limit:g} msg/s",
                    tuple(rows),
                    {"holds_up_to": limit},
                )
            )
        return out


def _judge(target: Target, result: SurgeResult, limit: float) -> tuple[Status, Row]:
    channel, kind = target.channel.id, target.channel.kind
    bp = result.breaking_point
    if bp is not None and bp.step.rate <= limit:
        what = "平常時" if bp.step.at_rest else f"{bp.step.rate:g} 通/秒"
        what_en = "at rest" if bp.step.at_rest else f"at {bp.step.rate:g} msg/s"
        reason = f"{what}で SLO 未達（破綻点） / SLO missed {what_en} (breaking point)"
        return Status.MISSED, Row(channel, kind, "late", reason, bp.probes.latency(95))
    judged = [p for p in result.curve.points if p.step.rate <= limit]
    if result.stopped or any(p.holds is None for p in judged):
        reason = (
            "サージが途中で止まりました / the surge was stopped"
            if result.stopped
            else "計測メッセージを数えられない段があります / a step had no countable probe"
        )
        return Status.HARNESS, Row(channel, kind, "error", reason)
    worst = max((p.probes.latency(95) or 0.0 for p in judged), default=None)
    reason = f"{limit:g} 通/秒 まで SLO 達成 / SLO held up to {limit:g} msg/s"
    return Status.MET, Row(channel, kind, "delivered", reason, worst)


class Surge(StepOutcome):
    """What ``drill.surge`` returns: the surges (``results``), and ``expect``."""

    result: SurgeStep

    @property
    def results(self) -> list[SurgeResult]:
        return [r for _, r in self.result.results]

    @located
    def expect(self, holds_up_to: Any = None) -> None:
        """Each municipality: no channel broke its SLO at or below *holds_up_to* msg/s."""
        limit = parse_rate(holds_up_to) if holds_up_to is not None else None
        self._drill._judge(self.result.verdicts(limit), self.result.step)


@dataclass(frozen=True)
class SurgeOrder:
    """A surge step's arguments, read and checked (:meth:`drills.operator.step_api.StepAPI.surge`):
    the channels, the ramp, how it runs."""

    targets: list[Target]
    plan: SurgePlan
    topology: Topology
    probes: int  # drill messages per step of the ramp
    timeout: float | None


def run_surge_step(drill: StepDrill, name: str, order: SurgeOrder) -> Surge:
    """Run a checked surge step for :meth:`drills.operator.scenario.ScenarioDrill.surge`."""
    results = []
    for target in order.targets:
        result = drill.ctx.loop.run(
            run_surge(
                drill.ctx.drill,
                target,
                order.plan,
                topology=order.topology,
                probes_per_step=order.probes,
                timeout=order.timeout,
                step=name,
            )
        )
        results.append((target, result))
    surged = SurgeStep(name, order.plan, results)
    surged.events()  # every journalled surge reads back through the typed event
    return Surge(drill, surged)
