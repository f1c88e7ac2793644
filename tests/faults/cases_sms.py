"""Fault matrix, SMS rows: the local Twilio misbehaves, the official twilio client meets it.

Each case is one drill (``tests/faults/simdrill.py``: the operator API over a file
journal, checked for no traceback, an intact journal, a ``finished`` run, bilingual
reasons and agreement with the simulator's ledger) over one simulated ``twilio``
channel with one recipient; the fault is injected through the simulator's hooks
(:meth:`probes.sim.twilio.TwilioSimulator.inject`, ``drop_callbacks``,
``tamper_signatures``).

What each fault must become (README "Reliability / 信頼性")::

    429, Retry-After: 1            delivered, throttled 1, the create waited ≥ 1 s
    429, Retry-After: <HTTP date>  delivered, throttled 1, waited until that date
    500 (20500)                    rejected (temporary), "20500" in the reason
    request timeout                lost, "did not answer within 0.5 s"; never taken
    stuck at sent                  lost, "no carrier receipt (still 'sent')"
    status callback never arrives  delivered by the fallback poll (evidence receipt)
    callback with a bad signature  refused (403) and not counted: error, "the drill
                                   could not look … X-Twilio-Signature does not match"
"""

from __future__ import annotations

import email.utils
from pathlib import Path

from drills.core.delivery import Evidence, Outcome
from probes.sim.twilio import TwilioSimulator
from tests.faults.matrix import FaultCase
from tests.faults.simdrill import SimDrill, sim_drill

__all__ = ["CASES"]

PHONE = "+819011110001"


def registry(extra: str = "", latency: str = "100ms", slo: str = "2s") -> str:
    return f"""\
defaults:
  slo: {{latency: {slo}}}
municipalities:
  - code: "131211"
    name: 足立区
    channels:
      - id: sms
        kind: twilio
        to: ["{PHONE}"]
        poll_interval: 50ms
        request_timeout: 500ms
        sim: {{latency: {latency}}}
{extra}"""


def _sim(run: SimDrill) -> TwilioSimulator:
    sim = run.sim("sms")
    assert isinstance(sim, TwilioSimulator)
    return sim


def _throttled_once(tmp_path: Path, *, date: bool) -> None:
    with sim_drill(tmp_path, registry(slo="5s")) as run:
        sim = _sim(run)
        fault = run.on_loop(lambda: sim.inject("429", retry_after=1, retry_after_date=date))
        run.broadcast(4.0)
    d = run.one()
    assert d.outcome is Outcome.DELIVERED and d.throttled == 1, (d.outcome, d.reason, d.throttled)
    creates = sim.creates()
    assert [r.status for r in creates] == [429, 201], creates
    (taken,) = sim.messages.values()
    (header,) = fault.sent
    # The probe waited as told, not its own 0.5 s backoff: the create it retried was taken
    # (the simulator's own clocks) no sooner than 1 s after the 429, or than the date.
    if date:
        until = email.utils.parsedate_to_datetime(header).timestamp()
        assert taken.created_wall >= until, (header, taken.created_wall - until)
    else:
        assert header == "1" and taken.created_mono - creates[0].at >= 1.0
    e = run.entry(d)
    assert e is not None and e.refusal_codes == ["20429"] and e.visible_at is not None, e


def case_429_seconds(tmp_path: Path) -> None:
    _throttled_once(tmp_path, date=False)


def case_429_date(tmp_path: Path) -> None:
    _throttled_once(tmp_path, date=True)


def case_500(tmp_path: Path) -> None:
    with sim_drill(tmp_path, registry()) as run:
        sim = _sim(run)
        run.on_loop(lambda: sim.inject("500"))
        run.broadcast(1.5)
    d = run.one()
    assert d.outcome is Outcome.REJECTED and "20500" in d.reason, (d.outcome, d.reason)
    assert [r.status for r in sim.creates()] == [500]


def case_timeout(tmp_path: Path) -> None:
    with sim_drill(tmp_path, registry()) as run:
        sim = _sim(run)
        run.on_loop(lambda: sim.inject("timeout"))
        run.broadcast(2.0)
    d = run.one()
    assert d.outcome is Outcome.LOST, (d.outcome, d.reason)
    assert "did not answer within 0.5 s" in d.reason and "0.5 秒" in d.reason, d.reason
    assert run.entry(d) is None  # held, never taken
    assert sim.messages == {}


def case_stuck_sent(tmp_path: Path) -> None:
    with sim_drill(tmp_path, registry()) as run:
        sim = _sim(run)
        run.on_loop(lambda: sim.inject("stuck_sent"))
        run.broadcast(1.0)
    d = run.one()
    assert d.outcome is Outcome.LOST and "still 'sent'" in d.reason, (d.outcome, d.reason)
    assert [m.data["status"] for m in sim.messages.values()] == ["sent"]


CALLBACK = """\
        status_callback: {fallback_poll: %s}
        poll_interval: null
"""


def case_callback_never_arrives(tmp_path: Path) -> None:
    yaml = registry(CALLBACK % "200ms").replace("        poll_interval: 50ms\n", "")
    with sim_drill(tmp_path, yaml) as run:
        sim = _sim(run)
        run.on_loop(lambda: setattr(sim, "drop_callbacks", True))
        run.broadcast(2.0)
    d = run.one()
    assert d.outcome is Outcome.DELIVERED and d.evidence is Evidence.RECEIPT, (d.outcome, d.reason)
    assert "polling" in str(d.extra.get("seen_detail")), d.extra
    statuses = [status for _, _, status in sim.callbacks]
    assert statuses and set(statuses) == {-1}, statuses  # every callback lost, none arrived


def case_callback_bad_signature(tmp_path: Path) -> None:
    # The fallback poll (30 s) does not come within the step: only callbacks could confirm.
    yaml = registry(CALLBACK % "30s").replace("        poll_interval: 50ms\n", "")
    with sim_drill(tmp_path, yaml) as run:
        sim = _sim(run)
        run.on_loop(lambda: setattr(sim, "tamper_signatures", True))
        run.broadcast(1.0)
    d = run.one()
    assert d.outcome is Outcome.ERROR, (d.outcome, d.reason)
    assert "X-Twilio-Signature" in d.reason and "署名" in d.reason, d.reason
    statuses = [status for _, _, status in sim.callbacks]
    assert statuses and set(statuses) == {403}, statuses  # refused, every one
    e = run.entry(d)
    assert e is not None and e.visible_at is not None  # it arrived; the drill could not tell


CASES: list[FaultCase] = [
    FaultCase("sms-429-retry-after-seconds", case_429_seconds),
    FaultCase("sms-429-retry-after-http-date", case_429_date),
    FaultCase("sms-500", case_500),
    FaultCase("sms-request-timeout", case_timeout),
    FaultCase("sms-stuck-at-sent", case_stuck_sent),
    FaultCase("sms-callback-never-arrives", case_callback_never_arrives),
    FaultCase("sms-callback-bad-signature", case_callback_bad_signature),
]
