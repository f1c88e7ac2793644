"""Ground truth: check journal records against the simulators' ledgers.

Every simulator keeps a :class:`probes.sim.ledger.Ledger` of what really
happened to each drill token at its far end. :func:`compare` holds every
:class:`~drills.core.delivery.Delivery` of a run against those ledgers and returns
one :class:`Disagreement` per record that says something else than what
happened. Zero disagreements is the bar (the oracle tests, ``tsunagari demo``).

    >>> from probes.sim.ledger import Ledger
    >>> ledger = Ledger("webhook")
    >>> entry = ledger.received("131211/chat", "TSG-0000000000AB", at=100.0)
    >>> ledger.visible(entry, at=100.3)
    >>> d = Delivery("r", "s", "131211", "足立区", "chat", "webhook", "TSG-0000000000AB",
    ...              Outcome.LOST, extra={"sent_mono": 100.0, "watched_until_mono": 105.0})
    >>> [x.rule for x in compare([d], [ledger])]
    ['visible-not-reached']

Rules (one record, its ledger entry by token and recipient)::

    visible before the harness stopped watching
        → delivered or late (or accepted: nobody observes that recipient; or
          error: the harness could not look), and for delivered/late
          sent + latency ≥ visible − EARLY_S                       (never earlier)
          sent + latency ≤ visible + error_bound_s + SLACK_S       (not later than it says)
    never visible (dropped, refused, never received, down)
        → never delivered/late, never evidence "receipt"
    refused by the far end (and never taken)   → rejected (or lost, when its last retry
                                                 was still unanswered at the timeout)
    rejected                                   → the far end did refuse it (never visible),
                                                 as often as the record counts
    lost while its last retry was unanswered   → the far end refused it at least as often
      (reason_code rate_limited)                 as the record counts, at most once more
    sent into an outage the drill itself made and not seen → drill_outage (not lost);
    drill_outage                               → such an outage, and not seen
    accepted (evidence "accepted")             → the far end took it (or never heard of
                                                 it only if the kind keeps no ledger)
    error                                      → never judged against the ledger

*Times.* Ledgers are on the machine's monotonic clock. The runner writes the
send instant on that clock into ``extra["sent_mono"]`` — when the message
left, never earlier than the harness's own queue let it (:mod:`probes.sendmark`;
the queue is ``extra["queue_s"]``), so ``sent_mono ≤ received_at`` of its
ledger entry — and the instant it
stopped watching into ``extra["watched_until_mono"]``; with them the
comparison is exact. A record without them (older journals, other writers)
is converted from its wall-clock ``sent_at`` with the wall-minus-monotonic
offset measured when :func:`compare` runs (``wall_minus_mono``); a wall clock
that was slewed since adds error, which :data:`EARLY_S` (2 ms) absorbs for the
"never earlier" check. Such records skip the "visible but not reached" check
(when the harness stopped watching is not known).

*Grace for "seen before it stopped watching".* An observer notices an arrival
up to its error bound after it became visible. A message that became visible
shortly before the harness stopped watching may honestly be ``lost``. The
grace is the largest ``error_bound_s`` any sighting on the same channel
reported in the records compared (the observer's own word, not a guess), plus
:data:`SLACK_S`.

*Drill-made outages* are passed in ``outages`` (what the drill itself did;
:attr:`drills.core.runner.Drill.drill_outages`), keyed by the channel key
``"<municipality code>/<channel id>"``. A message counts as sent into one when
the outage overlaps ``[sent, watched until]`` — the same rule the runner uses.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from drills.core.delivery import Delivery, Evidence, Outcome
from probes.sim.ledger import Entry, Fate, Ledger, Outage

__all__ = ["EARLY_S", "SLACK_S", "Disagreement", "compare", "in_outage", "summary_line"]

EARLY_S = 0.002  # wall→monotonic conversion and clock-read order (see the module docstring)
SLACK_S = 0.020  # what the issue allows beyond a record's own error bound


@dataclass(frozen=True, slots=True)
class Disagreement:
    """One record that says something else than its ledger.

    ``rule`` is a stable short id (tests and the oracle match on it); ``detail``
    says what the record claims and what really happened, in numbers.
    """

    rule: str
    channel: str  # "<municipality code>/<channel id>"
    token: str
    recipient: str | None
    outcome: str
    detail: str

    def __str__(self) -> str:
        who = f"{self.channel} {self.token}" + (f" → {self.recipient}" if self.recipient else "")
        return f"[{self.rule}] {who}: {self.outcome}: {self.detail}"


def in_outage(outages: Iterable[Outage], channel: str, start: float, end: float) -> bool:
    """Does any of *outages* of *channel* overlap ``[start, end]`` (monotonic)?"""
    return any(
        o.channel == channel and o.start <= end and (o.end is None or o.end >= start)
        for o in outages
    )


def _ledger_list(ledgers: Iterable[Ledger] | Mapping[str, Ledger]) -> list[Ledger]:
    if isinstance(ledgers, Mapping):
        return list(ledgers.values())
    return list(ledgers)


def _find(ledgers: list[Ledger], token: str, recipient: str | None) -> Entry | None:
    for ledger in ledgers:
        entry = ledger.entry(token, recipient)
        if entry is not None:
            return entry
    if recipient is not None:  # a far end that keys by token alone (one reader per channel)
        for ledger in ledgers:
            entry = ledger.entry(token, None)
            if entry is not None:
                return entry
    return None


def compare(
    deliveries: Iterable[Delivery],
    ledgers: Iterable[Ledger] | Mapping[str, Ledger],
    *,
    outages: Iterable[Outage] = (),
    wall_minus_mono: float | None = None,
) -> list[Disagreement]:
    """Every record of *deliveries* that disagrees with the *ledgers* (see the module rules).

    *ledgers*: the simulators' ledgers (any order; tokens are unique). *outages*:
    the outages the drill itself made. Records of channels that keep no ledger
    entry for their token (live channels) are judged only where the rules say so.
    """
    records = list(deliveries)
    books = _ledger_list(ledgers)
    made = list(outages)
    offset = time.time() - time.monotonic() if wall_minus_mono is None else wall_minus_mono
    grace: dict[str, float] = {}
    for d in records:
        if d.outcome.reached and d.error_bound_s is not None:
            key = f"{d.municipality_code}/{d.channel_id}"
            grace[key] = max(grace.get(key, 0.0), d.error_bound_s)
    out: list[Disagreement] = []
    for d in records:
        out.extend(_judge(d, _find(books, d.token, d.recipient), made, offset, grace))
    return out


def _judge(
    d: Delivery,
    e: Entry | None,
    outages: list[Outage],
    offset: float,
    grace: Mapping[str, float],
) -> list[Disagreement]:
    key = f"{d.municipality_code}/{d.channel_id}"
    found: list[Disagreement] = []

    def bad(rule: str, detail: str) -> None:
        found.append(Disagreement(rule, key, d.token, d.recipient, d.outcome.value, detail))

    if d.outcome is Outcome.ERROR:
        return found
    exact = "sent_mono" in d.extra
    sent = float(d.extra["sent_mono"]) if exact else d.sent_at - offset
    watched = d.extra.get("watched_until_mono")
    until = float(watched) if watched is not None else None
    visible = e.visible_at if e is not None else None
    if e is not None and e.channel != key:
        bad("wrong-channel", f"the ledger has this token on {e.channel}")
    seen_in_time = (
        visible is not None
        and until is not None
        and visible <= until - grace.get(key, 0.0) - SLACK_S
    )
    drill_made = in_outage(outages, key, sent, until if until is not None else sent)
    outcome = d.outcome

    if outcome.reached:
        if visible is None:
            fate = e.fate.value if e is not None else "never received"
            bad("reached-not-visible", f"recorded {outcome.value} but the far end says {fate}")
        elif d.latency_s is not None:
            arrived = sent + d.latency_s
            bound = d.error_bound_s or 0.0
            early = visible - EARLY_S
            if arrived < early:
                bad(
                    "earlier-than-visible",
                    f"sent + latency = {arrived - visible:+.4f} s from the visible time",
                )
            elif arrived > visible + bound + SLACK_S:
                bad(
                    "later-than-bound",
                    f"sent + latency is {arrived - visible:.4f} s after the visible time, "
                    f"beyond error_bound_s {bound:.4f} + {SLACK_S:g} s",
                )
        else:
            bad("reached-without-latency", "a confirmed arrival without a latency")
        if d.evidence not in (Evidence.SEEN, Evidence.RECEIPT):
            bad("evidence", f"confirmed with evidence {d.evidence}")
    elif outcome is Outcome.ACCEPTED:
        if d.evidence is Evidence.RECEIPT and visible is None:
            bad("receipt-not-visible", "a carrier receipt for a message never visible")
        if e is not None and e.received_at is None:
            bad("accepted-not-received", f"recorded accepted but the far end says {e.fate.value}")
    elif outcome is Outcome.LOST:
        if seen_in_time:
            assert visible is not None and until is not None
            bad(
                "visible-not-reached",
                f"visible {visible - sent:.4f} s after sending, "
                f"{until - visible:.4f} s before the harness stopped watching",
            )
        elif drill_made and visible is None:
            bad("drill-outage-as-lost", "sent into an outage the drill made, recorded lost")
        elif d.extra.get("reason_code") == "rate_limited":  # its last retry: unanswered
            counted = d.throttled or 0
            if e is not None and not counted <= e.refusals <= counted + 1:
                bad("throttle-count", f"{counted} counted (+1 unread), {e.refusals} refused")
        elif e is not None and e.fate is Fate.REFUSED:
            bad("refused-not-rejected", f"the far end refused it ({', '.join(e.refusal_codes)})")
    elif outcome is Outcome.REJECTED:
        if visible is not None:
            bad("rejected-but-visible", f"visible {visible - sent:.4f} s after sending")
        elif e is not None and e.refusals == 0:
            bad("rejected-not-refused", f"the far end did not refuse it (fate {e.fate.value})")
        elif e is not None and d.throttled and e.refusals != d.throttled:
            bad("throttle-count", f"{d.throttled} counted, {e.refusals} refused")
    elif outcome is Outcome.DRILL_OUTAGE:
        if seen_in_time:
            bad("visible-in-drill-outage", "arrived although sent into the drill's outage")
        if not drill_made:
            bad("drill-outage-without-outage", "no outage the drill made covers this send")
    if not outcome.reached and outcome is not Outcome.ACCEPTED and d.evidence is not None:
        bad("evidence", f"{outcome.value} with evidence {d.evidence}")
    return found


def summary_line(disagreements: list[Disagreement], total: int, lang: str = "ja") -> str:
    """``ground truth: N records agree / M disagree`` (Japanese first, like the CLI)."""
    bad = len({(x.token, x.recipient) for x in disagreements})
    ok = total - bad
    if lang == "ja":
        return f"実測との照合（ground truth）: {ok} 件一致 / {bad} 件不一致"
    return f"ground truth: {ok} records agree / {bad} disagree"
