"""The ``twilio`` probe end to end: the real twilio client, real HTTP, the local Twilio.

Each test runs a message the way the drill runner does (observe parked, then
send, then wait with a timeout) and checks the outcome and its reason.
"""

from __future__ import annotations

import pytest

from probes.base import ChannelRejected, ChannelUnreachable
from probes.sms.budget import CostCapExceeded, plan_cost

# --------------------------------------------------------------------------- delivered


@pytest.mark.parametrize("callbacks", [True, False], ids=["status-callback", "polling"])
async def test_delivered_with_the_right_latency(make_probe, run, msg, sim, callbacks) -> None:
    probe = await make_probe(latency=0.4, callbacks=callbacks)
    record = await run(probe, msg())
    assert record.error is None and not record.timed_out
    assert record.accepted.provider_id.startswith("SM") and record.accepted.segments == 1
    truth = sim.messages[record.accepted.provider_id]
    assert truth.data["status"] == "delivered"
    # Judged against the simulator's own ground truth, never a guessed margin: the far end
    # held it for at least the injected 0.4 s, and the probe noticed the receipt no
    # earlier than it happened and no later than its own error bound (+ 20 ms) after.
    (entry,) = truth.entries
    assert entry.received_at is not None and entry.visible_at is not None
    assert entry.visible_at - entry.received_at >= 0.4
    seen = record.sent_at + record.latency
    bound = record.sighting.error_bound_s
    assert entry.visible_at - 0.002 <= seen <= entry.visible_at + bound + 0.02
    via = "status callback" if callbacks else "polling"
    assert via in record.sighting.detail
    assert record.sighting.extra["receipt_at_wall"] is not None
    assert record.sighting.extra["inbound_at_wall"] is None


async def test_segments_are_reported(make_probe, run, msg) -> None:
    probe = await make_probe()
    record = await run(probe, msg(text="訓" * 150))
    assert record.accepted.segments == 3
    assert "UCS-2" in record.accepted.detail


async def test_status_callback_carries_the_drill_body(make_probe, run, msg, sim) -> None:
    probe = await make_probe(callbacks=True)
    m = msg()
    record = await run(probe, m)
    sent = sim.messages[record.accepted.provider_id].data
    assert sent["body"].startswith("【訓練】") and m.token in sent["body"]
    assert sim.messages[record.accepted.provider_id].status_callback.endswith("/twilio/status")
    assert all(status == 204 for _, _, status in sim.callbacks)
    assert len(sim.callbacks) == 3  # sending, sent, delivered — none for the initial queued


# --------------------------------------------------------------------------- refusals


REFUSED_AT_CREATE = [
    ("20003", "20003", False, "認証"),
    ("21211", "21211", False, "invalid 'To'"),
    ("21610", "21610", False, "unsubscribed"),
    ("500", "20500", True, "internal server error"),
    ("503-html", "503", True, "HTTP 503"),  # an error page, not Twilio's JSON
]


@pytest.mark.parametrize(("fault", "code", "temporary", "words"), REFUSED_AT_CREATE)
async def test_refused_at_create(make_probe, run, msg, sim, fault, code, temporary, words) -> None:
    probe = await make_probe()
    sim.inject(fault)
    record = await run(probe, msg())
    assert isinstance(record.error, ChannelRejected)
    assert record.error.code == code and record.error.temporary is temporary
    assert words in record.error.reason and " / " in record.error.reason


FAILED_IN_DELIVERY = [
    ("30003", "unreachable", "端末に届きません"),
    ("30005", "unknown destination", "存在しない"),
    ("30006", "landline", "固定電話"),
    ("30007", "filtered", "迷惑メッセージ"),
    ("30008", "unknown error", "不明なエラー"),
]


@pytest.mark.parametrize(("code", "en", "ja"), FAILED_IN_DELIVERY)
@pytest.mark.parametrize("callbacks", [True, False], ids=["status-callback", "polling"])
async def test_failed_in_delivery_is_rejected_from_observe(
    make_probe, run, msg, sim, code, en, ja, callbacks
) -> None:
    probe = await make_probe(callbacks=callbacks)
    sim.inject(code)
    record = await run(probe, msg())
    assert record.accepted is not None  # Twilio took it…
    assert isinstance(record.error, ChannelRejected)  # …and the carrier refused it
    assert record.error.code == code
    assert en in record.error.reason and ja in record.error.reason


async def test_auth_rejected_by_the_knob(make_probe, run, msg) -> None:
    probe = await make_probe(knobs={"reject": "auth"})
    record = await run(probe, msg())
    assert isinstance(record.error, ChannelRejected) and record.error.code == "20003"


async def test_outage_is_unreachable_not_rejected(make_probe, run, msg) -> None:
    probe = await make_probe(knobs={"outage": True})
    record = await run(probe, msg())
    assert isinstance(record.error, ChannelUnreachable)


async def test_outage_mid_drill(make_probe, run, msg, sim) -> None:
    probe = await make_probe(key="131211/sms")
    assert (await run(probe, msg())).sighting is not None
    sim.set_outage("131211/sms", True)
    record = await run(probe, msg())
    assert isinstance(record.error, ChannelUnreachable)


# --------------------------------------------------------------------------- throttling


async def test_429_is_honoured_with_backoff_and_counted_as_throttling(
    make_probe, run, msg, sim
) -> None:
    probe = await make_probe()
    sim.inject("429", retry_after=1)
    record = await run(probe, msg())
    assert record.error is None and record.sighting is not None  # delivered, not lost
    assert record.accepted.throttled == 1
    creates = sim.creates()
    assert [r.status for r in creates] == [429, 201]
    # Honoured: the retry came no sooner than Retry-After (seen at the server).
    assert creates[1].at - creates[0].at >= 0.95


async def test_rate_limit_knob_throttles_but_loses_nothing(make_probe, run, msg, nums) -> None:
    import asyncio

    probe = await make_probe(knobs={"rate_limit": 4}, to=[nums.PHONE, nums.RECEIVER])
    records = await asyncio.gather(
        *(run(probe, msg(to=to), timeout=8) for to in [nums.PHONE, nums.RECEIVER] * 3)
    )
    assert all(r.sighting is not None for r in records)
    assert sum(r.accepted.throttled for r in records) >= 1


async def test_throttling_past_max_retries_is_a_temporary_rejection(
    make_probe, run, msg, sim
) -> None:
    probe = await make_probe(max_retries=0)
    sim.inject("429")
    record = await run(probe, msg())
    assert isinstance(record.error, ChannelRejected)
    assert record.error.code == "20429" and record.error.temporary


# --------------------------------------------------------------------------- lost


@pytest.mark.parametrize("how", ["inject", "loss-knob"])
async def test_stuck_at_sent_is_lost_with_no_carrier_receipt(
    make_probe, run, msg, sim, how
) -> None:
    probe = await make_probe(latency=0.05, knobs={"loss": 1.0} if how == "loss-knob" else None)
    if how == "inject":
        sim.inject("stuck_sent")
    m = msg()
    record = await run(probe, m, timeout=0.6)
    assert record.timed_out and record.error is None
    assert sim.messages[record.accepted.provider_id].data["status"] == "sent"
    reason = probe.timeout_reason(m)
    assert "no carrier receipt" in reason and "着信通知なし" in reason


# --------------------------------------------------------------------------- loopback


@pytest.mark.parametrize("callbacks", [True, False], ids=["inbound-webhook", "listing"])
async def test_loopback_reports_receipt_and_arrival_side_by_side(
    make_probe, run, msg, nums, sim, callbacks
) -> None:
    probe = await make_probe(latency=0.2, callbacks=callbacks, loopback=True)
    record = await run(probe, msg(to=nums.RECEIVER))
    assert record.error is None and record.sighting is not None
    extra = record.sighting.extra
    assert extra["receipt_at_wall"] is not None and extra["inbound_at_wall"] is not None
    assert "receipt_minus_inbound_s" in extra
    assert "arrived at the receiving number" in record.sighting.detail
    truth = sim.messages[record.accepted.provider_id]
    # The sighting is the arrival, not the receipt.
    assert truth.arrived_mono - 0.01 <= record.sighting.at
    assert record.sighting.at <= truth.arrived_mono + record.sighting.error_bound_s + 0.03


@pytest.mark.parametrize("callbacks", [True, False], ids=["inbound-webhook", "listing"])
async def test_loopback_catches_a_false_delivered_receipt(
    make_probe, run, msg, nums, sim, callbacks
) -> None:
    probe = await make_probe(callbacks=callbacks, loopback=True)
    sim.inject("false_delivered", to=nums.RECEIVER)
    m = msg(to=nums.RECEIVER)
    record = await run(probe, m, timeout=0.8)
    assert sim.messages[record.accepted.provider_id].data["status"] == "delivered"
    assert record.timed_out  # the receipt lied: not delivered
    reason = probe.timeout_reason(m)
    assert "nothing arrived" in reason and "偽の配信確認" in reason


async def test_without_loopback_a_false_receipt_goes_unnoticed(
    make_probe, run, msg, nums, sim
) -> None:
    # Why loopback exists: to a plain phone, the receipt is all we can see.
    probe = await make_probe(loopback=True)
    sim.inject("false_delivered", to=nums.PHONE)
    record = await run(probe, msg(to=nums.PHONE))
    assert record.sighting is not None


# --------------------------------------------------------------------------- guard rails


async def test_cost_cap_refuses_before_the_first_send(make_probe, sim, nums) -> None:
    adachi = await make_probe(caps={"max_messages": 10}, price_per_segment=0.08)
    chiyoda = await make_probe(caps={"max_messages": 3}, to=[nums.PHONE, nums.RECEIVER])
    with pytest.raises(CostCapExceeded) as info:
        plan_cost([(adachi, 2), (chiyoda, 2)])  # chiyoda: 2 messages × 2 recipients > 3
    assert "sms-1" in str(info.value) and "4 messages planned, cap is 3" in str(info.value)
    assert sim.requests == []  # nothing reached the local Twilio


async def test_plan_counts_what_earlier_steps_already_sent(make_probe, run, msg, sim, nums) -> None:
    probe = await make_probe(caps={"max_messages": 3}, to=[nums.PHONE])
    assert plan_cost([(probe, 3)]).messages == 3  # fits, before anything was sent
    for _ in range(2):
        assert (await run(probe, msg())).sighting is not None
    with pytest.raises(CostCapExceeded, match=r"including 2 already sent.*4 messages planned"):
        plan_cost([(probe, 2)])  # 2 sent + 2 planned > 3
    assert plan_cost([(probe, 1)]).messages == 1
    assert len(sim.creates()) == 2


async def test_probe_refuses_the_send_over_its_cap(make_probe, run, msg, sim) -> None:
    probe = await make_probe(caps={"max_messages": 1})
    assert (await run(probe, msg())).sighting is not None
    record = await run(probe, msg())
    assert isinstance(record.error, CostCapExceeded)
    assert len(sim.creates()) == 1


async def test_only_registered_recipients(make_probe, run, msg, sim) -> None:
    probe = await make_probe()
    record = await run(probe, msg(to="+819099999999"))
    assert isinstance(record.error, ValueError) and "not registered" in str(record.error)
    assert sim.requests == []


async def test_loopback_without_an_inbound_webhook_falls_back_to_listing(
    make_probe, run, msg, nums, sim
) -> None:
    # Callbacks on, but nobody set the receiver number's SMS URL in the console.
    probe = await make_probe(callbacks=True, loopback=True, key="131211/sms")
    sim.add_number(sim.account_of("131211/sms"), nums.RECEIVER, sms_url=None)
    record = await run(probe, msg(to=nums.RECEIVER))
    assert record.sighting is not None
    assert record.sighting.error_bound_s > 0.005  # seen by listing, not by a webhook
    assert not any(url.endswith("/twilio/inbound") for _, url, _ in sim.callbacks)
