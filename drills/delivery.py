"""What one drill message became: a :class:`Delivery` with an :class:`Outcome`.

Outcomes (DESIGN.md, "The probe contract")::

    delivered  seen at the far end within the step's latency SLO
    late       seen at the far end, after the SLO but before the timeout
    accepted   the provider took it, but this channel cannot confirm arrival
               (accepted-only kinds); shown as unconfirmed, never as delivered
    lost       not seen before the timeout, or the provider could not be reached
    rejected   the provider refused it (auth, 4xx/5xx, invalid recipient)
    error      the harness failed; never a channel fault, never a delivery

Latency is ``delivered_mono - sent_mono`` on the monotonic clock; wall-clock
times are kept for humans.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Delivery", "Outcome", "classify"]


class Outcome(enum.StrEnum):
    DELIVERED = "delivered"
    LATE = "late"
    ACCEPTED = "accepted"
    LOST = "lost"
    REJECTED = "rejected"
    ERROR = "error"

    @property
    def reached(self) -> bool:
        """Did the message reach the far end (confirmed)?"""
        return self in (Outcome.DELIVERED, Outcome.LATE)

    @property
    def counts_against_channel(self) -> bool:
        """Outcomes that are the channel's fault (``error`` is the harness's)."""
        return self in (Outcome.LOST, Outcome.REJECTED)


def classify(latency_s: float | None, slo_s: float, timed_out: bool = False) -> Outcome:
    """Outcome of a confirmed or timed-out delivery against a latency SLO.

    >>> classify(0.8, 60.0), classify(75.0, 60.0), classify(None, 60.0, timed_out=True)
    (<Outcome.DELIVERED: 'delivered'>, <Outcome.LATE: 'late'>, <Outcome.LOST: 'lost'>)
    """
    if timed_out or latency_s is None:
        return Outcome.LOST
    return Outcome.DELIVERED if latency_s <= slo_s else Outcome.LATE


@dataclass(frozen=True, slots=True)
class Delivery:
    """One drill message to one recipient over one channel, and what became of it."""

    run_id: str
    step: str
    municipality_code: str
    municipality_name: str
    channel_id: str
    kind: str
    token: str
    outcome: Outcome
    reason: str = ""
    recipient: str | None = None
    sent_at: float = 0.0  # wall clock, seconds since the epoch
    accepted_at: float | None = None  # wall clock
    delivered_at: float | None = None  # wall clock
    latency_s: float | None = None  # monotonic delivered - sent
    accept_latency_s: float | None = None  # monotonic accepted - sent
    error_bound_s: float | None = None
    slo_latency_s: float | None = None
    throttled: int = 0
    vantage: str = "default"
    scenario: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["outcome"] = self.outcome.value
        return data
