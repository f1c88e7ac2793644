"""The local Twilio itself: auth, errors, paging and inbound, as the twilio client sees them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from probes.sim.base import SimKnobs
from probes.sim.twilio import TwilioSimulator
from probes.sms.twilio_http import AioTwilioHttp, basic_auth_header

FROM, TO, RECEIVER = "+815012345678", "+819012345678", "+818012345678"


@pytest.fixture
async def client(sim: TwilioSimulator):
    sid, token = sim.add_account()
    sim.add_number(sid, FROM)
    sim.add_number(sid, RECEIVER)
    async with aiohttp.ClientSession() as http:
        yield Client(sid, token, http_client=AioTwilioHttp(lambda: http, base_url=sim.base_url))


async def _wait_status(client, sid: str, status: str) -> None:
    async def poll() -> None:
        while (await client.messages(sid).fetch_async()).status != status:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), 3)


async def test_requests_without_credentials_get_twilios_401(sim) -> None:
    sid, _ = sim.add_account()
    url = f"{sim.base_url}/2010-04-01/Accounts/{sid}/Messages.json"
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as resp:
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"].startswith("Basic")
            body = await resp.json()
        assert body == {
            "code": 20003,
            "message": "Authenticate",
            "more_info": "https://www.twilio.com/docs/errors/20003",
            "status": 401,
        }
        bad = {"Authorization": basic_auth_header(sid, "wrong")}
        async with http.get(url, headers=bad) as resp:
            assert resp.status == 401


async def test_create_fetch_and_status_progression(client, sim) -> None:
    sim.accounts[client.account_sid].knobs = SimKnobs(latency=0.2)
    msg = await client.messages.create_async(to=TO, from_=FROM, body="【訓練】 テスト")
    assert msg.status == "queued" and msg.sid.startswith("SM") and msg.num_segments == "1"
    assert msg.direction == "outbound-api" and msg.date_created is not None
    await _wait_status(client, msg.sid, "delivered")
    fetched = await client.messages(msg.sid).fetch_async()
    assert fetched.date_sent is not None and fetched.price.startswith("-")


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"to": "12345", "from_": FROM, "body": "x"}, 21211),
        ({"to": TO, "from_": "+815099999999", "body": "x"}, 21606),
        ({"to": TO, "from_": FROM, "body": ""}, 21602),
        ({"to": TO, "from_": FROM, "body": "x" * 1601}, 21617),
    ],
)
async def test_create_is_validated_like_twilio(client, kwargs, code) -> None:
    with pytest.raises(TwilioRestException) as info:
        await client.messages.create_async(**kwargs)
    assert info.value.code == code and info.value.status == 400


async def test_fetch_of_an_unknown_message_is_404(client) -> None:
    with pytest.raises(TwilioRestException) as info:
        await client.messages("SM" + "0" * 32).fetch_async()
    assert (info.value.status, info.value.code) == (404, 20404)


async def test_list_pages_and_filters(client) -> None:
    sids = [
        (await client.messages.create_async(to=TO, from_=FROM, body=f"【訓練】 {i}")).sid
        for i in range(5)
    ]
    listed = await client.messages.list_async(to=TO, page_size=2)  # follows next_page_uri
    assert [m.sid for m in listed] == sids[::-1]  # newest first
    assert await client.messages.list_async(to=RECEIVER) == []
    future = datetime.now(UTC) + timedelta(days=2)
    assert await client.messages.list_async(date_sent_after=future) == []


async def test_a_message_to_a_receiver_number_arrives_there(client, sim) -> None:
    sim.accounts[client.account_sid].knobs = SimKnobs(latency=0.05)
    out = await client.messages.create_async(to=RECEIVER, from_=FROM, body="【訓練】 ループバック")
    await _wait_status(client, out.sid, "delivered")
    listed = await client.messages.list_async(to=RECEIVER, from_=FROM)
    directions = sorted(m.direction for m in listed)
    assert directions == ["inbound", "outbound-api"]
    inbound = next(m for m in listed if m.direction == "inbound")
    assert inbound.status == "received" and inbound.body == out.body


async def test_rate_limit_knob_answers_429_with_retry_after(sim) -> None:
    sid, token = sim.add_account(knobs=SimKnobs(rate_limit=1))
    sim.add_number(sid, FROM)
    url = f"{sim.base_url}/2010-04-01/Accounts/{sid}/Messages.json"
    headers = {"Authorization": basic_auth_header(sid, token)}
    data = {"To": TO, "From": FROM, "Body": "x"}
    async with aiohttp.ClientSession() as http:
        statuses = []
        for _ in range(3):
            async with http.post(url, data=data, headers=headers) as resp:
                statuses.append(resp.status)
                if resp.status == 429:
                    assert int(resp.headers["Retry-After"]) >= 1
                    assert (await resp.json())["code"] == 20429
    assert statuses[0] == 201 and 429 in statuses


def test_unknown_faults_are_refused(sim) -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        sim.inject("30099")


async def test_sim_channel_settings_validate_for_the_probe(sim) -> None:
    from probes.sms.probe import TwilioSettings

    raw = {
        "to": ["+819011110001"],
        "status_callback": None,
        "loopback": {"receiver": "+819011110001"},
    }
    settings = TwilioSettings.model_validate(sim.add_channel("131211/sms", SimKnobs(), raw))
    assert settings.api_base == sim.base_url and settings.status_callback is not None
    assert sim.accounts[settings.account_sid].numbers["+819011110001"].endswith("/twilio/inbound")
    TwilioSettings.model_validate(sim.add_channel("x/sms", SimKnobs(outage=True), {}))
    assert [(o.channel, o.end) for o in sim.ledger.outages()] == [("x/sms", None)]
