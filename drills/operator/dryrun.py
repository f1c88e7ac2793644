"""A dry run: what a drill *would* send, to whom, at what cost — and nothing sent.

``tsunagari run --dry-run`` (the pytest option ``--dry-run`` / ini ``tsunagari_dry_run``)
runs the scenario files with a ``drill`` whose steps record a :class:`PlannedSend`
per municipality × channel instead of sending: the marker, a token placeholder
(every real message gets its own token), the registered recipients, how many
messages, and for paid channels (:class:`probes.base.Priced`) the segments and
the cost estimate of the same cost guard a real run uses
(:func:`probes.sms.budget.plan_cost`), with whether a cap would refuse it.
``tsunagari demo --dry-run`` plans the demo's one broadcast the same way.

A dry run contacts nothing: no probe is opened, no simulator started, no
journal written, no lock taken. The same checks as a real run still apply —
an unknown channel or municipality, and a live channel without ``--live``,
are the same scenario errors (exit 2). Step results have no deliveries:
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

import pytest
from rich.table import Table
from rich.text import Text as RichText

from drills.core.i18n import Text
from drills.core.registry import Registry, Target
from drills.core.requirements import ScenarioMistake, located, parse_seconds
from drills.core.runner import check_live
from drills.steps import selection
from probes.base import DrillMessage, Priced, Probe, ProbeEnv, new_token

if TYPE_CHECKING:
    from probes.sms.budget import CostProfile

__all__ = [
    "TOKEN_PLACEHOLDER",
    "DryRunContext",
    "DryRunDrill",
    "DryRunNoResults",
    "PlannedSend",
    "PlannedStep",
    "plan_summary",
    "plan_table",
    "render_plan",
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
    action: str  # broadcast, fallback, roll_call, acknowledge, surge, outage
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


class DryRunDrill:
    """The ``drill`` fixture of a dry run: the same steps, recorded instead of sent."""

    def __init__(self, ctx: DryRunContext, *, deadline: float | None = None, name: str = "drill"):
        self.ctx, self.deadline, self.name = ctx, deadline, name
        self._steps = 0

    def _step_name(self, given: str | None) -> str:
        self._steps += 1
        if given:
            return given
        return self.name if self._steps == 1 else f"{self.name}#{self._steps}"

    def _targets(self, channels: Any, to: Any) -> list[Target]:
        try:
            chosen = selection.targets(
                self.ctx.registry, self.ctx.selection, channels=channels, to=to
            )
        except selection.NothingSelected:  # as a real run: the step addresses nobody selected
            why = Text(self.ctx.lang)(
                "この手順の対象団体は選択されていません",
                "no selected municipality is addressed by this step",
            )
            pytest.skip(f"--municipality {' '.join(self.ctx.selection)}: {why}")
        check_live(chosen, live=self.ctx.live)  # the real run's one live check
        return chosen

    def _step(self, name: str, start: int) -> PlannedStep:
        return PlannedStep(name, self.ctx.plan[start:])

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
    ) -> PlannedStep:
        """Plan :meth:`drills.operator.scenario.ScenarioDrill.broadcast`."""
        targets = self._targets(channels, to)
        if timeout is not None:
            parse_seconds(timeout, "timeout")
        name, start = self._step_name(step), len(self.ctx.plan)
        for t in targets:
            self.ctx.add(name, "broadcast", t, text, subject=subject, repeat=repeat)
        return self._step(name, start)

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
    ) -> PlannedStep:
        """Plan a fallback chain: the first channel always, each later one only on escalation."""
        names = selection.channel_names(self.ctx.registry, order) or []
        targets = self._targets(names, to)
        limit = parse_seconds(within, "within") if within is not None else self.deadline
        escalate = (
            parse_seconds(escalate_after, "escalate_after")
            if escalate_after
            else (limit / len(names) if limit else None)
        )
        name, start = self._step_name(step), len(self.ctx.plan)
        position: dict[str, int] = {}
        for t in targets:
            i = position.get(t.municipality.code, 0)
            position[t.municipality.code] = i + 1
            after = f"{escalate * i:g}" if escalate is not None else "?"
            note = (
                "最初に送信 / sent first"
                if i == 0
                else f"前のチャネルで {after} 秒以内に届かなければ送信 / "
                f"sent only if not reached within {after} s on the channels before"
            )
            self.ctx.add(name, "fallback", t, text, subject=subject, note=note)
        return self._step(name, start)

    @contextlib.contextmanager
    def outage(
        self, *channels: str, to: str | Sequence[str] | None = None
    ) -> Iterator[list[Target]]:
        """Plan an outage: nothing is sent; live channels are skipped inside the block."""
        targets = self._targets(list(channels), to)
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
            yield targets
        finally:
            self.ctx.taken_away -= away

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
    ) -> PlannedStep:
        """Plan a roll call: one post to the shared room (answers come from the others)."""
        from drills.steps.rollcall import INSTRUCTION

        reg = self.ctx.registry
        room_target = selection.resolve_room(reg, room)
        check_live([room_target], live=self.ctx.live)
        chosen = selection.municipalities(reg, self.ctx.selection, to)
        others = [m.code for m in chosen if m.code != room_target.municipality.code]
        name, start = self._step_name(step), len(self.ctx.plan)
        note = f"応答を求める団体 / asked to answer: {', '.join(others) or '-'}"
        self.ctx.add(name, "roll_call", room_target, text + INSTRUCTION, note=note)
        return self._step(name, start)

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
    ) -> PlannedStep:
        """Plan an acknowledgement request: a broadcast with the answer instruction."""
        from drills.steps.acknowledgement import INSTRUCTION

        targets = self._targets(channels, to)
        name, start = self._step_name(step), len(self.ctx.plan)
        note = f"返信を待つ職員 {staff} 人 / waits for {staff} staff to answer"
        for t in targets:
            self.ctx.add(name, "acknowledge", t, text + INSTRUCTION, subject=subject, note=note)
        return self._step(name, start)

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
        step: str | None = None,
        **ignored: Any,  # timeout, processes: how the surge runs, not what it sends
    ) -> PlannedStep:
        """Plan a surge: Locust load at *rates* (load, not drill messages) plus *probes* drill
        messages per step — refused as a real run refuses it (caps, a live channel's allowance)."""
        from drills.core.errors import ScenarioError
        from drills.surge.plan import SurgePlan, SurgeRefused, allowance_problems
        from drills.surge.runner import PROBE_TEXT

        targets = self._targets(channels, to)
        each_s = parse_seconds(each, "each")
        rest_s = each_s if rest is None else (0.0 if rest in (0, "0") else parse_seconds(rest))
        try:
            plan = SurgePlan.of([float(r) for r in rates], each_s, rest_s, users)
        except (ScenarioError, TypeError, ValueError) as exc:
            ja, _, en = str(exc).partition(" / ")
            raise ScenarioMistake(ja, en or ja) from None
        refused = [p for t in targets for p in allowance_problems(t, plan, live=self.ctx.live)]
        if refused:
            refusal = SurgeRefused(refused)
            raise ScenarioMistake(refusal.render("ja"), refusal.render("en"))
        load = int(sum(s.rate * s.duration_s for s in plan.steps))
        shown = ", ".join(s.label("en") for s in plan.steps)
        note = f"負荷 約 {load} 通（{shown}） / load of about {load} messages ({shown})"
        name, start = self._step_name(step), len(self.ctx.plan)
        for t in targets:
            repeat = probes * len(plan.steps)
            self.ctx.add(name, "surge", t, PROBE_TEXT, repeat=repeat, note=note)
        return self._step(name, start)


_COLUMNS = (("手順", "step"), ("団体", "municipality"), ("チャネル", "channel"),
            ("宛先", "recipients"), ("通数", "messages"), ("メッセージ", "message"),
            ("費用見積", "cost estimate"), ("備考", "note"))  # fmt: skip


def _cells(r: PlannedSend, t: Text) -> list[str]:
    where = t("実", "live") if r.live else t("模擬", "sim")
    cost = ""
    if r.segments is not None:
        cost = t(f"{r.segments} セグメント", f"{r.segments} segments")
        cost += f" ≈{r.cost:g} {r.currency}" if r.cost is not None else ""
    notes = [t("上限超過で拒否: ", "refused by a cap: ") + t.pick(r.refused)] if r.refused else []
    notes += [t.pick(r.note)] if r.note else []
    return [
        f"{r.step} ({r.action})",
        f"{r.municipality_name} ({r.municipality_code})",
        f"{r.channel_id} [{r.kind}, {where}]",
        ", ".join(x or t("（チャネル）", "(the channel)") for x in r.recipients),
        str(r.messages),
        r.preview,
        cost,
        "\n".join(notes),
    ]


def plan_table(rows: Sequence[PlannedSend], lang: str = "ja") -> Table:
    """The dry run as a table: per municipality and channel, what would go to whom."""
    t = Text(lang)
    title = t(
        "試行（--dry-run）: 送信予定（何も送信していません）",
        "Dry run: would send (nothing was sent)",
    )
    table = Table(title=title, show_lines=True)
    for ja, en in _COLUMNS:
        table.add_column(t(ja, en), overflow="fold")
    for r in rows:  # as plain text: a scenario's "[...]" is not rich markup
        table.add_row(*(RichText(cell) for cell in _cells(r, t)))
    return table


def plan_summary(rows: Sequence[PlannedSend], lang: str = "ja") -> str:
    """One line: how many messages to how many recipients, and the SMS cost estimate."""
    t = Text(lang)
    sent = [r for r in rows if r.messages and not r.refused]
    messages = sum(r.messages for r in sent)
    channels = len({(r.municipality_code, r.channel_id) for r in sent})
    costs: dict[str, float] = {}
    for r in rows:
        if r.cost is not None and r.currency and not r.refused:
            costs[r.currency] = costs.get(r.currency, 0.0) + r.cost
    cost = ", ".join(f"≈{v:g} {k}" for k, v in sorted(costs.items()))
    refused = sum(1 for r in rows if r.refused)
    line = t(
        f"送信予定 {messages} 通（{channels} チャネル）",
        f"would send {messages} messages over {channels} channel{'s' * (channels != 1)}",
    )
    if cost:
        line += t(f"、SMS 費用見積 {cost}", f", SMS cost estimate {cost}")
    if refused:
        line += t(f"、上限超過で拒否 {refused} 件", f", {refused} refused by a cap")
    return line + t("。何も送信していません。", ". Nothing was sent.")


def render_plan(rows: Sequence[PlannedSend], lang: str = "ja", width: int | None = None) -> str:
    """The plan table and its summary line as text (no colour), for a terminal or a log."""
    import io

    from rich.console import Console

    buffer = io.StringIO()
    console = Console(file=buffer, width=width or 160, no_color=True, highlight=False)
    console.print(plan_table(rows, lang))
    console.print(plan_summary(rows, lang), markup=False)
    return buffer.getvalue()
