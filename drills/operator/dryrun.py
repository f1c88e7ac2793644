"""A dry run: what a drill *would* send, to whom, at what cost — and nothing sent.

``tsunagari run --dry-run`` (the pytest option ``--dry-run`` / ini ``tsunagari_dry_run``)
runs the scenario files with a ``drill`` whose steps record a :class:`PlannedSend`
per municipality × channel instead of sending: the marker, a token placeholder
(every real message gets its own token), the registered recipients, how many
messages, and for paid channels (:class:`probes.base.Priced`) the segments and
the cost estimate of the same cost guard a real run uses
(:func:`probes.sms.budget.plan_cost`), with whether a cap would refuse it.
``tsunagari demo --dry-run`` plans the demo's one broadcast the same way.
The table and summary line that show the plan are :mod:`drills.operator.dryrun_table`.

A dry run contacts nothing: no probe is opened, no simulator started, no
journal written, no lock taken. The steps are the real run's
(:class:`drills.operator.step_api.StepAPI`), so its checks apply unchanged —
an unknown channel or municipality, a wrong argument, a live channel without
``--live`` are the same scenario errors (exit 2). Step results have no deliveries:
``expect(...)`` is not judged, and scenario code that reads a result
(``step.reachability()``) ends that test as skipped, with the steps before it listed.

    >>> TOKEN_PLACEHOLDER
    'TSG-************'
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from drills.core.registry import Municipality, Registry, Target
from drills.core.requirements import ScenarioMistake
from drills.operator.step_api import StepAPI
from drills.steps.answers import SimulatedAnswers
from probes.base import DrillMessage, Priced, Probe, ProbeEnv, new_token

if TYPE_CHECKING:
    from drills.steps.surge import SurgeOrder
    from probes.preflight import PreflightReport
    from probes.sms.budget import CostProfile

__all__ = [
    "TOKEN_PLACEHOLDER",
    "DryRunContext",
    "DryRunDrill",
    "DryRunNoResults",
    "PlannedSend",
    "PlannedStep",
]

TOKEN_PLACEHOLDER = "TSG-************"
"""Stands for the token each real message gets (one per message, made at send time)."""

_OUTAGE_NOTE = "訓練の停止中のため送信しません / taken away by the drill's outage: not sent"


class DryRunNoResults(ScenarioMistake, AttributeError):
    """Scenario code read a step's results in a dry run: there are none (the test is skipped).

    Also an ``AttributeError``, so ``hasattr(step, "deliveries")`` is simply False."""


@dataclass(frozen=True)
class PlannedSend:
    """What one step would send over one municipality's channel."""

    step: str
    action: str  # preflight, broadcast, fallback, roll_call, acknowledge, surge, outage
    municipality_code: str
    municipality_name: str
    channel_id: str
    kind: str
    live: bool  # would reach a real provider (needs --live)
    recipients: tuple[str, ...]  # registered recipients; "" is the channel itself (a room)
    messages: int  # in total: recipients × repeat (0: nothing is sent, e.g. an outage)
    marker: str
    preview: str  # the message as rendered, token as TOKEN_PLACEHOLDER
    segments: int | None = None  # paid channels only
    cost: float | None = None
    currency: str | None = None
    refused: str = ""  # why the real run would refuse it (an SMS cap), "" if it would not
    note: str = ""  # when it is sent (a fallback's later channel: only if …)

    def to_data(self) -> dict[str, Any]:
        """A JSON-ready record (``would_send`` lines of ``tsunagari run --dry-run``)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v not in (None, "")}


def _rendered(marker: str, text: str, subject: str, kind: str) -> str:
    """The body a probe would send (marker, text, token), the token shown as a placeholder."""
    message = DrillMessage(token=new_token(), text=text, marker=marker, subject=subject)
    body = message.render()
    if kind == "mail":
        body = message.render_subject() + "\n" + body
    return body.replace(message.token, TOKEN_PLACEHOLDER)


class _Spent:
    """A paid channel's profile with what the dry run already planned on it (earlier steps)."""

    def __init__(self, probe: Priced, messages: int, segments: int, *, capped: bool = True):
        self.probe, self.messages, self.segments, self.capped = probe, messages, segments, capped

    def cost_profile(self) -> CostProfile:
        from probes.sms.budget import Caps

        profile = dataclasses.replace(
            self.probe.cost_profile(), spent_messages=self.messages, spent_segments=self.segments
        )
        if not self.capped:  # only the estimate is wanted
            profile = dataclasses.replace(
                profile, caps=Caps(max_messages=2**62, max_segments=2**62)
            )
        return profile


class DryRunContext:
    """A scenario file's dry run: the registry and selection, and the sends planned so far."""

    def __init__(
        self,
        registry: Registry,
        *,
        scenario: str,
        live: bool = False,
        lang: str = "ja",
        selection: Sequence[str] = (),
        vantage: str = "default",
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.registry, self.scenario, self.live, self.lang = registry, scenario, live, lang
        self.selection, self.vantage = tuple(selection), vantage
        self.meta = dict(meta or {})
        self.plan: list[PlannedSend] = []
        self.taken_away: set[str] = set()  # live channels inside an outage block: skipped
        self._probes: dict[str, Probe] = {}
        self._spent: dict[str, tuple[int, int]] = {}
        self.run_id = ""
        self.begun = False  # nothing is journalled

    def probe(self, target: Target) -> Probe:
        """The target's probe, built from the registry and never opened (no I/O)."""
        probe = self._probes.get(target.key)
        if probe is None:
            channel = target.channel
            probe = channel.probe_class()(target.key, channel.settings, ProbeEnv())
            self._probes[target.key] = probe
        return probe

    def add(
        self,
        step: str,
        action: str,
        target: Target,
        text: str,
        *,
        subject: str = "",
        repeat: int = 1,
        note: str = "",
    ) -> PlannedSend:
        """Plan *repeat* messages of *text* to every registered recipient of *target*
        (``repeat=0``: a row that sends nothing, e.g. an outage)."""
        from probes.sms.budget import CostCapExceeded, plan_cost

        probe = self.probe(target)
        channel = target.channel
        recipients = tuple(r or "" for r in probe.recipients())
        skipped = target.key in self.taken_away
        messages = 0 if skipped else len(recipients) * repeat
        marker = self.registry.marker
        row = PlannedSend(
            step=step,
            action=action,
            municipality_code=target.municipality.code,
            municipality_name=target.municipality.name,
            channel_id=channel.id,
            kind=channel.kind,
            live=not channel.simulated and probe.is_live(),
            recipients=recipients,
            messages=messages,
            marker=marker,
            preview=_rendered(marker, text, subject, channel.kind) if repeat else "",
            note=_OUTAGE_NOTE if skipped else note,
        )
        if isinstance(probe, Priced) and messages:
            spent = self._spent.get(target.key, (0, 0))
            sample = [DrillMessage(token=new_token(), text=text, marker=marker, subject=subject)]
            refused = ""
            try:  # the real run's cost guard, with what earlier steps planned on the channel
                plan_cost([(_Spent(probe, *spent), sample * repeat)])
            except CostCapExceeded as exc:
                refused = exc.reason
            cost = plan_cost([(_Spent(probe, 0, 0, capped=False), sample * repeat)]).channels[0]
            row = dataclasses.replace(
                row,
                segments=cost.segments,
                cost=cost.cost,
                currency=cost.profile.currency,
                refused=refused,
            )
            if not refused:
                self._spent[target.key] = (spent[0] + cost.messages, spent[1] + cost.segments)
        self.plan.append(row)
        return row

    def close(self) -> None:
        """Nothing to close: nothing was opened."""


@dataclass
class PlannedStep:
    """A dry-run step's result: no deliveries, ``expect(...)`` not judged.

    Reading anything else (``step.reachability()``, ``step.deliveries``) raises
    :class:`DryRunNoResults`, which the plugin reports as a skip.
    """

    name: str
    sends: list[PlannedSend] = field(default_factory=list)

    def expect(self, *args: Any, **kwargs: Any) -> None:
        """Not judged in a dry run: nothing was sent."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise DryRunNoResults(
            f"試行（--dry-run）では手順 {self.name!r} の結果 .{name} はありません（何も送信していません）",
            f"a dry run (--dry-run) has no results: step {self.name!r} has no .{name} (nothing was sent)",
        )


class DryRunDrill(StepAPI[PlannedStep, PlannedStep, PlannedStep, PlannedStep, PlannedStep]):
    """The ``drill`` fixture of a dry run: the same steps and checks
    (:class:`~drills.operator.step_api.StepAPI`), each recorded instead of sent."""

    ctx: DryRunContext

    def __init__(self, ctx: DryRunContext, *, deadline: float | None = None, name: str = "drill"):
        super().__init__(deadline=deadline, name=name)
        self.ctx = ctx

    def _plan(
        self, name: str, action: str, targets: Sequence[Target], text: str, *,
        subject: str = "", repeat: int = 1, note: str = "",
    ) -> PlannedStep:  # fmt: skip
        start = len(self.ctx.plan)
        for t in targets:
            self.ctx.add(name, action, t, text, subject=subject, repeat=repeat, note=note)
        return PlannedStep(name, self.ctx.plan[start:])

    def _preflight(
        self, name: str, targets: list[Target], *, timeout: float, stop: bool
    ) -> list[PreflightReport]:
        """A check contacts the channels, so a dry run only plans it (nothing is checked)."""
        note = (
            "送信せずに確認（ログイン・読み取り・TLS）。試行では接続しない / "
            "checked without sending (login, read access, TLS); a dry run connects to nothing"
        )
        for t in targets:
            self.ctx.add(name, "preflight", t, "", repeat=0, note=note)
        return []

    def _broadcast(
        self, name: str, text: str, targets: list[Target], *, timeout: float, subject: str,
        repeat: int,
    ) -> PlannedStep:  # fmt: skip
        return self._plan(name, "broadcast", targets, text, subject=subject, repeat=repeat)

    def _fallback(
        self, name: str, text: str, chains: list[tuple[Municipality, list[Target]]], *,
        order: list[str], within: float, escalate_after: float, subject: str,
    ) -> PlannedStep:  # fmt: skip
        """The first channel always, each later one only on escalation."""
        start = len(self.ctx.plan)
        for _, targets in chains:
            for i, t in enumerate(targets):
                after = f"{escalate_after * i:g}"
                note = (
                    "最初に送信 / sent first"
                    if i == 0
                    else f"前のチャネルで {after} 秒以内に届かなければ送信 / "
                    f"sent only if not reached within {after} s on the channels before"
                )
                self.ctx.add(name, "fallback", t, text, subject=subject, note=note)
        return PlannedStep(name, self.ctx.plan[start:])

    @contextlib.contextmanager
    def _take_away(self, targets: list[Target]) -> Iterator[None]:
        """Nothing is sent; live channels are skipped inside the block."""
        for t in targets:
            note = (
                "シミュレータの受け手側を停止 / the simulator's far end goes down"
                if t.channel.simulated
                else "実チャネルは送信対象から外す / the live channel is skipped"
            )
            self.ctx.add("outage", "outage", t, "", repeat=0, note=note)
        away = {t.key for t in targets if not t.channel.simulated}
        self.ctx.taken_away |= away
        try:
            yield
        finally:
            self.ctx.taken_away -= away

    def _roll_call(
        self, name: str, text: str, room: Target, participants: list[Municipality], *,
        within: float, simulated: SimulatedAnswers,
    ) -> PlannedStep:  # fmt: skip
        """One post to the shared room (the answers come from the others)."""
        from drills.steps.rollcall import INSTRUCTION

        note = f"応答を求める団体 / asked to answer: {', '.join(m.code for m in participants)}"
        return self._plan(name, "roll_call", [room], text + INSTRUCTION, note=note)

    def _acknowledge(
        self, name: str, text: str, targets: list[Target], *, window: float, staff: int,
        simulated: SimulatedAnswers, subject: str,
    ) -> PlannedStep:  # fmt: skip
        """A broadcast with the answer instruction."""
        from drills.steps.acknowledgement import INSTRUCTION

        note = f"返信を待つ職員 {staff} 人 / waits for {staff} staff to answer"
        return self._plan(
            name, "acknowledge", targets, text + INSTRUCTION, subject=subject, note=note
        )

    def _surge(self, name: str, order: SurgeOrder) -> PlannedStep:
        """Locust load at the rates (load, not drill messages) plus the probes' drill messages
        per step of the ramp."""
        from drills.surge.runner import PROBE_TEXT

        steps = order.plan.steps
        load = int(sum(s.rate * s.duration_s for s in steps))
        shown = ", ".join(s.label("en") for s in steps)
        note = f"負荷 約 {load} 通（{shown}） / load of about {load} messages ({shown})"
        repeat = order.probes * len(steps)
        return self._plan(name, "surge", order.targets, PROBE_TEXT, repeat=repeat, note=note)
