"""A surge plan — how hard, for how long, step by step — and the guard that refuses an unsafe one.

A plan is a ramp of *offered* message rates (messages per second, the whole
surge across every Locust process), each held for a step's duration. It
normally starts with a step *at rest* (rate 0): the channel's latency with no
load, measured by the same probes, is the baseline of the curve::

    >>> plan = SurgePlan.ramp(start=10, peak=100, steps=4, step_s=10, rest_s=5)
    >>> [s.rate for s in plan.steps], plan.duration_s
    ([0.0, 10.0, 40.0, 70.0, 100.0], 45.0)

The load is carried by a fixed pool of Locust users, each paced to
``rate / users`` messages per second during a step; a user whose request takes
longer than its interval falls behind, so the *achieved* rate is measured, not
assumed.

The guard (:func:`check_surge_allowed`) refuses before anything starts: hard
caps always apply (:data:`HARD_MAX_RATE`, :data:`HARD_MAX_DURATION_S`, …);
a live channel additionally needs ``live`` *and* a ``surge: {rate, duration}``
allowance in the registry that covers the plan's peak rate and total duration.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from drills.core.errors import DrillSafetyError, ScenarioError

if TYPE_CHECKING:
    from drills.core.registry import Target

__all__ = [
    "HARD_MAX_DURATION_S",
    "HARD_MAX_RATE",
    "HARD_MAX_STEPS",
    "HARD_MAX_USERS",
    "RampStep",
    "SurgePlan",
    "SurgeRefused",
    "allowance_problems",
    "check_surge_allowed",
    "default_users",
]

HARD_MAX_RATE = 10_000.0  # messages per second, whole surge, any channel, any flag
HARD_MAX_DURATION_S = 1_800.0  # the whole plan, rest step included
HARD_MAX_USERS = 5_000
HARD_MAX_STEPS = 50
# How many messages per second one paced user is assumed to carry when the
# pool size is not given (a slow API answering in ~200 ms still keeps up).
_USER_RATE = 5.0

Reason = tuple[str, str]  # (日本語, English)


def default_users(peak_rate: float) -> int:
    """Users enough to carry *peak_rate* at a few messages per second each.

    >>> default_users(80), default_users(0), default_users(1e9)
    (16, 1, 1000)
    """
    return max(1, min(1_000, math.ceil(peak_rate / _USER_RATE)))


@dataclass(frozen=True, slots=True)
class RampStep:
    """One step of the ramp: *rate* messages per second for *duration_s* (0 = at rest)."""

    index: int
    rate: float
    duration_s: float

    @property
    def at_rest(self) -> bool:
        return self.rate <= 0

    @property
    def name(self) -> str:
        """The Locust request name of this step's load (stats are kept per step)."""
        return f"step {self.index}"

    def label(self, lang: str = "ja") -> str:
        if self.at_rest:
            return "平常時" if lang == "ja" else "at rest"
        return f"{self.rate:g} 通/秒" if lang == "ja" else f"{self.rate:g} msg/s"


@dataclass(frozen=True, slots=True)
class SurgePlan:
    """Steps of offered load and the user pool that carries it."""

    steps: tuple[RampStep, ...]
    users: int

    @classmethod
    def of(
        cls,
        rates: Sequence[float],
        step_s: float,
        rest_s: float = 0.0,
        users: int | None = None,
    ) -> SurgePlan:
        """A plan of explicit *rates*, each held *step_s*, after *rest_s* at rest.

        Raises :class:`ScenarioError` for an empty or negative ramp; caps are
        checked by :func:`check_surge_allowed`, not here.
        """
        if not rates:
            raise ScenarioError(
                "サージには 1 段以上の負荷が必要です / a surge needs at least one load step"
            )
        if any(not math.isfinite(r) or r <= 0 for r in rates):
            raise ScenarioError("負荷（通/秒）は正の数です / load rates must be positive numbers")
        if step_s <= 0 or rest_s < 0:
            raise ScenarioError("段の長さは正の秒数です / step durations must be positive")
        spec = ([(0.0, rest_s)] if rest_s > 0 else []) + [(float(r), float(step_s)) for r in rates]
        steps = tuple(RampStep(i, rate, dur) for i, (rate, dur) in enumerate(spec))
        peak = max(rates)
        chosen = default_users(peak) if users is None else users
        if chosen < 1:
            raise ScenarioError("ユーザー数は 1 以上です / users must be at least 1")
        return cls(steps, chosen)

    @classmethod
    def ramp(
        cls,
        start: float,
        peak: float,
        steps: int,
        step_s: float,
        rest_s: float = 0.0,
        users: int | None = None,
    ) -> SurgePlan:
        """*steps* evenly spaced rates from *start* to *peak* (inclusive)."""
        if steps < 1:
            raise ScenarioError("段数は 1 以上です / a ramp needs at least one step")
        if steps == 1:
            return cls.of([peak], step_s, rest_s, users)
        gap = (peak - start) / (steps - 1)
        return cls.of([round(start + i * gap, 6) for i in range(steps)], step_s, rest_s, users)

    @property
    def load_steps(self) -> tuple[RampStep, ...]:
        return tuple(s for s in self.steps if not s.at_rest)

    @property
    def peak_rate(self) -> float:
        return max((s.rate for s in self.steps), default=0.0)

    @property
    def duration_s(self) -> float:
        return sum(s.duration_s for s in self.steps)

    def per_user_rate(self, step: RampStep) -> float:
        """Messages per second each user is paced to during *step*."""
        return step.rate / self.users

    def step(self, index: int) -> RampStep:
        return self.steps[index]

    def to_dict(self) -> dict[str, Any]:
        return {
            "users": self.users,
            "steps": [
                {"index": s.index, "rate": s.rate, "duration_s": s.duration_s} for s in self.steps
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SurgePlan:
        steps = tuple(
            RampStep(int(s["index"]), float(s["rate"]), float(s["duration_s"]))
            for s in data["steps"]
        )
        return cls(steps, int(data["users"]))

    def cap_problems(self) -> list[Reason]:
        """Every hard cap this plan breaks, as (日本語, English) reasons."""
        out: list[Reason] = []
        if self.peak_rate > HARD_MAX_RATE:
            out.append(
                (
                    f"負荷 {self.peak_rate:g} 通/秒 は上限 {HARD_MAX_RATE:g} を超えます",
                    f"rate {self.peak_rate:g} msg/s exceeds the hard cap of {HARD_MAX_RATE:g}",
                )
            )
        if self.duration_s > HARD_MAX_DURATION_S:
            out.append(
                (
                    f"所要 {self.duration_s:g} 秒 は上限 {HARD_MAX_DURATION_S:g} 秒を超えます",
                    f"duration {self.duration_s:g} s exceeds the hard cap "
                    f"of {HARD_MAX_DURATION_S:g} s",
                )
            )
        if self.users > HARD_MAX_USERS:
            out.append(
                (
                    f"ユーザー数 {self.users} は上限 {HARD_MAX_USERS} を超えます",
                    f"{self.users} users exceed the hard cap of {HARD_MAX_USERS}",
                )
            )
        if len(self.steps) > HARD_MAX_STEPS:
            out.append(
                (
                    f"段数 {len(self.steps)} は上限 {HARD_MAX_STEPS} を超えます",
                    f"{len(self.steps)} steps exceed the hard cap of {HARD_MAX_STEPS}",
                )
            )
        return out


def allowance_problems(target: Target, plan: SurgePlan, *, live: bool) -> list[Reason]:
    """Why *plan* may not run against *target* (empty: it may). Pure."""
    problems = plan.cap_problems()
    channel = target.channel
    if channel.simulated:
        return problems
    if not live:
        problems.append(
            (
                f"{target.key} は実チャネルです。サージには --live が必要です",
                f"{target.key} is a live channel: a surge needs --live",
            )
        )
    allowance = channel.surge
    if allowance is None:
        problems.append(
            (
                f"{target.key} にはレジストリのサージ許可（surge: {{rate, duration}}）がありません",
                f"the registry grants {target.key} no surge allowance (surge: {{rate, duration}})",
            )
        )
        return problems
    if plan.peak_rate > allowance.rate:
        problems.append(
            (
                f"負荷 {plan.peak_rate:g} 通/秒 は許可 {allowance.rate:g} 通/秒 を超えます",
                f"rate {plan.peak_rate:g} msg/s exceeds the allowance of {allowance.rate:g} msg/s",
            )
        )
    if plan.duration_s > allowance.duration:
        problems.append(
            (
                f"所要 {plan.duration_s:g} 秒 は許可 {allowance.duration:g} 秒 を超えます",
                f"duration {plan.duration_s:g} s exceeds the allowance of {allowance.duration:g} s",
            )
        )
    return problems


class SurgeRefused(DrillSafetyError):
    """The guard refused a surge; ``problems`` holds each (日本語, English) reason."""

    def __init__(self, problems: list[Reason]) -> None:
        self.problems = problems
        super().__init__(self.render("en"))

    def render(self, lang: str = "ja") -> str:
        if lang == "ja":
            return "サージを拒否しました: " + "、".join(ja for ja, _ in self.problems)
        return "surge refused: " + "; ".join(en for _, en in self.problems)


def check_surge_allowed(target: Target, plan: SurgePlan, *, live: bool) -> None:
    """Raise :class:`SurgeRefused` (before anything starts) if the surge is not allowed."""
    problems = allowance_problems(target, plan, live=live)
    if problems:
        raise SurgeRefused(problems)
