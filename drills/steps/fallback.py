"""Fallback chain: try chat, then mail, then SMS — until one reaches each municipality.

Every municipality runs its own chain, all at once. A channel gets
``escalate_after`` seconds (the last one: whatever is left of ``within``) to be
seen at the far end before the chain moves on; a refusal, an unreachable
provider or the drill's own outage escalates at once. What is measured is the
*time to first successful channel*, from the start of the chain.

Escalation is the chain's decision, not the channel's outcome: every channel
the chain tried is watched until the step ends (``within`` from the chain's
start), and its delivery is recorded as what really happened — an arrival
after the chain moved on is ``late`` (its SLO for this step is its turn,
``escalate_after``, or the channel's own SLO if shorter), with its latency,
never ``lost``. "Reached via" is the channel that arrived first (it may be an
earlier channel arriving after the chain escalated).

A channel taken away by an outage step is skipped (live) or fails fast
(simulated: ``drill_outage``), which is how an outage drill proves the fallback works.

Journal event ``fallback`` (one per step, :class:`drills.core.events.FallbackEvent`)::

    {"v", "step", "scenario", "vantage", "order": ["chat", "mail", "sms"], "within_s", "escalate_after_s",
     "municipalities": [{"code", "name", "reached": true, "latency_s": 6.9 | null,
        "reached_via": "mail" | null, "time_to_first_s": 6.9 | null,
        "attempts": [{"channel", "kind", "outcome", "reason", "started_s", "latency_s",
                      "escalated_s": 2.67 | null}]}]}

``reached``/``latency_s`` (time to first success, within ``within_s``) are what the
scorecard and the metrics read. ``escalated_s`` is when (from the chain's start) the
chain moved on from that channel, if it did.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from drills.core.delivery import Delivery
from drills.core.events import FallbackAttempt, FallbackEvent, FallbackMunicipality
from drills.core.registry import Municipality, Target
from drills.core.requirements import Row, Status, Verdict
from drills.core.runner import Drill, StepResult

__all__ = ["Attempt", "Chain", "FallbackResult", "run_fallback"]


@dataclass(frozen=True)
class Attempt:
    channel: str
    kind: str
    outcome: str  # an Outcome value, or "skipped"
    reason: str
    started_s: float
    latency_s: float | None
    escalated_s: float | None = None  # when the chain moved on (from its start), if it did


@dataclass
class Chain:
    municipality: Municipality
    attempts: list[Attempt] = field(default_factory=list)
    reached_via: str | None = None
    time_to_first_s: float | None = None


@dataclass
class FallbackResult:
    """Per municipality: which channel reached it first, and when."""

    step: str
    order: list[str]
    within_s: float
    escalate_after_s: float
    chains: list[Chain]

    def reached(self, within: float | None = None) -> list[Chain]:
        limit = self.within_s if within is None else within
        return [
            c for c in self.chains if c.time_to_first_s is not None and c.time_to_first_s <= limit
        ]

    def reached_via(self) -> dict[str, int]:
        """How many municipalities each channel reached first (``{"mail": 5, "sms": 2}``)."""
        out: dict[str, int] = {}
        for c in self.chains:
            if c.reached_via is not None:
                out[c.reached_via] = out.get(c.reached_via, 0) + 1
        return out

    def verdicts(self, within: float | None = None) -> list[Verdict]:
        limit = self.within_s if within is None else within
        out = []
        for c in self.chains:
            m = c.municipality
            rows = tuple(
                Row(a.channel, a.kind, a.outcome, a.reason, a.latency_s)
                for a in c.attempts
                if a.outcome not in ("delivered", "late")
            )
            if any(a.outcome == "error" for a in c.attempts) and c.reached_via is None:
                status = Status.HARNESS
            elif c.time_to_first_s is not None and c.time_to_first_s <= limit:
                status = Status.MET
            else:
                status = Status.MISSED
            if c.time_to_first_s is not None:
                ja = f"{c.reached_via} で {c.time_to_first_s:.1f} 秒後に到達（要件 {limit:g} 秒以内）"
                en = f"reached via {c.reached_via} after {c.time_to_first_s:.1f} s (needs ≤ {limit:g} s)"
            else:
                tried = " → ".join(a.channel for a in c.attempts) or "—"
                ja = f"{limit:g} 秒以内にどの手段でも届かず（{tried}）"
                en = f"no channel reached it within {limit:g} s ({tried})"
            out.append(
                Verdict(
                    m.code,
                    m.name,
                    m.name_en,
                    status,
                    ja,
                    en,
                    rows,
                    {"reached_via": c.reached_via, "time_to_first_s": c.time_to_first_s},
                )
            )
        return out

    def event(self) -> FallbackEvent:
        """The journal's ``fallback`` event of this step."""
        return FallbackEvent(
            step=self.step,
            order=tuple(self.order),
            within_s=self.within_s,
            escalate_after_s=self.escalate_after_s,
            municipalities=tuple(
                FallbackMunicipality(
                    code=c.municipality.code,
                    name=c.municipality.name,
                    reached=c.time_to_first_s is not None and c.time_to_first_s <= self.within_s,
                    reached_via=c.reached_via,
                    time_to_first_s=c.time_to_first_s,
                    attempts=tuple(FallbackAttempt(**asdict(a)) for a in c.attempts),
                )
                for c in self.chains
            ),
        )


def _summary(
    target: Target, deliveries: list[Delivery], offset: float, escalated: float | None
) -> Attempt:
    ch = target.channel
    if not deliveries:
        return Attempt(
            ch.id,
            ch.kind,
            "skipped",
            "停止中のため省略 / taken away by the outage step",
            round(offset, 4),
            None,
            escalated,
        )
    reached = all(d.outcome.reached for d in deliveries)
    worst = next((d for d in deliveries if not d.outcome.reached), None)
    if worst is None:  # every recipient reached: the slowest one says how the channel did
        worst = max(deliveries, key=lambda d: d.latency_s or 0.0)
    latency = max((d.latency_s or 0.0) for d in deliveries) if reached else None
    return Attempt(
        ch.id, ch.kind, worst.outcome.value, worst.reason, round(offset, 4), latency, escalated
    )


@dataclass
class _Try:
    """One channel the chain tried: its broadcast (watched until the step ends)."""

    target: Target
    offset: float
    expected: int
    task: asyncio.Task[StepResult] | None = None
    seen: list[Delivery] = field(default_factory=list)
    escalated_s: float | None = None

    @property
    def reached_all(self) -> bool:
        return len(self.seen) >= self.expected > 0 and all(d.outcome.reached for d in self.seen)

    @property
    def failed(self) -> bool:
        return any(not d.outcome.reached for d in self.seen) or (
            self.task is not None and self.task.done()
        )


async def _chain(
    drill: Drill,
    text: str,
    muni: Municipality,
    targets: list[Target],
    within: float,
    escalate_after: float,
    step: str,
    subject: str,
) -> Chain:
    chain = Chain(muni)
    start = time.monotonic()
    progress = asyncio.Event()
    tried: list[_Try] = []

    def watch_for(attempt: _Try) -> Callable[[Delivery], None]:
        def watch(d: Delivery) -> None:
            attempt.seen.append(d)
            progress.set()

        return watch

    for i, target in enumerate(targets):
        offset = time.monotonic() - start
        remaining = within - offset
        if remaining <= 0:
            break
        turn = remaining if i == len(targets) - 1 else min(escalate_after, remaining)
        expected = 0 if drill.taken_away(target) else len((await drill.probe(target)).recipients())
        attempt = _Try(target, offset, expected)
        attempt.task = asyncio.ensure_future(
            drill.broadcast(
                text,
                [target],
                timeout=remaining,  # watched until the step ends, whatever the chain decides
                slo=min(turn, target.channel.slo.latency),
                step=f"{step}:{target.channel.id}",
                subject=subject,
                watch=watch_for(attempt),
            )
        )
        attempt.task.add_done_callback(lambda _: progress.set())
        tried.append(attempt)
        deadline = start + offset + turn
        while not any(a.reached_all for a in tried) and not attempt.failed:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(progress.wait(), left)
        if any(a.reached_all for a in tried):
            break  # some channel reached everybody: nothing more to try
        if i < len(targets) - 1:
            attempt.escalated_s = round(time.monotonic() - start, 4)
    for attempt in tried:
        assert attempt.task is not None
        result = await attempt.task
        summary = _summary(attempt.target, result.deliveries, attempt.offset, attempt.escalated_s)
        chain.attempts.append(summary)
        if summary.latency_s is not None:
            first = round(attempt.offset + summary.latency_s, 4)
            if chain.time_to_first_s is None or first < chain.time_to_first_s:
                chain.reached_via, chain.time_to_first_s = attempt.target.channel.id, first
    return chain


async def run_fallback(
    drill: Drill,
    text: str,
    plan: list[tuple[Municipality, list[Target]]],
    *,
    order: list[str],
    within: float,
    escalate_after: float,
    step: str,
    subject: str = "",
) -> FallbackResult:
    """Run every municipality's chain concurrently; journal a ``fallback`` event."""
    chains = await asyncio.gather(
        *(_chain(drill, text, m, ts, within, escalate_after, step, subject) for m, ts in plan)
    )
    return FallbackResult(step, order, within, escalate_after, list(chains))
