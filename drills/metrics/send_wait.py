"""The harness's own wait before sending, per step and for the whole drill.

Each record says how long its message waited in the harness before it left
(:attr:`drills.core.delivery.Delivery.queue_s`: a pacing slot, a free connection,
a busy event loop). That wait is the harness's, never the channel's: latency is
timed from the moment the message left, and no score counts the wait. What it
costs is wall time — a paced step takes longer — and that is what the scorecard
and the metrics show with these figures: p50, p95 and the largest wait
(:func:`drills.core.scoring.percentile`, as the latencies' p50 and p95).

A record that does not say (journalled before the wait was recorded, or a
message that never left) counts in ``sent`` but not in ``measured``; with
nothing measured the figures are None (shown as "—").

    >>> from drills.core.delivery import Delivery, Outcome
    >>> def sent(step, q):
    ...     return Delivery("r", step, "131211", "足立区", "chat", "webhook", "TSG-0",
    ...                     Outcome.DELIVERED, extra={} if q is None else {"queue_s": q})
    >>> waits = send_waits([sent("a", 0.0), sent("a", 0.2), sent("b", 0.4), sent("b", None)])
    >>> [(w.step, w.sent, w.measured, w.max_s) for w in waits.steps]
    [('a', 2, 2, 0.2), ('b', 2, 1, 0.4)]
    >>> waits.drill.p50_s, waits.drill.max_s
    (0.2, 0.4)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from drills.core.delivery import Delivery
from drills.core.scoring import percentile

__all__ = ["SendWait", "SendWaits", "send_wait_of", "send_waits"]


@dataclass(frozen=True)
class SendWait:
    """The harness's wait before sending of one step (or the drill): seconds."""

    step: str  # "" for the whole drill
    sent: int  # records
    measured: int  # of which say how long they waited
    p50_s: float | None = None
    p95_s: float | None = None
    max_s: float | None = None

    def to_data(self) -> list[Any]:
        return [self.step, self.sent, self.measured, self.p50_s, self.p95_s, self.max_s]

    @classmethod
    def from_data(cls, data: Sequence[Any]) -> SendWait:
        step, sent, measured, p50, p95, top = data
        return cls(str(step), int(sent), int(measured), _opt(p50), _opt(p95), _opt(top))


@dataclass(frozen=True)
class SendWaits:
    """Per step in journal order, and the whole drill's."""

    steps: tuple[SendWait, ...] = ()
    drill: SendWait = field(default_factory=lambda: SendWait("", 0, 0))

    def to_data(self) -> dict[str, Any]:
        return {"drill": self.drill.to_data(), "steps": [s.to_data() for s in self.steps]}

    @classmethod
    def from_data(cls, data: Mapping[str, Any] | None) -> SendWaits:
        """What :meth:`to_data` stored; a digest without it (None) has no figures."""
        if not data:
            return cls()
        steps = tuple(SendWait.from_data(s) for s in data.get("steps", []))
        return cls(steps, SendWait.from_data(data["drill"]))


def _opt(value: Any) -> float | None:
    return None if value is None else float(value)


def send_wait_of(step: str, sent: int, waits: Sequence[float]) -> SendWait:
    """The figures of *waits* (seconds, those of the *sent* records that said)."""
    return SendWait(
        step,
        sent,
        len(waits),
        percentile(waits, 50),
        percentile(waits, 95),
        max(waits) if waits else None,
    )


def send_waits(deliveries: Iterable[Delivery]) -> SendWaits:
    """The wait before sending of each step of *deliveries*, and of all of them."""
    sent: dict[str, int] = {}
    waits: dict[str, list[float]] = {}
    for d in deliveries:
        sent[d.step] = sent.get(d.step, 0) + 1
        q = d.queue_s
        if q is not None:
            waits.setdefault(d.step, []).append(q)
    steps = tuple(send_wait_of(step, n, waits.get(step, [])) for step, n in sent.items())
    every = [q for step in sent for q in waits.get(step, [])]
    return SendWaits(steps, send_wait_of("", sum(sent.values()), every))
