"""Fallback chain: try chat, then mail, then SMS — until one reaches each municipality.

Every municipality runs its own chain, all at once. A channel gets
``escalate_after`` seconds (the last one: whatever is left of ``within``) to be
seen at the far end; a refusal or an unreachable provider escalates at once.
What is measured is the *time to first successful channel*, from the start of
the chain. A channel taken away by an outage step is skipped (live) or fails
fast (simulated), which is how an outage drill proves the fallback works.

Journal event ``fallback`` (one per step)::

    {"step", "scenario", "vantage", "order": ["chat", "mail", "sms"], "within_s", "escalate_after_s",
     "municipalities": [{"code", "name", "reached": true, "latency_s": 6.9 | null,
        "reached_via": "mail" | null, "time_to_first_s": 6.9 | null,
        "attempts": [{"channel", "kind", "outcome", "reason", "started_s", "latency_s"}]}]}

``reached``/``latency_s`` (time to first success, within ``within_s``) are what the
scorecard and the metrics read.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from drills.registry import Municipality, Target
from drills.requirements import Row, Status, Verdict
from drills.runner import Drill

__all__ = ["Attempt", "Chain", "FallbackResult", "run_fallback"]


@dataclass(frozen=True)
class Attempt:
    channel: str
    kind: str
    outcome: str  # an Outcome value, or "skipped"
    reason: str
    started_s: float
    latency_s: float | None


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

    def event(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "order": self.order,
            "within_s": self.within_s,
            "escalate_after_s": self.escalate_after_s,
            "municipalities": [
                {
                    "code": c.municipality.code,
                    "name": c.municipality.name,
                    "reached": c.time_to_first_s is not None and c.time_to_first_s <= self.within_s,
                    "latency_s": c.time_to_first_s,
                    "reached_via": c.reached_via,
                    "time_to_first_s": c.time_to_first_s,
                    "attempts": [asdict(a) for a in c.attempts],
                }
                for c in self.chains
            ],
        }


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
    for i, target in enumerate(targets):
        offset = time.monotonic() - start
        remaining = within - offset
        if remaining <= 0:
            break
        wait = remaining if i == len(targets) - 1 else min(escalate_after, remaining)
        result = await drill.broadcast(
            text, [target], timeout=wait, step=f"{step}:{target.channel.id}", subject=subject
        )
        ch = target.channel
        if not result.deliveries:
            chain.attempts.append(
                Attempt(
                    ch.id,
                    ch.kind,
                    "skipped",
                    "停止中のため省略 / taken away by the outage step",
                    offset,
                    None,
                )
            )
            continue
        reached = all(d.outcome.reached for d in result.deliveries)
        worst = next((d for d in result.deliveries if not d.outcome.reached), result.deliveries[0])
        latency = max((d.latency_s or 0.0) for d in result.deliveries) if reached else None
        chain.attempts.append(
            Attempt(ch.id, ch.kind, worst.outcome.value, worst.reason, round(offset, 4), latency)
        )
        if reached and latency is not None:
            chain.reached_via = ch.id
            chain.time_to_first_s = round(offset + latency, 4)
            break
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
