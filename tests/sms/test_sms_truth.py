"""SMS against ground truth: the local Twilio's ledger says what really happened.

Every time here is judged against the ledger (``probes.sim.ledger``), never by a
guessed margin: a sighting may not be earlier than the ledger's visible time
(2 ms of clock slack) nor later than it by more than its own ``error_bound_s``
plus 20 ms.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from probes.base import ChannelRejected, ChannelUnreachable, Sighting, Throttling
from probes.sim.ledger import Entry, Fate
from probes.sim.twilio import TwilioSimulator
from probes.sms.probe import TwilioProbe

SLACK_EARLY, SLACK_LATE = 0.002, 0.020


def agrees(sighting: Sighting, entry: Entry | None) -> None:
    """The sighting's time agrees with the ledger's visible time, within its own bound."""
    assert entry is not None and entry.visible_at is not None, entry
    assert sighting.at >= entry.visible_at - SLACK_EARLY
    late = sighting.at - entry.visible_at
    assert late <= sighting.error_bound_s + SLACK_LATE, (late, sighting.error_bound_s)


# --------------------------------------------------------------------------- the ledger


async def test_ledger_records_what_happened_to_every_message(make_probe, run, msg, sim, nums):
    ok = await make_probe(loopback=True, callbacks=True, latency=0.05, key="131211/sms")
    phone, receiver = msg(), msg(to=nums.RECEIVER)
    for m in (phone, receiver):
        record = await run(ok, m)
        assert record.sighting is not None
        entry = sim.ledger.entry(m.token, m.recipient)
        assert entry is not None and entry.channel == "131211/sms"
        assert entry.fate is Fate.VISIBLE and entry.received_at <= entry.visible_at
        truth = sim.messages[record.accepted.provider_id]
        assert entry.received_at == truth.created_mono
        assert entry.visible_at <= truth.delivered_mono  # the handset first, then the receipt
    arrived = sim.messages[record.accepted.provider_id].arrived_mono
    assert sim.ledger.entry(receiver.token, nums.RECEIVER).visible_at == arrived

    # Refused at create: for good (21211, auth) or "slow down" (429, then taken).
    sim.inject("21211")
    bad = msg()
    assert isinstance((await run(ok, bad)).error, ChannelRejected)
    entry = sim.ledger.entry(bad.token, bad.recipient)
    assert (entry.fate, entry.refusal_codes, entry.received_at) == (Fate.REFUSED, ["21211"], None)
    sim.inject("429", retry_after=0.05)
    slow = msg()
    assert (await run(ok, slow)).sighting is not None
    entry = sim.ledger.entry(slow.token, slow.recipient)
    assert entry.fate is Fate.VISIBLE and entry.refusal_codes == ["20429"]
    denied = await make_probe(knobs={"reject": "auth"}, key="131016/sms")
    auth = msg()
    assert isinstance((await run(denied, auth)).error, ChannelRejected)
    entry = sim.ledger.entry(auth.token, auth.recipient)
    assert (entry.channel, entry.fate, entry.refusal_codes) == (
        "131016/sms",
        Fate.REFUSED,
        ["20003"],
    )

    # Taken, then lost on the way: the loss knob, an undelivered, a false receipt.
    lossy = await make_probe(knobs={"loss": 1.0}, key="134210/sms")
    gone = msg()
    assert (await run(lossy, gone, timeout=0.3)).timed_out
    assert sim.ledger.entry(gone.token, gone.recipient).fate is Fate.DROPPED
    sim.inject("30003")
    undelivered = msg()
    assert isinstance((await run(ok, undelivered)).error, ChannelRejected)
    entry = sim.ledger.entry(undelivered.token, undelivered.recipient)
    assert entry.fate is Fate.DROPPED and "30003" in entry.detail
    assert entry.refusal_codes == ["30003"]  # the carrier refused it: rejected is the truth
    sim.inject("false_delivered")
    liar = msg()
    await run(ok, liar)
    entry = sim.ledger.entry(liar.token, liar.recipient)
    assert entry.fate is Fate.DROPPED and entry.visible_at is None

    # Down: the far end never heard of it.
    down = await make_probe(knobs={"outage": True}, key="132012/sms")
    unheard = msg()
    assert isinstance((await run(down, unheard)).error, ChannelUnreachable)
    assert sim.ledger.entry(unheard.token, unheard.recipient) is None
    assert [o.end for o in sim.ledger.outages("132012/sms")] == [None]


async def test_a_channel_that_starts_down_comes_back(make_probe, run, msg, sim) -> None:
    probe = await make_probe(knobs={"outage": True}, key="132012/sms")
    assert isinstance((await run(probe, msg())).error, ChannelUnreachable)
    sim.set_outage("132012/sms", False)
    m = msg()
    record = await run(probe, m)
    assert record.sighting is not None
    agrees(record.sighting, sim.ledger.entry(m.token, m.recipient))
    (outage,) = sim.ledger.outages("132012/sms")
    assert outage.end is not None and outage.end <= record.sent_at


# --------------------------------------------------------------------------- independent streams


async def _fates(sim: TwilioSimulator, probes: list[TwilioProbe], msg, rounds: int) -> list[str]:
    """Send *rounds* messages on each probe in turn; the fate of the first probe's, in order."""
    fates: list[str] = []
    for _ in range(rounds):
        for i, probe in enumerate(probes):
            m = msg()
            await probe.send(m)
            if i == 0:
                fates.append(sim.ledger.entry(m.token, m.recipient).fate.value)
    return fates


@pytest.fixture
async def another_sim():
    simulator = TwilioSimulator(seed=7)  # the same seed as the ``sim`` fixture
    await simulator.start()
    yield simulator
    await simulator.stop()


async def test_channels_with_one_seed_lose_different_positions(make_probe, sim, another_sim, msg):
    from probes.base import ProbeEnv
    from probes.sim.base import SimKnobs
    from probes.sms.probe import TwilioSettings

    knobs = {"loss": 0.5, "latency": 5.0}
    adachi = await make_probe(key="131211/sms", knobs=knobs)
    raw = {"from": "+815012345678", "to": ["+819012345678"]}
    settings = another_sim.add_channel("132012/sms", SimKnobs(loss=0.5, latency=5.0), raw)
    env = ProbeEnv()
    hachioji = TwilioProbe("132012/sms", TwilioSettings.model_validate(settings), env)
    try:
        first = await _fates(sim, [adachi], msg, 40)
        second = await _fates(another_sim, [hachioji], msg, 40)
    finally:
        await hachioji.close()
        await env.aclose()
    assert first != second
    assert 5 <= first.count("dropped") <= 35 and 5 <= second.count("dropped") <= 35


async def test_a_channels_losses_do_not_depend_on_other_channels(make_probe, sim, another_sim, msg):
    from probes.base import ProbeEnv
    from probes.sim.base import LatencySpec, SimKnobs
    from probes.sms.probe import TwilioSettings

    knobs = SimKnobs(loss=0.5, latency=LatencySpec(value=5.0))
    alone = await make_probe(key="131211/sms", knobs={"loss": 0.5, "latency": 5.0})
    env = ProbeEnv()
    opened = []
    try:
        raw = {"from": "+815012345678", "to": ["+819012345678"]}
        for key in ("131211/sms", "132012/sms"):
            settings = TwilioSettings.model_validate(another_sim.add_channel(key, knobs, raw))
            opened.append(TwilioProbe(key, settings, env))
        fates_alone = await _fates(sim, [alone], msg, 30)
        fates_shared = await _fates(another_sim, opened, msg, 30)  # interleaved with 132012
    finally:
        for p in opened:
            await p.close()
        await env.aclose()
    assert fates_alone == fates_shared


# --------------------------------------------------------------------------- evidence


@pytest.mark.parametrize("callbacks", [True, False], ids=["status-callback", "polling"])
async def test_a_receipt_is_a_receipt_and_only_the_loopback_number_is_seen(
    make_probe, run, msg, nums, sim, callbacks
) -> None:
    probe = await make_probe(latency=0.1, loopback=True, callbacks=callbacks)
    phone, receiver = msg(), msg(to=nums.RECEIVER)
    got_phone, got_receiver = await asyncio.gather(run(probe, phone), run(probe, receiver))
    assert got_phone.sighting.evidence == "receipt"
    assert "carrier receipt" in got_phone.sighting.detail
    assert got_receiver.sighting.evidence == "seen"
    agrees(got_phone.sighting, sim.ledger.entry(phone.token, nums.PHONE))
    agrees(got_receiver.sighting, sim.ledger.entry(receiver.token, nums.RECEIVER))


@pytest.mark.parametrize(
    ("overrides", "phone", "receiver"),
    [
        ({}, True, True),  # polling
        ({"callbacks": True}, True, True),
        ({"poll_interval": None}, False, True),  # nothing can bring a receipt
        ({"poll_interval": None, "loopback": False}, False, False),
    ],
    ids=["polling", "callbacks", "no-receipts", "no-receipts-no-loopback"],
)
async def test_observes_only_what_can_be_confirmed(make_probe, nums, overrides, phone, receiver):
    overrides = {"loopback": True, **overrides}
    probe = await make_probe(**overrides)
    assert probe.observes(nums.PHONE) is phone
    assert probe.observes(nums.RECEIVER) is receiver


async def test_without_receipts_the_loopback_number_is_still_seen(make_probe, run, msg, nums, sim):
    probe = await make_probe(latency=0.05, loopback=True, poll_interval=None)
    m = msg(to=nums.RECEIVER)
    record = await run(probe, m)
    assert record.sighting.evidence == "seen"
    agrees(record.sighting, sim.ledger.entry(m.token, nums.RECEIVER))


# --------------------------------------------------------------------------- error bounds


OBSERVERS = {
    "status-callback": {"callbacks": True},
    "polling": {},
    "inbound-webhook": {"callbacks": True, "loopback": True},
    "listing": {"loopback": True},
}


@pytest.mark.parametrize("observer", list(OBSERVERS))
async def test_every_sighting_agrees_with_the_ledger(make_probe, run, msg, nums, sim, observer):
    probe = await make_probe(
        knobs={"latency": {"dist": "uniform", "low": 0.05, "high": 0.4}}, **OBSERVERS[observer]
    )
    to = nums.RECEIVER if "loopback" in OBSERVERS[observer] else nums.PHONE
    messages = [msg(to=to) for _ in range(12)]
    records = await asyncio.gather(*(run(probe, m) for m in messages))
    for m, record in zip(messages, records, strict=True):
        assert record.sighting is not None, record
        agrees(record.sighting, sim.ledger.entry(m.token, to))


@pytest.mark.parametrize("observer", ["polling", "listing"])
async def test_a_slow_answer_does_not_shrink_the_bound(make_probe, run, msg, nums, sim, observer):
    # Each read answer is made at once and arrives 0.2 s later: a delivery made while
    # an answer that did not show it was on its way must still be inside the bound.
    sim.read_delay = 0.2
    loopback = observer == "listing"
    probe = await make_probe(latency=0.15, loopback=loopback, poll_interval=0.05)
    m = msg(to=nums.RECEIVER if loopback else nums.PHONE)
    record = await run(probe, m, timeout=3)
    agrees(record.sighting, sim.ledger.entry(m.token, m.recipient))


@pytest.mark.parametrize("observer", ["status-callback", "inbound-webhook"])
async def test_a_webhook_behind_a_busy_loop_says_so_in_its_bound(
    make_probe, run, msg, nums, sim, observer, monkeypatch
) -> None:
    # The event loop is blocked for 150 ms just after the handset got the message
    # (a harness busy with something else): the webhook is handled that much later.
    loopback = observer == "inbound-webhook"
    probe = await make_probe(
        latency=0.1, callbacks=True, loopback=loopback, poll_interval=30,
        status_callback={"fallback_poll": 30},
    )  # fmt: skip
    visible = sim.ledger.visible

    def visible_then_stall(entry, *, at=None):
        visible(entry, at=at)
        asyncio.get_running_loop().call_soon(time.sleep, 0.15)  # the busy loop, not a wait

    monkeypatch.setattr(sim.ledger, "visible", visible_then_stall)
    m = msg(to=nums.RECEIVER if loopback else nums.PHONE)
    record = await run(probe, m)
    entry = sim.ledger.entry(m.token, m.recipient)
    assert record.sighting.at - entry.visible_at >= 0.15
    agrees(record.sighting, entry)


# --------------------------------------------------------------------------- observer trouble


async def test_polling_that_cannot_reach_twilio_is_observer_trouble(make_probe, msg, sim) -> None:
    probe = await make_probe(latency=0.6, key="131211/sms")
    m = msg()
    watching = asyncio.ensure_future(probe.observe(m))
    await probe.send(m)
    assert probe.observer_trouble() is None
    sim.set_outage("131211/sms", True)  # Twilio's API goes away after it took the message
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(watching), 0.3)
    trouble = probe.observer_trouble()
    assert trouble is not None and "cannot reach Twilio" in trouble
    sim.set_outage("131211/sms", False)
    sighting = await asyncio.wait_for(watching, 3)
    assert probe.observer_trouble() is None
    assert sighting.evidence == "receipt"
    agrees(sighting, sim.ledger.entry(m.token, m.recipient))


async def test_listing_that_cannot_reach_twilio_is_observer_trouble(make_probe, msg, nums, sim):
    probe = await make_probe(latency=0.6, loopback=True, key="131211/sms")
    m = msg(to=nums.RECEIVER)
    watching = asyncio.ensure_future(probe.observe(m))
    await probe.send(m)
    sim.set_outage("131211/sms", True)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(watching), 0.3)
    assert "cannot reach Twilio" in (probe.observer_trouble() or "")
    sim.set_outage("131211/sms", False)
    sighting = await asyncio.wait_for(watching, 3)
    assert sighting.evidence == "seen" and probe.observer_trouble() is None
    agrees(sighting, sim.ledger.entry(m.token, nums.RECEIVER))


async def test_refused_status_callbacks_are_observer_trouble(make_probe, run, msg, sim) -> None:
    probe = await make_probe(latency=0.05, callbacks=True, status_callback={"fallback_poll": 30})
    sim.tamper_signatures = True  # e.g. the listener validates with the wrong Auth Token
    m = msg()
    record = await run(probe, m, timeout=0.5)
    assert record.timed_out
    assert sim.ledger.entry(m.token, m.recipient).fate is Fate.VISIBLE  # it did arrive
    trouble = probe.observer_trouble()
    assert trouble is not None and "X-Twilio-Signature" in trouble


async def test_no_trouble_when_nothing_came(make_probe, run, msg, sim) -> None:
    probe = await make_probe(latency=0.05, knobs={"loss": 1.0})
    record = await run(probe, msg(), timeout=0.3)
    assert record.timed_out and probe.observer_trouble() is None  # looked, saw nothing: lost


# --------------------------------------------------------------------------- throttling


async def test_throttles_are_counted_when_the_send_runs_out_of_time(make_probe, msg, sim) -> None:
    probe = await make_probe()
    sim.inject("429", times=100, retry_after=0.1)
    m = msg()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(probe.send(m), 0.45)
    refused = [r for r in sim.creates() if r.status == 429]
    entry = sim.ledger.entry(m.token, m.recipient)
    assert len(refused) >= 3 and entry.refusals == len(refused) and entry.received_at is None
    counted = probe.throttling(m.token)
    # The probe has one request out at a time. Cut while waiting out a "slow down": every
    # answer was read. Cut mid-try (``unanswered``): the far end may have refused it unread.
    assert counted is not None and counted.code == "20429"
    unread = 1 if counted.unanswered else 0
    assert len(refused) - unread <= counted.count <= len(refused), (counted, len(refused))


async def test_a_send_cut_mid_retry_says_its_answer_was_never_read(make_probe, msg, sim) -> None:
    """Refused once, then the retry is held by Twilio: the cut leaves it unanswered."""
    probe = await make_probe()
    sim.inject("429", times=1, retry_after=0.5)
    m = msg()
    sending = asyncio.ensure_future(probe.send(m))
    while probe.throttling(m.token) is None:  # the 429 was read; the retry waits 0.5 s
        assert not sending.done(), sending
        await asyncio.sleep(0.005)
    assert probe.throttling(m.token) == Throttling(1, "20429")  # answered: nothing on the wire
    held = sim.inject("timeout", times=1)  # the retry is held, never answered
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(sending, 2.0)
    assert probe.throttling(m.token) == Throttling(1, "20429", unanswered=True)
    assert held.times == 0  # the retry reached Twilio, which held it
    entry = sim.ledger.entry(m.token, m.recipient)
    assert entry.refusals == 1 and entry.received_at is None


async def test_a_retry_taken_before_the_timeout_keeps_its_acceptance_time(
    make_probe, msg, sim
) -> None:
    probe = await make_probe()
    sim.inject("429", times=2, retry_after=0.1)
    m = msg()
    accepted = await asyncio.wait_for(probe.send(m), 0.5)
    entry = sim.ledger.entry(m.token, m.recipient)
    assert accepted.throttled == 2 and probe.throttling(m.token) == Throttling(2, "20429")
    created = [r for r in sim.creates() if r.status == 201]
    assert entry.received_at <= created[-1].at <= accepted.at


async def test_throttled_past_max_retries_counts_every_answer(make_probe, run, msg, sim) -> None:
    probe = await make_probe(max_retries=1)
    sim.inject("429", times=5, retry_after=0.05)
    m = msg()
    record = await run(probe, m)
    assert isinstance(record.error, ChannelRejected) and record.error.temporary
    assert probe.throttling(m.token) == Throttling(2, "20429")
    assert sim.ledger.entry(m.token, m.recipient).refusals == 2


async def test_two_channels_with_one_receiver_number_each_see_their_own(
    make_probe, run, msg, nums, sim
) -> None:
    # Two simulated channels list the same drill number as their loopback receiver:
    # each one's message must arrive in its own account, where its probe lists it.
    first = await make_probe(loopback=True, latency=0.05)
    second = await make_probe(loopback=True, latency=0.05)
    for probe in (second, first):
        m = msg(to=nums.RECEIVER)
        record = await run(probe, m, timeout=2)
        assert record.sighting is not None and record.sighting.evidence == "seen", record
        agrees(record.sighting, sim.ledger.entry(m.token, nums.RECEIVER))
