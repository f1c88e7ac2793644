"""One delivery: send a drill message, watch for it, and write down what became of it.

:func:`attempt` is the runner's (:class:`drills.core.runner.Drill`) work for one
message to one recipient: the send, inside its pacing slot and send mark; the
wait for the sighting; the record. The runner commits the record and passes it on.

What a delivery record says (the outcomes and evidence in :mod:`drills.core.delivery`):

- A recipient no observer covers (``probe.observes(recipient)`` is False) is
  ``accepted``, evidence ``accepted`` — never ``lost``.
- A sighting's evidence (``seen``/``receipt``) is the record's evidence.
- Not seen within the timeout while ``probe.observer_trouble()`` names a reason:
  ``error`` ("the drill could not look"), not ``lost``.
- A send that ran out of time while the provider kept saying "slow down"
  (``probe.throttling(token)``): ``rejected``, with the count and the last code —
  unless a retry was on its way at the cut (``unanswered``): the far end may have
  taken it, so ``lost`` (not seen within the timeout), code ``rate_limited``.
- A send whose answer never came within the timeout, while the observer had
  already seen the message arrive: the sighting is the record (the far end took it).
- Not seen, and sent into an outage the drill itself made (:meth:`Drill.take_down`
  … :meth:`Drill.restore`, overlapping ``[sent, watched until]``):
  ``drill_outage``. A message that arrived anyway stays ``delivered``/``late``.
- Every record not delivered carries ``extra["reason_code"]``: the probe's own code
  (:func:`drills.core.reasons.fault_code`) or the harness's (``not_seen``,
  ``unanswered``, ``rate_limited``, ``observer_trouble``, ``drill_outage``,
  ``interrupted``, ``over_slo`` …); :mod:`drills.core.taxonomy` turns it into a stage
  and a cause.

*When a message was sent.* ``sent_mono`` is the instant it left
(:mod:`probes.sendmark`: the write of the HTTP request carrying its token, the
start of the SMTP transaction; ``extra["sent_how"]`` says which, ``"call"`` when
the send path could not say and the instant ``send`` was called stands in).
Waiting for a pacing slot (:mod:`drills.core.pacing`), a connection or a busy
loop is ``extra["queue_s"]`` (from the moment the runner wanted to send), never
latency: a drill does not report a channel slower because the harness was busy.

*Error bound and loop lag.* ``error_bound_s`` = the observer's own bound for
the sighting + the event loop's lag at sighting (+ its lag at send when
``sent_how`` is ``"call"``: such a send may have left later). The lag is
measured by a :class:`drills.core.loop_lag.LagMonitor` on the drill's loop: a 10 ms
timer notes how late it ran; the lag at an instant is the lateness of the first
tick at or after it (the runner waits for that tick before it writes the
record). ``extra["loop_lag_s"]`` keeps the lag part. When the SLO lies within
``[latency - error_bound_s, latency]`` the record is flagged
``extra["slo_edge"] = True`` (the outcome follows the measured latency).

*Ground truth.* Every record carries the monotonic send instant
``extra["sent_mono"]`` and, when not confirmed, the instant the runner stopped
watching ``extra["watched_until_mono"]``, so :func:`drills.core.truth.compare` can
hold it against the simulators' ledgers exactly.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from drills.core import interrupt
from drills.core.delivery import Delivery, Evidence, Outcome, classify
from drills.core.pacing import PacingStats
from drills.core.reasons import fault_code as _fault_code
from drills.core.reasons import fault_outcome as _fault_outcome
from drills.core.reasons import rate_limited as _rate_limited
from drills.core.reasons import unanswered as _unanswered
from drills.core.registry import Target
from probes.base import (
    Accepted,
    ChannelUnreachable,
    Clock,
    DrillMessage,
    ExplainsTimeout,
    Probe,
    Sighting,
    new_token,
)
from probes.sendmark import SendMark
from probes.sendmark import opened as send_marked

if TYPE_CHECKING:
    from drills.core.loop_lag import LagMonitor
    from drills.core.runner import Drill

__all__ = ["StepSpec", "attempt"]


@dataclass(frozen=True)
class StepSpec:
    """What one broadcast step sends, and how it is judged."""

    name: str
    text: str
    subject: str
    timeout: float
    slo: float | None


async def attempt(
    drill: Drill,
    spec: StepSpec,
    target: Target,
    probe: Probe,
    recipient: str | None,
    queued: float,
    pacing: PacingStats | None = None,
) -> Delivery | None:
    """Send *spec*'s message to *recipient* of *target* and watch for it; its record.

    None: a signal (SIGTERM/SIGINT) came before the message left — nothing was sent.
    *queued* is when the runner wanted to send (``queue_s`` counts from it).
    """
    run_id = drill.start()
    step, timeout, slo = spec.name, spec.timeout, spec.slo
    slo_s = slo if slo is not None else target.channel.slo.latency
    message = DrillMessage(
        token=new_token(),
        text=spec.text,
        marker=drill.registry.marker,
        subject=spec.subject,
        recipient=recipient,
        meta={"run_id": run_id, "step": step, "municipality": target.municipality.code},
    )
    base: dict[str, Any] = {
        "run_id": run_id,
        "step": step,
        "municipality_code": target.municipality.code,
        "municipality_name": target.municipality.name,
        "channel_id": target.channel.id,
        "kind": target.channel.kind,
        "token": message.token,
        "recipient": recipient,
        "slo_latency_s": slo_s,
        "vantage": drill.vantage,
        "scenario": drill.scenario,
    }
    failed = drill._open_failures.get(target.key)
    wall_minus_mono = Clock.wall() - Clock.monotonic()
    mark = SendMark(message.token, queued)
    sent_mono = Clock.monotonic()  # until the message has left: now (nothing was sent)
    extra: dict[str, Any] = {}

    def when_sent(handed: bool = True) -> None:
        """Put the instant the message left (or the fallback) into the record.

        *handed*: the message was handed to the send, so its wait in the harness
        (``queue_s``) is a fact; a channel that could not be opened has none.
        """
        nonlocal sent_mono
        sent_mono, how = mark.sent_instant()
        extra["sent_mono"] = sent_mono
        extra["sent_how"] = how
        if handed:
            extra["queue_s"] = round(max(0.0, sent_mono - queued), 6)
        base["sent_at"] = wall_minus_mono + sent_mono

    def unseen(outcome: Outcome, reason: str, code: str) -> Delivery:
        """A record of a message not confirmed: the drill's own outage wins over lost.

        *code* is its reason code (``extra["reason_code"]``, :mod:`drills.core.taxonomy`).
        """
        until = Clock.monotonic()
        extra["watched_until_mono"] = until
        extra["reason_code"] = code
        if outcome is Outcome.LOST and drill._in_drill_outage(target.key, sent_mono, until):
            outcome = Outcome.DRILL_OUTAGE
            extra["reason_code"] = "drill_outage"
            reason = (
                "訓練で停止させたチャネルへの送信（チャネルの障害ではありません） / sent into "
                f"an outage the drill itself made (not the channel's fault): {reason}"
            )
        return Delivery(**base, outcome=outcome, reason=reason, extra=extra)

    when_sent(handed=failed is None)
    if failed is not None:
        outcome, reason = _fault_outcome(failed)
        ja, sep, en = reason.partition(" / ")
        at_open = f"{ja}（開始時） / {en} (open)" if sep else f"{reason} (open)"
        return unseen(outcome, at_open, _fault_code(failed))
    observing: asyncio.Future[Sighting] | None = None
    if probe.confirms() and probe.observes(recipient):
        observing = asyncio.ensure_future(probe.observe(message))
    accepted: Accepted | None = None
    try:
        # The observer was started outside the mark: only the send's own tasks see it.
        with send_marked(mark):
            async with drill._pacer.slot(pacing):
                if interrupt.stopping():  # stopped while it waited its turn: never sent
                    if observing is not None:
                        observing.cancel()
                    return None
                mark.called = Clock.monotonic()
                async with asyncio.timeout(timeout):  # in this task: no task per send
                    accepted = await probe.send(message)
    except BaseException as exc:
        seen = _seen_already(observing)
        if observing is not None:
            observing.cancel()
        if mark.called is None and isinstance(exc, asyncio.CancelledError):
            if interrupt.stopping():  # cut while it waited for its turn: never sent
                return None
            raise
        when_sent()
        if isinstance(exc, asyncio.CancelledError):
            if interrupt.stopping():  # cut by a signal: sent, fate unknown, said so
                return unseen(Outcome.ERROR, interrupt.INTERRUPTED_REASON, "interrupted")
            raise
        throttled = probe.throttling(message.token) if isinstance(exc, TimeoutError) else None
        if throttled is not None and throttled.count > 0:
            base["throttled"] = throttled.count
        if seen is not None and isinstance(exc, TimeoutError):  # taken: its answer was late
            return await _sighted(drill.lag, base, extra, seen, sent_mono, slo_s)
        if throttled is not None and throttled.count > 0:
            return unseen(*_rate_limited(throttled, timeout), "rate_limited")
        if isinstance(exc, ChannelUnreachable | TimeoutError):  # say who saw what, how long
            waited = Clock.monotonic() - sent_mono
            opened = drill._open_s.get(target.key, 0.0)
            code = _fault_code(exc) if isinstance(exc, ChannelUnreachable) else "unanswered"
            said = _unanswered(exc, probe, waited, opened, mark.called)
            return unseen(Outcome.LOST, said, code)
        outcome, reason = _fault_outcome(exc, sending=True)
        return unseen(outcome, reason, _fault_code(exc, sending=True))
    when_sent()
    accept_latency = accepted.at - sent_mono
    base.update(
        accepted_at=base["sent_at"] + accept_latency,
        accept_latency_s=accept_latency,
        throttled=accepted.throttled,
    )
    if accepted.provider_id:
        extra["provider_id"] = accepted.provider_id
    if accepted.segments is not None:
        extra["segments"] = accepted.segments
    if accepted.detail:
        extra["accepted_detail"] = accepted.detail
    if observing is None:
        unconfirmed = (
            "観測対象外の宛先・着信未確認 / no observer covers this recipient, arrival not confirmed"
            if probe.confirms()
            else "受付のみ・着信未確認 / accepted only, arrival not confirmable"
        )
        return Delivery(
            **base,
            outcome=Outcome.ACCEPTED,
            reason=unconfirmed,
            extra=extra,
            evidence=Evidence.ACCEPTED,
        )
    remaining = timeout - (Clock.monotonic() - sent_mono)
    try:
        # wait_for, not a timeout around the await: cut in the very turn the sighting came,
        # wait_for still returns it (the record says seen, not "interrupted")
        sighting = await asyncio.wait_for(observing, max(remaining, 0.0))
    except TimeoutError:
        trouble = probe.observer_trouble()
        if trouble is not None:
            ja, sep, en = trouble.partition(" / ")
            return unseen(
                Outcome.ERROR,
                f"訓練側が着信を確認できませんでした（{timeout:g} 秒待機）: {ja} / the drill "
                f"could not look (waited {timeout:g} s): {en if sep else ja}",
                "observer_trouble",
            )
        told = probe.timeout_reason(message) if isinstance(probe, ExplainsTimeout) else None
        return unseen(
            Outcome.LOST,
            str(told or f"{timeout:g} 秒以内に着信を確認できず / not seen within {timeout:g} s"),
            "not_seen",
        )
    except asyncio.CancelledError:
        if interrupt.stopping():
            return unseen(Outcome.ERROR, interrupt.INTERRUPTED_REASON, "interrupted")
        raise
    except BaseException as exc:
        outcome, reason = _fault_outcome(exc)
        return unseen(outcome, reason, _fault_code(exc))
    return await _sighted(drill.lag, base, extra, sighting, sent_mono, slo_s)


def _seen_already(observing: asyncio.Future[Sighting] | None) -> Sighting | None:
    """The observer's sighting if it has one by now (None: still looking, or it failed)."""
    if observing is None or not observing.done() or observing.cancelled():
        return None
    return observing.result() if observing.exception() is None else None


async def _sighted(
    monitor: LagMonitor,
    base: dict[str, Any],
    extra: dict[str, Any],
    sighting: Sighting,
    sent_mono: float,
    slo_s: float,
) -> Delivery:
    """The record of a confirmed arrival: latency, evidence, bound with loop lag, SLO edge."""
    latency = sighting.at - sent_mono
    try:
        await monitor.settle(sighting.at)
    except asyncio.CancelledError:
        if not interrupt.stopping():
            raise
        # Seen before a signal cut the step: the message arrived, and its record is
        # kept. The tick that measures the lag is a period plus the lag away (at once
        # when the monitor has stopped).
        await monitor.settle(sighting.at)
    lag = monitor.lag_around(sighting.at)
    if extra.get("sent_how") == "call":  # not stamped at the write: it may have left later
        lag += monitor.lag_at(sent_mono)
    bound = sighting.error_bound_s + lag
    extra.update(sighting.extra)
    extra["loop_lag_s"] = round(lag, 6)
    if sighting.detail:
        extra["seen_detail"] = sighting.detail
    if latency - bound <= slo_s <= latency:  # the true latency may be on either side
        extra["slo_edge"] = True
    if latency > slo_s:
        extra["reason_code"] = "over_slo"
    evidence = Evidence(sighting.evidence)
    return Delivery(
        **base,
        outcome=classify(latency, slo_s),
        reason="" if latency <= slo_s else f"SLO {slo_s:g} 秒超過 / over the {slo_s:g} s SLO",
        delivered_at=base["sent_at"] + latency,
        latency_s=latency,
        error_bound_s=bound,
        extra=extra,
        evidence=evidence,
    )
