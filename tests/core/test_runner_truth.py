"""The runner records what happened: observers, evidence, throttling, loop lag, SLO edge.

Fake probes make each case exact; the times they report are the truth the
records are judged against (no sleeps decide an outcome).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from drills.core.delivery import Evidence, Outcome
from drills.core.journal import Journal
from drills.core.registry import parse_registry
from drills.core.runner import Drill
from probes.base import Accepted, DrillMessage, Probe, Sighting

REG = """\
defaults: {slo: {latency: 1s}}
municipalities:
  - code: "131211"
    name: 足立区
    channels:
      - {id: chat, kind: webhook, sim: {latency: 10ms}}
"""


@pytest.fixture
def journal(tmp_path):
    j = Journal(tmp_path / "journal.sqlite")
    yield j
    j.close()


class FakeProbe(Probe):
    """Sends at once; each recipient is seen ``far_s`` after its message was sent (or never)."""

    kind = "webhook"

    def __init__(self, key: str, env: Any, **kw: Any) -> None:
        super().__init__(key, None, env)  # type: ignore[arg-type]
        self.people: list[str | None] = kw.get("people", [None])
        self.watched: set[str | None] = kw.get("watched", set(self.people))
        self.far_s: float | None = kw.get("far_s", 0.01)
        self.evidence: str = kw.get("evidence", "seen")
        self.bound_s: float = kw.get("bound_s", 0.001)
        self.trouble: str | None = kw.get("trouble")
        self.throttle: str | None = kw.get("throttle")  # keep saying "slow down"
        self.hold_retry: bool = kw.get("hold_retry", False)  # then a retry never answered
        self.accept_after: float = kw.get("accept_after", 0.0)
        self.block_s: float = kw.get("block_s", 0.0)  # loop busy between arrival and sighting
        self.visible: dict[str, float] = {}
        self.sent: dict[str, float] = {}
        self.went: dict[str, asyncio.Event] = {}  # set when the token's send began
        self.accepted_at: dict[str, float] = {}

    def recipients(self) -> list[str | None]:
        return self.people

    def observes(self, recipient: str | None) -> bool:
        return recipient in self.watched

    def observer_trouble(self) -> str | None:
        return self.trouble

    async def send(self, message: DrillMessage) -> Accepted:
        self.sent[message.token] = time.monotonic()
        self.went.setdefault(message.token, asyncio.Event()).set()
        if self.throttle is not None:
            while True:
                self.note_throttle(message.token, self.throttle)
                await asyncio.sleep(0.02)
                self.note_try(message.token)
                if self.hold_retry:
                    await asyncio.Event().wait()  # on the wire: its answer never comes
        if self.accept_after:
            await asyncio.sleep(self.accept_after)
        at = self.accepted_at[message.token] = time.monotonic()
        return Accepted(at=at)

    async def observe(self, message: DrillMessage) -> Sighting:
        if self.far_s is None:
            await asyncio.Event().wait()
        # Counted from the send, not from here: the observer starts before the message
        # waits its turn to leave, and that wait is no part of the far end's delay.
        await self.went.setdefault(message.token, asyncio.Event()).wait()
        await asyncio.sleep(max(0.0, self.sent[message.token] + self.far_s - time.monotonic()))
        self.visible[message.token] = time.monotonic()
        if self.block_s:
            time.sleep(self.block_s)  # a loaded loop: the observer gets round to it late
        at = time.monotonic()
        return Sighting(at=at, error_bound_s=self.bound_s, evidence=self.evidence)


async def run_with(journal, timeout: float = 1.0, slo: float | None = None, **kw: Any):
    reg = parse_registry(REG, "reg.yaml")
    (target,) = reg.targets()
    async with Drill(reg, journal) as drill:
        probe = drill._probes[target.key] = FakeProbe(target.key, drill.env, **kw)
        step = await drill.broadcast("x", [target], timeout=timeout, slo=slo)
    return step, probe


async def test_unobserved_recipient_is_accepted_never_lost(journal):
    step, _ = await run_with(journal, people=["a@x", "b@x"], watched={"a@x"})
    by = {d.recipient: d for d in step.deliveries}
    assert by["a@x"].outcome is Outcome.DELIVERED and by["a@x"].evidence is Evidence.SEEN
    assert by["b@x"].outcome is Outcome.ACCEPTED and by["b@x"].evidence is Evidence.ACCEPTED
    assert "no observer covers" in by["b@x"].reason


async def test_sighting_evidence_is_the_records_evidence(journal):
    step, _ = await run_with(journal, evidence="receipt")
    (d,) = step.deliveries
    assert d.outcome is Outcome.DELIVERED and d.evidence is Evidence.RECEIPT
    assert journal.deliveries(d.run_id)[0].evidence is Evidence.RECEIPT


async def test_observer_that_cannot_look_is_error_not_lost(journal):
    step, _ = await run_with(journal, timeout=0.2, far_s=None, trouble="HTTP 403 not in room")
    (d,) = step.deliveries
    assert d.outcome is Outcome.ERROR
    assert "the drill could not look" in d.reason and "not in room" in d.reason
    assert step.counted() == []


async def test_throttled_until_timeout_is_rejected_with_count(journal):
    step, probe = await run_with(journal, timeout=0.3, throttle="429", far_s=None)
    (d,) = step.deliveries
    count = probe.throttling(d.token).count
    assert d.outcome is Outcome.REJECTED and d.throttled == count >= 2
    assert f"rate limited {count} times (429)" in d.reason and "0.3 s timeout" in d.reason


async def test_cut_while_a_retry_is_on_its_way_is_lost_not_rejected(journal):
    """The far end may take the retry after the cut: the record must not say "refused"."""
    step, probe = await run_with(journal, timeout=0.3, throttle="429", hold_retry=True, far_s=None)
    (d,) = step.deliveries
    assert probe.throttling(d.token).unanswered and d.throttled == 1
    assert d.outcome is Outcome.LOST and d.extra["reason_code"] == "rate_limited"
    assert "the last retry was still unanswered at the step's 0.3 s timeout" in d.reason


async def test_seen_while_the_sends_answer_never_came_is_delivered(journal):
    """The observer saw it before the timeout cut a send whose answer had not come."""
    step, probe = await run_with(journal, timeout=0.3, accept_after=5.0, far_s=0.02)
    (d,) = step.deliveries
    assert d.outcome is Outcome.DELIVERED and d.evidence is Evidence.SEEN
    seen = probe.visible[d.token] - d.extra["sent_mono"]
    assert seen <= d.latency_s <= seen + d.error_bound_s + 0.02  # truth.SLACK_S
    assert d.accept_latency_s is None


async def test_send_accepted_just_before_timeout_keeps_its_acceptance_time(journal):
    step, probe = await run_with(journal, timeout=0.25, accept_after=0.2, far_s=None)
    (d,) = step.deliveries
    assert d.outcome is Outcome.LOST and "not seen within" in d.reason
    truth = probe.accepted_at[d.token] - d.extra["sent_mono"]
    assert d.accept_latency_s == pytest.approx(truth, abs=1e-9)


async def test_loop_lag_at_sighting_is_in_the_error_bound(journal):
    step, probe = await run_with(journal, block_s=0.08, bound_s=0.001)
    (d,) = step.deliveries
    # the far end showed it 80 ms before the loop let the observer look: the record's
    # own bound must cover that (the ground-truth rule), not hide it in the latency
    late_by = d.extra["sent_mono"] + d.latency_s - probe.visible[d.token]
    assert late_by >= 0.08
    assert late_by <= d.error_bound_s + 0.020
    assert d.extra["loop_lag_s"] >= 0.08 - 0.011  # one 10 ms monitor period at most


async def test_idle_loop_adds_little_to_the_bound(journal):
    step, _ = await run_with(journal, bound_s=0.001)
    (d,) = step.deliveries
    assert d.error_bound_s == pytest.approx(0.001 + d.extra["loop_lag_s"], abs=1e-6)
    assert "slo_edge" not in d.extra


async def test_slo_within_the_bound_is_flagged_as_edge(journal):
    # seen 0.05 s after sending with a 0.03 s bound; SLO 0.04 s lies within [0.02, 0.05]
    step, _ = await run_with(journal, far_s=0.05, bound_s=0.03, slo=0.04)
    (d,) = step.deliveries
    assert d.outcome is Outcome.LATE and d.extra["slo_edge"] is True
    clear, _ = await run_with(journal, far_s=0.05, bound_s=0.0, slo=0.2)
    assert "slo_edge" not in clear.deliveries[0].extra


async def test_records_carry_monotonic_times_for_the_ground_truth(journal):
    step, probe = await run_with(journal, people=["a", "b"], watched={"a"})
    for d in step.deliveries:
        assert d.extra["sent_mono"] == pytest.approx(probe.sent[d.token], abs=0.005)
    lost, _ = await run_with(journal, timeout=0.1, far_s=None)
    (d,) = lost.deliveries
    assert d.extra["watched_until_mono"] - d.extra["sent_mono"] >= 0.1
