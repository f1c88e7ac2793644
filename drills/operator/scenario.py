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
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from drills.core.background import BackgroundLoop
from drills.core.events import OutageEvent, RequirementEvent, RequirementVerdict
from drills.core.journal import Journal
from drills.core.registry import Registry, Target, load_registry
from drills.core.requirements import (
    HarnessFault,
    RequirementMissed,
    ScenarioMistake,
    Status,
    Verdict,
    caller_location,
    located,
    parse_seconds,
)
from drills.core.runner import StepResult
from drills.operator.context import DrillContext, Reporter
from drills.operator.results import Acknowledgement, Broadcast, Fallback, RollCall
from drills.steps import selection
from drills.steps.acknowledgement import run_acknowledgement
from drills.steps.answers import AnswerDesk, parse_simulated
from drills.steps.fallback import run_fallback
from drills.steps.rollcall import run_roll_call

if TYPE_CHECKING:
    from drills.steps.surge import Surge
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


class ScenarioDrill:
    """The ``drill`` fixture: steps that send marked messages, and what must hold after them."""

    def __init__(
        self,
        ctx: DrillContext,
        *,
        reporter: Reporter | None = None,
        deadline: float | None = None,
        name: str = "drill",
    ) -> None:
        self.ctx, self.reporter, self.deadline, self.name = ctx, reporter, deadline, name
        self._steps = 0

    # ------------------------------------------------------------------ helpers

    def _step_name(self, given: str | None) -> str:
        self._steps += 1
        if given:
            return given
        return self.name if self._steps == 1 else f"{self.name}#{self._steps}"

    def _targets(self, channels: Any, to: Any) -> list[Target]:
        reg = self.ctx.registry
        try:
            chosen = selection.targets(reg, self.ctx.selection, channels=channels, to=to)
        except selection.NothingSelected:
            self._skip(
                "この手順の対象団体は選択されていません",
                "no selected municipality is addressed by this step",
            )
        self._check_live(chosen)
        return chosen

    def _skip(self, ja: str, en: str) -> NoReturn:
        """The run's --municipality selection leaves this step nobody: skip the test."""
        why = ja if self.ctx.lang == "ja" else en
        pytest.skip(f"--municipality {' '.join(self.ctx.selection)}: {why}")

    def _check_live(self, targets: Sequence[Target]) -> None:
        """Refuse a live channel without --live before the step starts (the runner's one check)."""
        from drills.core.runner import check_live  # already loaded: StepResult comes from there

        check_live(targets, live=self.ctx.live)

    def _wait(self, value: Any, what: str) -> float:
        if value is not None:
            return parse_seconds(value, what)
        if self.deadline is not None:
            return self.deadline
        raise ScenarioMistake(
            f'{what}= を指定するか、シナリオに @pytest.mark.deadline("60s") を付けてください',
            f'give {what}= or mark the scenario with @pytest.mark.deadline("60s")',
        )

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

    # ------------------------------------------------------------------ steps

    @located
    def preflight(
        self,
        *,
        channels: str | Sequence[str] | None = None,
        to: str | Sequence[str] | None = None,
        timeout: Any = "10s",
        stop: bool = True,
        step: str | None = None,
    ) -> list[PreflightReport]:
        """Check every selected channel without sending (login, read access, TLS).

        The step is journalled (a ``preflight`` event). If a channel cannot work and
        ``stop`` is true, the drill stops here, before anything is sent, with a message
        naming each such channel and the phase that failed (:class:`PreflightFailed`).
        """
        from drills.core.events import PreflightChannel, PreflightEvent
        from drills.core.preflight import PreflightFailed

        targets = self._targets(channels, to)
        limit = parse_seconds(timeout, "timeout")
        name = step or "preflight"  # not numbered: the steps after it keep their names
        checked = self.ctx.loop.run(self.ctx.drill.preflight(targets, timeout=limit))
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

    @located
    def broadcast(
        self,
        text: str,
        *,
        channels: str | Sequence[str] | None = None,
        to: str | Sequence[str] | None = None,
        timeout: Any = None,
        subject: str = "",
        repeat: int = 1,
        step: str | None = None,
    ) -> Broadcast:
        """Send *text* to every selected municipality over *channels*; confirm each at the far end.

        ``channels``: channel ids or kinds (default: all); ``to``: codes, names or tags
        (default: every selected municipality); ``timeout``: how long to look for each
        message (default: the scenario's deadline, else twice the slowest channel SLO).
        """
        targets = self._targets(channels, to)
        if timeout is not None:
            wait = parse_seconds(timeout, "timeout")
        elif self.deadline is not None:
            wait = self.deadline
        else:
            wait = max(1.0, 2 * max(t.channel.slo.latency for t in targets))
        name = self._step_name(step)
        result = self.ctx.loop.run(
            self.ctx.drill.broadcast(
                text, targets, timeout=wait, step=name, subject=subject, repeat=repeat
            )
        )
        return Broadcast(self, result)

    @located
    def fallback(
        self,
        text: str,
        *,
        order: Sequence[str],
        to: str | Sequence[str] | None = None,
        within: Any = None,
        escalate_after: Any = None,
        subject: str = "",
        step: str | None = None,
    ) -> Fallback:
        """Try the channels in *order* per municipality until one is seen at the far end.

        Each channel gets ``escalate_after`` (default ``within / len(order)``); measured is
        the time to the first successful channel. Every channel tried is watched until
        ``within`` ends: an arrival after the chain moved on is recorded (``late``), not lost.
        """
        names = selection.channel_names(self.ctx.registry, order) or []
        targets = self._targets(names, to)
        limit = self._wait(within, "within")
        escalate = (
            parse_seconds(escalate_after, "escalate_after")
            if escalate_after
            else limit / len(names)
        )
        plan: list[tuple[Any, list[Target]]] = []
        for t in targets:
            if not plan or plan[-1][0] is not t.municipality:
                plan.append((t.municipality, []))
            plan[-1][1].append(t)
        name = self._step_name(step)
        result = self.ctx.loop.run(
            run_fallback(
                self.ctx.drill,
                text,
                plan,
                order=names,
                within=limit,
                escalate_after=escalate,
                step=name,
                subject=subject,
            )
        )
        self.ctx.record(result.event())
        return Fallback(self, result)

    @contextlib.contextmanager
    def outage(
        self, *channels: str, to: str | Sequence[str] | None = None
    ) -> Iterator[list[Target]]:
        """Inside the ``with`` block, *channels* are taken away (simulated: the far end goes
        down; live: the channel is skipped). They come back when the block ends."""
        where = caller_location()
        try:
            targets = self._targets(list(channels), to)
        except ScenarioMistake as exc:
            exc.where = exc.where or where
            raise
        drill = self.ctx.drill
        started = time.time()
        for t in targets:
            self.ctx.loop.run(drill.take_down(t))
        try:
            yield targets
        finally:
            for t in targets:
                self.ctx.loop.run(drill.restore(t))
            self.ctx.record(
                OutageEvent(
                    channels=tuple(t.key for t in targets), started_at=started, ended_at=time.time()
                )
            )

    @located
    def roll_call(
        self,
        text: str,
        *,
        room: str,
        to: str | Sequence[str] | None = None,
        within: Any = None,
        simulated: Any = None,
        step: str | None = None,
    ) -> RollCall:
        """Post *text* to the shared *room* (``"東京都/chat"``); every other selected
        municipality must answer there. ``simulated`` sets how simulated municipalities answer."""
        reg = self.ctx.registry
        room_target = selection.resolve_room(reg, room)
        self._check_live([room_target])
        chosen = selection.municipalities(reg, self.ctx.selection, to)
        participants = [m for m in chosen if m.code != room_target.municipality.code]
        if not participants and self.ctx.selection:
            self._skip(
                "点呼に応答する団体は選択されていません",
                "no selected municipality takes part in this roll call",
            )
        if not participants:
            raise ScenarioMistake(
                "点呼に応答する団体がありません（共有ルームの団体以外を選んでください）",
                "nobody to answer the roll call (select municipalities other than the room's)",
            )
        limit = self._wait(within, "within")
        answers = parse_simulated(simulated)
        name = self._step_name(step)
        desk = AnswerDesk(self.ctx.stream(f"answers:{name}"), reg.marker)
        result = self.ctx.loop.run(
            run_roll_call(
                self.ctx.drill,
                room_target,
                participants,
                text,
                within=limit,
                simulated=answers,
                desk=desk,
                step=name,
            )
        )
        self.ctx.record(result.event())
        return RollCall(self, result)

    @located
    def acknowledge(
        self,
        text: str,
        *,
        channels: str | Sequence[str] | None = None,
        to: str | Sequence[str] | None = None,
        window: Any = None,
        staff: int = 1,
        simulated: Any = None,
        subject: str = "",
        step: str | None = None,
    ) -> Acknowledgement:
        """Ask recipients to answer; collect answers per channel for *window* seconds.

        ``staff``: people reading each channel (the denominator of the response rate).
        """
        if not isinstance(staff, int) or isinstance(staff, bool) or staff < 1:
            raise ScenarioMistake(
                f"staff= は 1 以上の整数です: {staff!r}",
                f"staff= must be an integer ≥ 1: {staff!r}",
            )
        targets = self._targets(channels, to)
        limit = self._wait(window, "window")
        answers = parse_simulated(simulated)
        name = self._step_name(step)
        desk = AnswerDesk(self.ctx.stream(f"answers:{name}"), self.ctx.registry.marker)
        result = self.ctx.loop.run(
            run_acknowledgement(
                self.ctx.drill,
                targets,
                text,
                window=limit,
                staff=staff,
                simulated=answers,
                desk=desk,
                taps=self.ctx.taps,
                step=name,
                subject=subject,
            )
        )
        self.ctx.record(result.event())
        return Acknowledgement(self, result)

    @located
    def surge(
        self,
        rates: Sequence[float],
        *,
        channels: str | Sequence[str],
        to: str | Sequence[str] | None = None,
        each: Any = "10s",
        rest: Any = None,
        users: int | None = None,
        probes: int = 3,
        timeout: Any = None,
        processes: int = 1,
        step: str | None = None,
    ) -> Surge:
        """Everybody at once: Locust loads each of *channels* at *rates* msg/s, ``each`` per
        step after ``rest`` at rest, while ``probes`` drill messages per step measure delivery.
        ``expect(holds_up_to="50/s")``: no breaking point up to that load. See drills.steps.surge.
        """
        from drills.steps.surge import surge_step

        return surge_step(
            self, rates, channels=channels, to=to, each=each, rest=rest, users=users,
            probes=probes, timeout=timeout, processes=processes, name=self._step_name(step),
        )  # fmt: skip


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
    loop = BackgroundLoop()
    try:
        jr = loop.call(Journal, journal)
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
