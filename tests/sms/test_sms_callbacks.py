"""Status callbacks and inbound webhooks: X-Twilio-Signature decides what is believed."""

from __future__ import annotations

import aiohttp
import pytest
from twilio.request_validator import RequestValidator

from probes.sim.twilio import twilio_signature


def test_simulator_signs_exactly_like_the_twilio_library_validates() -> None:
    # The simulator's signer is written from the docs; the library must agree with it.
    url = "https://drill.example.lg.jp/t/twilio/status?x=1"
    params = {
        "MessageSid": "SM1",
        "MessageStatus": "delivered",
        "Body": "【訓練】 テスト",
        "To": "+8190",
    }
    signature = twilio_signature("secret-token", url, params)
    assert RequestValidator("secret-token").validate(url, params, signature)
    assert not RequestValidator("other-token").validate(url, params, signature)


async def _post(url: str, params: dict[str, str], signature: str | None) -> int:
    headers = {"X-Twilio-Signature": signature} if signature is not None else {}
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=params, headers=headers) as resp,
    ):
        return resp.status


@pytest.fixture
async def listening(make_probe, run, msg, sim):
    """A probe with a status-callback listener, and one message sent through it."""
    probe = await make_probe(callbacks=True, latency=0.05)
    record = await run(probe, msg())
    account = sim.account_of("131211/sms-0")
    url = probe.settings.status_callback.public_url + "/twilio/status"
    return probe, record, account, url


def _params(account: str, sid: str, status: str) -> dict[str, str]:
    return {
        "AccountSid": account,
        "MessageSid": sid,
        "MessageStatus": status,
        "SmsSid": sid,
        "SmsStatus": status,
        "ApiVersion": "2010-04-01",
    }


async def test_valid_signature_is_accepted(listening, sim) -> None:
    probe, record, account, url = listening
    params = _params(account, record.accepted.provider_id, "read")
    assert await _post(url, params, sim.sign(account, url, params)) == 204
    assert probe._listener.refused == 0
    assert probe._by_sid[record.accepted.provider_id].status == "read"


@pytest.mark.parametrize(
    "forgery", ["wrong-key", "missing", "tampered-param", "other-url", "unknown-account"]
)
async def test_bad_signature_is_refused(listening, sim, forgery) -> None:
    probe, record, account, url = listening
    sid = record.accepted.provider_id
    params = _params(account, sid, "undelivered")
    signature: str | None = sim.sign(account, url, params)
    if forgery == "wrong-key":
        signature = twilio_signature("not-the-auth-token", url, params)
    elif forgery == "missing":
        signature = None
    elif forgery == "tampered-param":
        signature = sim.sign(account, url, _params(account, sid, "delivered"))
    elif forgery == "other-url":
        signature = sim.sign(account, "https://elsewhere.example/twilio/status", params)
    elif forgery == "unknown-account":
        params["AccountSid"] = "AC" + "f" * 32
        signature = twilio_signature("whatever", url, params)
    assert await _post(url, params, signature) == 403
    assert probe._listener.refused == 1
    assert probe._by_sid[sid].status == "delivered"  # the forged "undelivered" was not believed


async def test_forged_callbacks_do_not_confirm_anything(make_probe, run, msg, sim) -> None:
    probe = await make_probe(callbacks=True, latency=0.05, status_callback={"fallback_poll": 0.2})
    sim.tamper_signatures = True
    record = await run(probe, msg())
    assert [status for _, _, status in sim.callbacks] == [403, 403, 403]
    assert probe._listener.refused == 3
    # Still confirmed — by polling the Message resource, the only thing left to trust.
    assert record.sighting is not None and "polling" in record.sighting.detail


async def test_forged_inbound_does_not_count_as_arrival(make_probe, run, msg, nums, sim) -> None:
    probe = await make_probe(
        callbacks=True, loopback=True, status_callback={"fallback_poll": 30}, poll_interval=30
    )  # polling and listing far apart: only the webhooks could confirm in time
    sim.tamper_signatures = True  # the inbound webhook is forged too
    m = msg(to=nums.RECEIVER)
    record = await run(probe, m, timeout=0.6)
    assert record.timed_out
    assert probe._tracks[m.token].inbound_at is None


async def test_public_url_with_a_path_behind_a_proxy(sim) -> None:
    # Twilio signs the public https URL; the listener sees plain http on loopback
    # (a TLS-terminating proxy in between) and must validate against the public one.
    from probes.base import ProbeEnv
    from probes.settings import SecretRef
    from probes.sim.base import free_port
    from probes.sms.probe import TwilioProbe, TwilioSettings

    sid, token = sim.add_account()
    sim.add_number(sid, "+815012345678")
    port = free_port()
    public = "https://drill.example.lg.jp/tsunagari"
    settings = TwilioSettings.model_validate(
        {
            "account_sid": sid,
            "auth_token": SecretRef.inline(token),
            "from": "+815012345678",
            "to": ["+819012345678"],
            "api_base": sim.base_url,
            "status_callback": {"public_url": public, "listen_port": port},
        }
    )
    env = ProbeEnv()
    probe = TwilioProbe("131211/sms", settings, env)
    await probe.open()
    try:
        local = f"http://127.0.0.1:{port}/tsunagari/twilio/status"
        params = _params(sid, "SM" + "1" * 32, "delivered")
        signed_public = sim.sign(sid, public + "/twilio/status", params)
        assert await _post(local, params, signed_public) == 204
        signed_local = sim.sign(sid, local, params)  # not the URL Twilio was given
        assert await _post(local, params, signed_local) == 403
    finally:
        await probe.close()
        await env.aclose()


def test_one_hmac_for_the_url_as_received_validate_for_the_other_form() -> None:
    from twilio.request_validator import RequestValidator

    from probes.sms.callbacks import _signed

    validator = RequestValidator("token-123")
    params = {"MessageSid": "SM1", "MessageStatus": "delivered"}
    with_port = "https://drill.example.lg.jp:443/tsunagari/twilio/status"
    without = "https://drill.example.lg.jp/tsunagari/twilio/status"
    for signed_for in (with_port, without):  # a proxy may add or drop the port
        signature = validator.compute_signature(signed_for, params)
        assert _signed(validator, with_port, params, signature)
        assert _signed(validator, without, params, signature)
    assert not _signed(validator, with_port, params, "x" + signature[1:])
    assert not _signed(RequestValidator("other"), without, params, signature)
