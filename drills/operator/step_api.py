"""The scenario's steps, once: each step's arguments, targets and checks, behind one seam.

Both ``drill`` fixtures are a :class:`StepAPI`: the real one
(:class:`drills.operator.scenario.ScenarioDrill`) sends, the dry run's
(:class:`drills.operator.dryrun.DryRunDrill`) records what it would send. A public
step here reads and checks its arguments and picks its targets — the same for
both, so a dry run refuses what a real run refuses — then hands them to the one
hook of that step (``_preflight``, ``_broadcast``, ``_fallback``, ``_take_away``,
``_roll_call``, ``_acknowledge``, ``_surge``). The hooks are abstract: a drill that does not
implement a step cannot be made, and a new step is one method here plus its hook
in each drill.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Generic, NoReturn, Protocol, TypeVar

import pytest

from drills.core.registry import Municipality, Registry, Target
from drills.core.requirements import ScenarioMistake, caller_location, located, parse_seconds
from drills.core.runner import check_live
from drills.steps import selection
from drills.steps.answers import SimulatedAnswers, parse_simulated

if TYPE_CHECKING:
    from drills.steps.surge import SurgeOrder
    from probes.preflight import PreflightReport

__all__ = ["StepAPI", "StepScope"]

B = TypeVar("B")  # what broadcast returns
F = TypeVar("F")  # fallback
R = TypeVar("R")  # roll_call
A = TypeVar("A")  # acknowledge
S = TypeVar("S")  # surge


class StepScope(Protocol):
    """What the steps read of a scenario's run (a real one or a dry run)."""

    @property
    def registry(self) -> Registry: ...
    @property
    def selection(self) -> tuple[str, ...]: ...
    @property
    def live(self) -> bool: ...
    @property
    def lang(self) -> str: ...


class StepAPI(ABC, Generic[B, F, R, A, S]):
    """The ``drill`` fixture's steps; a subclass sends them (or plans them) in its hooks."""

    ctx: StepScope

    def __init__(self, *, deadline: float | None = None, name: str = "drill") -> None:
        self.deadline, self.name = deadline, name
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
        naming each such channel and the phase that failed
        (:class:`drills.core.preflight.PreflightFailed`). Not numbered: the steps after it
        keep their names. A dry run checks nothing (it contacts nothing) and plans the check.
        """
        targets = self._targets(channels, to)
        limit = parse_seconds(timeout, "timeout")
        return self._preflight(step or "preflight", targets, timeout=limit, stop=stop)

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
    ) -> B:
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
        return self._broadcast(name, text, targets, timeout=wait, subject=subject, repeat=repeat)

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
    ) -> F:
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
        chains: list[tuple[Municipality, list[Target]]] = []
        for t in targets:
            if not chains or chains[-1][0] is not t.municipality:
                chains.append((t.municipality, []))
            chains[-1][1].append(t)
        name = self._step_name(step)
        return self._fallback(
            name, text, chains, order=names, within=limit, escalate_after=escalate, subject=subject
        )

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
        with self._take_away(targets):
            yield targets

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
    ) -> R:
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
        return self._roll_call(
            name, text, room_target, participants, within=limit, simulated=answers
        )

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
    ) -> A:
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
        return self._acknowledge(
            name, text, targets, window=limit, staff=staff, simulated=answers, subject=subject
        )

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
    ) -> S:
        """Everybody at once: Locust loads each of *channels* at *rates* msg/s, ``each`` per
        step after ``rest`` at rest, while ``probes`` drill messages per step measure delivery.
        ``expect(holds_up_to="50/s")``: no breaking point up to that load. See drills.steps.surge.
        """
        from drills.core.errors import ScenarioError
        from drills.steps.surge import SurgeOrder
        from drills.surge.plan import SurgePlan, SurgeRefused, allowance_problems
        from drills.surge.process import Topology

        name = self._step_name(step)
        targets = self._targets(channels, to)
        step_s = parse_seconds(each, "each")
        rest_s = (
            step_s if rest is None else (0.0 if rest in (0, "0") else parse_seconds(rest, "rest"))
        )
        try:
            plan = SurgePlan.of([float(r) for r in rates], step_s, rest_s, users)
            topology = Topology(processes=processes)
        except (ScenarioError, TypeError, ValueError) as exc:
            ja, _, en = str(exc).partition(" / ")
            raise ScenarioMistake(ja, en or ja) from None
        # refused as a real run refuses it (caps, a live channel's allowance) before anything runs
        refused = [p for t in targets for p in allowance_problems(t, plan, live=self.ctx.live)]
        if refused:
            refusal = SurgeRefused(refused)
            raise ScenarioMistake(refusal.render("ja"), refusal.render("en"))
        wait = parse_seconds(timeout, "timeout") if timeout is not None else None
        return self._surge(name, SurgeOrder(targets, plan, topology, probes, wait))

    # ------------------------------------------------------------------ the seam

    @abstractmethod
    def _preflight(
        self, name: str, targets: list[Target], *, timeout: float, stop: bool
    ) -> list[PreflightReport]: ...

    @abstractmethod
    def _broadcast(
        self, name: str, text: str, targets: list[Target], *, timeout: float, subject: str,
        repeat: int,
    ) -> B:  # fmt: skip
        """Send (or plan) a broadcast whose arguments are checked."""

    @abstractmethod
    def _fallback(
        self, name: str, text: str, chains: list[tuple[Municipality, list[Target]]], *,
        order: list[str], within: float, escalate_after: float, subject: str,
    ) -> F:  # fmt: skip
        """Send (or plan) a fallback: *chains* are each municipality's channels in order."""

    @abstractmethod
    def _take_away(self, targets: list[Target]) -> contextlib.AbstractContextManager[None]:
        """Take *targets* away for the ``with`` block of :meth:`outage` (or plan that)."""

    @abstractmethod
    def _roll_call(
        self, name: str, text: str, room: Target, participants: list[Municipality], *,
        within: float, simulated: SimulatedAnswers,
    ) -> R:  # fmt: skip
        """Post (or plan) a roll call to *room* that *participants* answer."""

    @abstractmethod
    def _acknowledge(
        self, name: str, text: str, targets: list[Target], *, window: float, staff: int,
        simulated: SimulatedAnswers, subject: str,
    ) -> A:  # fmt: skip
        """Send (or plan) an acknowledgement request."""

    @abstractmethod
    def _surge(self, name: str, order: SurgeOrder) -> S:
        """Run (or plan) a surge whose arguments are checked."""
