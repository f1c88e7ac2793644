"""The operator's API: a drill as plain, synchronous steps and requirements.

In a scenario file (pytest provides ``drill``)::

    def test_全職員へ参集指示(drill):
        step = drill.broadcast("全職員は参集してください。", channels=["chat", "mail", "sms"])
        step.expect(reached="99%", within="60s")

Steps: :meth:`ScenarioDrill.broadcast`, :meth:`~ScenarioDrill.fallback`,
:meth:`~ScenarioDrill.outage` (a ``with`` block), :meth:`~ScenarioDrill.roll_call`,
:meth:`~ScenarioDrill.acknowledge`, :meth:`~ScenarioDrill.surge`. Each returns a result
whose ``expect(...)`` judges every municipality; under pytest each municipality
is its own subtest.

Every step runs on one background event loop (:mod:`drills.core.background`), so a
step addressed to 62 municipalities × 3 channels takes about as long as its
slowest delivery. Outside pytest, :func:`open_drill` gives the same API.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from drills.core.background import BackgroundLoop
from drills.core.events import OutageEvent, RequirementEvent, RequirementVerdict
from drills.core.journal import open_journal
from drills.core.registry import Municipality, Registry, Target, load_registry
from drills.core.requirements import (
    HarnessFault,
    RequirementMissed,
    Status,
    Verdict,
    caller_location,
)
from drills.core.runner import StepResult
from drills.core.sharing import check_sharing, said
from drills.operator.context import DrillContext, Reporter
from drills.operator.results import Acknowledgement, Broadcast, Fallback, RollCall
from drills.operator.step_api import StepAPI
from drills.steps import selection
from drills.steps.acknowledgement import run_acknowledgement
from drills.steps.answers import AnswerDesk, SimulatedAnswers
from drills.steps.fallback import run_fallback
from drills.steps.rollcall import run_roll_call

if TYPE_CHECKING:
    from drills.steps.surge import Surge, SurgeOrder
    from probes.preflight import PreflightReport

__all__ = [
    "Acknowledgement",
    "Broadcast",
    "DrillContext",
    "Fallback",
    "Reporter",
    "RollCall",
    "ScenarioDrill",
    "open_drill",
]


class ScenarioDrill(StepAPI[Broadcast, Fallback, RollCall, Acknowledgement, "Surge"]):
    """The ``drill`` fixture: steps that send marked messages, and what must hold after them.

    Each step's arguments, targets and checks are :class:`~drills.operator.step_api.StepAPI`'s
    (the same as a dry run's); here each checked step is sent.
    """

    ctx: DrillContext

    def __init__(
        self,
        ctx: DrillContext,
        *,
        reporter: Reporter | None = None,
        deadline: float | None = None,
        name: str = "drill",
    ) -> None:
        super().__init__(deadline=deadline, name=name)
        self.ctx, self.reporter = ctx, reporter

    # ------------------------------------------------------------------ helpers

    def _slo_share(self, step: StepResult) -> float:
        keys = {(d.municipality_code, d.channel_id) for d in step.deliveries}
        shares = [
            c.slo.reachability
            for m in self.ctx.registry.municipalities
            for c in m.channels
            if (m.code, c.id) in keys
        ]
        return min(shares, default=1.0)

    def _judge(self, verdicts: list[Verdict], step: str) -> None:
        where = caller_location()
        self.ctx.record(
            RequirementEvent(
                step=step,
                where=where,
                verdicts=tuple(
                    RequirementVerdict(v.code, v.status.value, v.summary_en) for v in verdicts
                ),
            )
        )
        if any(v.status is Status.HARNESS for v in verdicts):
            self.ctx.failed = (
                True  # the run could not be judged; a missed requirement is still a finished run
            )
        if self.reporter is not None:
            # The subtest is named after the municipality (and the step, if the test has several).
            self.reporter.report(verdicts, where, "" if step == self.name else step)
            return
        bad = [v for v in verdicts if not v.met]
        if any(v.status is Status.HARNESS for v in bad):
            raise HarnessFault(bad, where, self.ctx.lang)
        if bad:
            raise RequirementMissed(bad, where, self.ctx.lang)

    # ------------------------------------------------------------------ the steps, sent

    def _preflight(
        self, name: str, targets: list[Target], *, timeout: float, stop: bool
    ) -> list[PreflightReport]:
        """Check each channel (nothing sent), journal a ``preflight`` event, stop if one cannot work."""
        from drills.core.events import PreflightChannel, PreflightEvent
        from drills.core.preflight import PreflightFailed

        checked = self.ctx.loop.run(self.ctx.drill.preflight(targets, timeout=timeout))
        reports = [c.report for c in checked]
        failing = [r for r in reports if not r.ok]
        self.ctx.record(
            PreflightEvent(
                step=name,
                stopped=bool(failing) and stop,
                channels=tuple(
                    PreflightChannel(
                        channel=r.target,
                        kind=r.kind,
                        ok=r.ok,
                        skipped=r.skipped is not None,
                        phase=r.failure.name if r.failure else None,
                        phase_class=r.failure.phase if r.failure else None,
                        reason=str(r.reason or r.skipped or ""),
                        elapsed_s=r.elapsed_s,
                        cert_days_left=r.min_cert_days(),
                    )
                    for r in reports
                ),
            )
        )
        if failing and stop:
            raise PreflightFailed(failing, caller_location())
        return reports

    def _broadcast(
        self, name: str, text: str, targets: list[Target], *, timeout: float, subject: str,
        repeat: int,
    ) -> Broadcast:  # fmt: skip
        result = self.ctx.loop.run(
            self.ctx.drill.broadcast(
                text, targets, timeout=timeout, step=name, subject=subject, repeat=repeat
            )
        )
        return Broadcast(self, result)

    def _fallback(
        self, name: str, text: str, chains: list[tuple[Municipality, list[Target]]], *,
        order: list[str], within: float, escalate_after: float, subject: str,
    ) -> Fallback:  # fmt: skip
        result = self.ctx.loop.run(
            run_fallback(
                self.ctx.drill,
                text,
                chains,
                order=order,
                within=within,
                escalate_after=escalate_after,
                step=name,
                subject=subject,
            )
        )
        self.ctx.record(result.event())
        return Fallback(self, result)

    @contextlib.contextmanager
    def _take_away(self, targets: list[Target]) -> Iterator[None]:
        drill = self.ctx.drill
        started = time.time()
        for t in targets:
            self.ctx.loop.run(drill.take_down(t))
        try:
            yield
        finally:
            for t in targets:
                self.ctx.loop.run(drill.restore(t))
            self.ctx.record(
                OutageEvent(
                    channels=tuple(t.key for t in targets), started_at=started, ended_at=time.time()
                )
            )

    def _roll_call(
        self, name: str, text: str, room: Target, participants: list[Municipality], *,
        within: float, simulated: SimulatedAnswers,
    ) -> RollCall:  # fmt: skip
        desk = AnswerDesk(self.ctx.stream(f"answers:{name}"), self.ctx.registry.marker)
        result = self.ctx.loop.run(
            run_roll_call(
                self.ctx.drill,
                room,
                participants,
                text,
                within=within,
                simulated=simulated,
                desk=desk,
                step=name,
            )
        )
        self.ctx.record(result.event())
        return RollCall(self, result)

    def _acknowledge(
        self, name: str, text: str, targets: list[Target], *, window: float, staff: int,
        simulated: SimulatedAnswers, subject: str,
    ) -> Acknowledgement:  # fmt: skip
        desk = AnswerDesk(self.ctx.stream(f"answers:{name}"), self.ctx.registry.marker)
        result = self.ctx.loop.run(
            run_acknowledgement(
                self.ctx.drill,
                targets,
                text,
                window=window,
                staff=staff,
                simulated=simulated,
                desk=desk,
                taps=self.ctx.taps,
                step=name,
                subject=subject,
            )
        )
        self.ctx.record(result.event())
        return Acknowledgement(self, result)

    def _surge(self, name: str, order: SurgeOrder) -> Surge:
        from drills.steps.surge import run_surge_step

        return run_surge_step(self, name, order)


@contextlib.contextmanager
def open_drill(
    registry: str | Registry,
    journal: str = ":memory:",
    *,
    scenario: str = "",
    vantage: str = "default",
    live: bool = False,
    lang: str = "ja",
    seed: int | None = None,
    select: Sequence[str] = (),
    deadline: float | None = None,
) -> Iterator[ScenarioDrill]:
    """The operator API outside pytest (scripts, benchmarks); a miss raises RequirementMissed."""
    reg = load_registry(registry, check_secrets=False) if isinstance(registry, str) else registry
    selection.check_selection(reg, select)
    if isinstance(registry, str):  # the selected municipalities' secrets only
        reg.check_secrets(reg.targets(select))
    # what the drilled channels share: errors refuse (RegistryError), the rest is said once
    for finding, problem in check_sharing(reg, reg.targets(select)):
        print(said(finding, problem, lang), file=sys.stderr)
    loop = BackgroundLoop()
    try:
        jr = loop.call(open_journal, journal)  # a file or a postgresql:// URL
        ctx = DrillContext(
            loop,
            reg,
            jr,
            scenario=scenario,
            vantage=vantage,
            live=live,
            lang=lang,
            seed=seed,
            selection=select,
        )
        try:
            yield ScenarioDrill(ctx, deadline=deadline, name=scenario or "drill")
        finally:
            ctx.close()
            loop.call(jr.close)
    finally:
        loop.close()
