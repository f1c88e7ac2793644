"""What one drill message became: a :class:`Delivery` with an :class:`Outcome`.

Outcomes (DESIGN.md, "The probe contract")::

    delivered     arrived at the far end within the step's latency SLO
    late          arrived at the far end, after the SLO but before the step ended
    accepted      the provider took it, but nothing could confirm arrival for this
                  recipient (accepted-only kinds, a recipient no observer covers);
                  shown as unconfirmed, never as delivered, never as lost
    lost          not seen before the step ended, or the provider could not be reached
    rejected      the provider refused it (auth, 4xx/5xx, invalid recipient, rate
                  limited until the step ended, a TLS mode the server does not offer)
    error         the harness or its observer failed (it could not look); never a
                  channel fault, never a delivery
    drill_outage  sent into an outage the drill itself made (``drill.outage``) and
                  not seen: the drill's doing, shown, never scored against the channel

*Evidence* says how an arrival (or acceptance) is known, apart from the outcome::

    seen      our observer saw it where a person reads it (mailbox, chat read-back,
              the SMS loopback number)
    receipt   the provider or carrier reports delivery (Twilio "delivered")
    accepted  the provider took it; nothing more is known

``delivered``/``late`` carry ``seen`` or ``receipt``; ``accepted`` carries
``accepted`` (or ``receipt`` where a carrier receipt came for an unobserved
recipient). Failures carry no evidence.

Reasons and ``extra`` are redacted when a record is made (:mod:`probes.redact`):
a provider's error that quotes a credential is kept with the value as ``***``.

Latency is ``delivered_mono - sent_mono`` on the monotonic clock, where the
send instant is when the message actually left (:mod:`probes.sendmark`: the
write of the HTTP request that carries it, the start of the SMTP transaction),
not when the harness queued it; the time it waited in the harness (pacing, a
connection, a busy loop) is :attr:`Delivery.queue_s`, never latency. Wall-clock
times are kept for humans. ``error_bound_s`` is how much later than the true
arrival the harness may have noticed it (the observer's own bound per sighting
plus the event loop's lag at sighting, and at send too when the send path could
not stamp the instant it left: ``extra["sent_how"] == "call"``).

At the SLO's edge: the outcome follows the measured latency; when the SLO lies
within ``[latency - error_bound_s, latency]`` the record is flagged
``extra["slo_edge"] = True`` (the true latency may be on the other side).
"""

from __future__ import annotations

import enum
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from probes.redact import redact, redact_data

__all__ = ["Delivery", "Evidence", "Outcome", "classify"]


class Outcome(enum.StrEnum):
    DELIVERED = "delivered"
    LATE = "late"
    ACCEPTED = "accepted"
    LOST = "lost"
    REJECTED = "rejected"
    ERROR = "error"
    DRILL_OUTAGE = "drill_outage"

    @property
    def reached(self) -> bool:
        """Did the message reach the far end (confirmed, by sight or receipt)?"""
        return self in (Outcome.DELIVERED, Outcome.LATE)

    @property
    def counts_against_channel(self) -> bool:
        """Outcomes that are the channel's fault (``error`` is the harness's)."""
        return self in (Outcome.LOST, Outcome.REJECTED)

    @property
    def counted(self) -> bool:
        """Does this outcome say something about the channel (scored, in reachability)?

        Harness/observer faults and the drill's own outages do not.
        """
        return self not in (Outcome.ERROR, Outcome.DRILL_OUTAGE)


class Evidence(enum.StrEnum):
    """How an arrival is known: seen by our observer, a provider's receipt, or acceptance only."""

    SEEN = "seen"
    RECEIPT = "receipt"
    ACCEPTED = "accepted"


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
    evidence: Evidence | None = None

    def __post_init__(self) -> None:
        # A reason or detail quoting a provider's answer may echo a credential.
        object.__setattr__(self, "reason", redact(self.reason))
        object.__setattr__(self, "extra", redact_data(self.extra))
        # Records written before evidence existed: a confirmed arrival was seen, an
        # accepted-only one was accepted.
        if self.evidence is None:
            if self.outcome.reached:
                object.__setattr__(self, "evidence", Evidence.SEEN)
            elif self.outcome is Outcome.ACCEPTED:
                object.__setattr__(self, "evidence", Evidence.ACCEPTED)
        elif not isinstance(self.evidence, Evidence):
            object.__setattr__(self, "evidence", Evidence(self.evidence))

    @property
    def queue_s(self) -> float | None:
        """Seconds the message waited in the harness before it left; never latency.

        The one reader of ``extra["queue_s"]`` (the runner writes it): from the
        moment the runner wanted to send to the moment the message left — a
        pacing slot, a free connection, a busy event loop. None when the record
        does not say: journalled before it was recorded, a value that is not a
        finite number ≥ 0, or a message that never left (its channel could not
        be opened: nothing was handed to the send — the runner writes no wait;
        journals of 2026-12-05 and before wrote exactly 0 with ``sent_how``
        ``"call"``, read as None too).

        >>> from dataclasses import replace
        >>> d = Delivery("r", "s", "131211", "足立区", "chat", "webhook", "TSG-0",
        ...              Outcome.DELIVERED, extra={"queue_s": 0.25, "sent_how": "http"})
        >>> d.queue_s, replace(d, extra={}).queue_s
        (0.25, None)
        >>> replace(d, extra={"queue_s": 0.0, "sent_how": "call"}).queue_s is None
        True
        """
        value = self.extra.get("queue_s")
        if not isinstance(value, int | float) or isinstance(value, bool):
            return None
        if not math.isfinite(value) or value < 0:
            return None
        if value == 0 and self.extra.get("sent_how") == "call":  # never handed to send
            return None
        return float(value)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["outcome"] = self.outcome.value
        data["evidence"] = self.evidence.value if self.evidence is not None else None
        return data
