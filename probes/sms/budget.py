"""The SMS cost guard: per-run caps on messages, segments and estimated cost.

SMS costs money per segment and reaches real phones, so a drill plans its SMS
before the first one leaves and refuses the whole run if a cap would be
exceeded::

    plan = plan_cost([(adachi_sms, 2), (chiyoda_sms, [message])])  # raises CostCapExceeded
    print(plan.summary())

Each channel's caps come from its registry entry (``caps:``); the runner may
add caps for the whole run (``run_caps``). The probe also keeps a
:class:`RunBudget` and refuses a send that would cross a cap, in case a caller
skipped the plan — or two steps planned at once, each within the cap alone.

The budget is the channel's, not the probe's: every probe of one channel in one
drill (one :class:`~probes.base.ProbeEnv`) charges the same :class:`RunBudget`
(:meth:`RunBudget.shared`), and a charge is one check-and-count under a lock, so
no interleaving of concurrent sends — coroutines or threads — lets N + 1 out.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pydantic import Field

from probes.base import ChannelSettings, DrillMessage, Priced, ProbeEnv, ProbeError
from probes.sms.status import Reason, count_segments

__all__ = [
    "Caps",
    "ChannelCost",
    "CostCapExceeded",
    "CostPlan",
    "CostProfile",
    "Priced",
    "RunBudget",
    "plan_cost",
]

# What a broadcast to one SMS channel typically says, for plans that only know a count.
DEFAULT_PLAN_TEXT = (
    "安否確認訓練です。このメッセージを受け取ったら所属と氏名を上長に報告してください。"
)


class Caps(ChannelSettings):
    """Per-run limits for one SMS channel. The defaults keep a mistake cheap."""

    max_messages: int = Field(
        default=100, ge=0, description="1 回の実行で送る最大通数 / most messages per run"
    )
    max_segments: int = Field(
        default=300, ge=0, description="1 回の実行の最大セグメント数 / most segments per run"
    )
    max_cost: float | None = Field(
        default=None, ge=0, description="1 回の実行の費用の上限 / most cost per run"
    )


@dataclass(frozen=True, slots=True)
class CostProfile:
    """What the guard needs to know about one SMS channel."""

    channel_id: str
    recipients: int
    caps: Caps
    price_per_segment: float | None = None
    currency: str = "USD"
    spent_messages: int = 0  # already sent in this run (earlier steps)
    spent_segments: int = 0


class CostCapExceeded(ProbeError, ValueError):
    """A run (or one more send) would cross an SMS cap; nothing was sent for it."""

    def __init__(self, reason: str, *, violations: Sequence[Reason] = ()) -> None:
        super().__init__(reason, code="cost-cap")
        self.violations = tuple(violations)


@dataclass(frozen=True, slots=True)
class ChannelCost:
    """The planned SMS traffic of one channel in one run."""

    profile: CostProfile
    messages: int
    segments: int

    @property
    def cost(self) -> float | None:
        price = self.profile.price_per_segment
        return None if price is None else round(self.segments * price, 6)


@dataclass(frozen=True, slots=True)
class CostPlan:
    """Planned SMS traffic of a run, per channel and in total."""

    channels: tuple[ChannelCost, ...]

    @property
    def messages(self) -> int:
        return sum(c.messages for c in self.channels)

    @property
    def segments(self) -> int:
        return sum(c.segments for c in self.channels)

    @property
    def cost(self) -> float | None:
        costs = [c.cost for c in self.channels if c.cost is not None]
        return round(sum(costs), 6) if costs else None

    def summary(self) -> str:
        """One line a person can read before a live run: ``SMS 4 通 / 8 セグメント …``."""
        cost = f", ≈{self.cost:g}" if self.cost is not None else ""
        return (
            f"SMS {self.messages} 通・{self.segments} セグメント{cost} / "
            f"{self.messages} messages, {self.segments} segments{cost}"
        )


def _violations(
    scope: str, caps: Caps, messages: int, segments: int, cost: float | None, currency: str
) -> list[Reason]:
    found: list[Reason] = []
    if messages > caps.max_messages:
        found.append(
            Reason(
                f"{scope}: 予定 {messages} 通が上限 {caps.max_messages} 通を超えます",
                f"{scope}: {messages} messages planned, cap is {caps.max_messages}",
            )
        )
    if segments > caps.max_segments:
        found.append(
            Reason(
                f"{scope}: 予定 {segments} セグメントが上限 {caps.max_segments} を超えます",
                f"{scope}: {segments} segments planned, cap is {caps.max_segments}",
            )
        )
    if caps.max_cost is not None and cost is not None and cost > caps.max_cost:
        found.append(
            Reason(
                f"{scope}: 見積 {cost:g} {currency} が上限 {caps.max_cost:g} {currency} を超えます",
                f"{scope}: estimated {cost:g} {currency}, cap is {caps.max_cost:g} {currency}",
            )
        )
    return found


def _refuse(violations: Sequence[Reason]) -> CostCapExceeded:
    ja = "；".join(v.ja for v in violations)
    en = "; ".join(v.en for v in violations)
    return CostCapExceeded(
        f"SMS の上限を超えるため送信しません：{ja} / refusing to send, SMS cap exceeded: {en}",
        violations=violations,
    )


def _segments_of(messages: int | Sequence[DrillMessage | str], assume_text: str) -> list[int]:
    if isinstance(messages, int):
        one = count_segments(DrillMessage.new(assume_text).render()).segments
        return [one] * messages
    out = []
    for m in messages:
        msg = m if isinstance(m, DrillMessage) else DrillMessage.new(m)
        out.append(count_segments(msg.render()).segments)
    return out


def plan_cost(
    plan: Iterable[tuple[Priced, int | Sequence[DrillMessage | str]]],
    *,
    run_caps: Caps | None = None,
    assume_text: str = DEFAULT_PLAN_TEXT,
) -> CostPlan:
    """Plan a run's SMS and refuse it (:class:`CostCapExceeded`) if a cap would be crossed.

    *plan* pairs each SMS probe with the messages the run will broadcast on it:
    the messages themselves (or their texts), or just how many (then each is
    assumed to look like *assume_text*). Every message goes to each of the
    channel's registered recipients. What a probe already sent in this run (an
    earlier step) counts against its caps too. Pure: nothing is sent, nothing
    is counted. A runner calls it once per step, before the first send::

        sms = [(p, [message] * repeat) for p in probes if isinstance(p, Priced)]
        plan_cost(sms)   # raises CostCapExceeded: refuse the step, send nothing
    """
    rows: list[ChannelCost] = []
    for probe, messages in plan:
        profile = probe.cost_profile()
        per_recipient = _segments_of(messages, assume_text)
        rows.append(
            ChannelCost(
                profile,
                messages=len(per_recipient) * profile.recipients,
                segments=sum(per_recipient) * profile.recipients,
            )
        )
    result = CostPlan(tuple(rows))
    violations: list[Reason] = []
    for row in rows:
        p = row.profile
        messages, segments = p.spent_messages + row.messages, p.spent_segments + row.segments
        price = p.price_per_segment
        cost = None if price is None else round(segments * price, 6)
        scope = p.channel_id
        if p.spent_messages:
            scope += f"（送信済み {p.spent_messages} 通を含む / including {p.spent_messages} already sent）"
        violations += _violations(scope, p.caps, messages, segments, cost, p.currency)
    if run_caps is not None:
        currencies = {r.profile.currency for r in rows} or {"USD"}
        spent_cost = sum(
            r.profile.spent_segments * r.profile.price_per_segment
            for r in rows
            if r.profile.price_per_segment is not None
        )
        violations += _violations(
            "この実行全体 (whole run)",
            run_caps,
            result.messages + sum(r.profile.spent_messages for r in rows),
            result.segments + sum(r.profile.spent_segments for r in rows),
            None if result.cost is None else round(result.cost + spent_cost, 6),
            "/".join(sorted(currencies)),
        )
    if violations:
        raise _refuse(violations)
    return result


class RunBudget:
    """What one channel has spent in this run; refuses the send that would cross a cap."""

    def __init__(self, profile: CostProfile) -> None:
        self.profile = profile
        self.messages = 0
        self.segments = 0
        self._lock = threading.Lock()

    @classmethod
    def shared(cls, env: ProbeEnv, profile: CostProfile) -> RunBudget:
        """The one budget of channel ``profile.channel_id`` in the drill *env* belongs to.

        >>> env = ProbeEnv()
        >>> a = RunBudget.shared(env, CostProfile("131211/sms", 1, Caps()))
        >>> a is RunBudget.shared(env, CostProfile("131211/sms", 1, Caps()))
        True
        """
        key = f"sms-budget:{profile.channel_id}"
        budget = env.shared.get(key)
        if not isinstance(budget, RunBudget):
            budget = env.shared[key] = cls(profile)
        return budget

    @property
    def cost(self) -> float | None:
        price = self.profile.price_per_segment
        return None if price is None else round(self.segments * price, 6)

    def charge(self, segments: int) -> None:
        """Count one message of *segments*, or raise :class:`CostCapExceeded` and count nothing.

        Check and count are one step (under a lock, with no ``await`` between them).
        """
        p = self.profile
        price = p.price_per_segment
        with self._lock:
            after = self.segments + segments
            cost = None if price is None else round(after * price, 6)
            violations = _violations(
                p.channel_id, p.caps, self.messages + 1, after, cost, p.currency
            )
            if not violations:
                self.messages += 1
                self.segments = after
        if violations:
            raise _refuse(violations)
