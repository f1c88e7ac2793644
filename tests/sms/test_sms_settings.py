"""The ``twilio`` channel's settings: numbers, secrets, loopback, caps, the cost plan."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from probes.base import DrillMessage, ProbeEnv
from probes.settings import SecretRef
from probes.sms.budget import Caps, CostCapExceeded, RunBudget, plan_cost
from probes.sms.probe import TwilioProbe, TwilioSettings
from probes.sms.twilio_http import AioTwilioHttp, parse_retry_after

SID = "AC" + "1" * 32


def settings(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "account_sid": SID,
        "auth_token": "env:TWILIO_TOKEN",
        "from": "+815012345678",
        "to": ["+819012345678"],
    }
    base.update(over)
    return base


def probe(channel: str = "131211/sms", **over: Any) -> TwilioProbe:
    return TwilioProbe(channel, TwilioSettings.model_validate(settings(**over)), ProbeEnv())


def test_registry_shape_validates() -> None:
    s = TwilioSettings.model_validate(
        settings(
            account_sid="env:ADACHI_TWILIO_SID",
            to=["+819012345678", "+818012345678"],
            status_callback={"public_url": "https://drill.example.lg.jp/t/", "listen_port": 8931},
            loopback={"receiver": "+818012345678"},
            price_per_segment=0.08,
            caps={"max_messages": 10, "max_segments": 30, "max_cost": 2},
        )
    )
    assert isinstance(s.account_sid, SecretRef) and s.from_ == "+815012345678"
    assert s.status_callback is not None and s.status_callback.public_url.endswith("/t")
    assert s.caps.max_cost == 2


@pytest.mark.parametrize(
    ("over", "match"),
    [
        ({"auth_token": "0123456789abcdef"}, "references"),
        ({"account_sid": "AC123"}, "AC"),
        ({"to": ["090-1234-5678"]}, r"did you mean \+819012345678"),
        ({"to": ["+81312345678"]}, "landline"),
        ({"to": ["+819012345678", "+819012345678"]}, "twice"),
        ({"to": []}, "at least 1"),
        ({"from": "+8150"}, "valid"),
        ({"to": ["+815012345678"]}, "from"),
        ({"loopback": {"receiver": "+818012345678"}}, "also be listed"),
        ({"loopback": {"receiver": "+819012345678", "auth_token": "env:X"}}, "both"),
        ({"status_callback": {"public_url": "ftp://x", "listen_port": 1}}, "http"),
        ({"status_callback": {"public_url": "https://my_host", "listen_port": 1}}, "underscore"),
        ({"unknown_key": 1}, "Extra inputs"),
    ],
)
def test_bad_settings_are_refused_with_a_reason(over: dict[str, Any], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        TwilioSettings.model_validate(settings(**over))


def test_recipients_come_from_the_registry() -> None:
    p = probe(to=["+819012345678", "+818012345678"])
    assert p.recipients() == ["+819012345678", "+818012345678"]
    assert p.is_live()  # no api_base: the real Twilio, needs --live
    assert not probe(api_base="http://127.0.0.1:9").is_live()


# --------------------------------------------------------------------------- cost plan


def test_plan_counts_every_recipient_and_segment() -> None:
    p = probe(to=["+819012345678", "+818012345678"], price_per_segment=0.1)
    long_text = "訓" * 150  # with marker and token: 174 UCS-2 units, 3 segments
    plan = plan_cost([(p, [DrillMessage.new(long_text), "short"])])
    assert plan.messages == 4
    assert plan.segments == 2 * (3 + 1)
    assert plan.cost == pytest.approx(0.8)
    assert "4" in plan.summary() and "messages" in plan.summary()


@pytest.mark.parametrize(
    ("caps", "price", "needle"),
    [
        ({"max_messages": 3}, None, "messages planned, cap is 3"),
        ({"max_segments": 5}, None, "segments planned, cap is 5"),
        ({"max_cost": 0.5}, 0.1, "estimated 0.8 USD, cap is 0.5 USD"),
    ],
)
def test_plan_refuses_over_a_channel_cap(
    caps: dict[str, Any], price: float | None, needle: str
) -> None:
    p = probe(to=["+819012345678", "+818012345678"], caps=caps, price_per_segment=price)
    with pytest.raises(CostCapExceeded) as info:
        plan_cost([(p, ["訓" * 150, "short"])])
    assert needle in str(info.value) and "131211/sms" in str(info.value)
    assert str(info.value).startswith("SMS の上限を超えるため送信しません")


def test_run_caps_cover_all_channels_together() -> None:
    a, b = probe("a/sms"), probe("b/sms")
    assert plan_cost([(a, 2), (b, 2)]).messages == 4
    with pytest.raises(CostCapExceeded, match="whole run"):
        plan_cost([(a, 2), (b, 2)], run_caps=Caps(max_messages=3))


def test_cost_cap_is_ignored_without_a_price() -> None:
    p = probe(caps={"max_cost": 0})
    assert plan_cost([(p, 1)]).cost is None


def test_run_budget_refuses_the_send_that_crosses_a_cap() -> None:
    budget = RunBudget(probe(caps={"max_messages": 2, "max_segments": 3}).cost_profile())
    budget.charge(1)
    with pytest.raises(CostCapExceeded, match="segments"):
        budget.charge(3)
    assert (budget.messages, budget.segments) == (1, 1)  # the refused one is not counted
    budget.charge(2)
    with pytest.raises(CostCapExceeded, match="messages"):
        budget.charge(0)


# --------------------------------------------------------------------------- http seam


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json?PageSize=2",
            "http://127.0.0.1:9/2010-04-01/Accounts/AC1/Messages.json?PageSize=2",
        ),
        ("https://api.tokyo.jp1.twilio.com/2010-04-01/x", "http://127.0.0.1:9/2010-04-01/x"),
        ("https://example.org/2010-04-01/x", "https://example.org/2010-04-01/x"),
        ("https://eviltwilio.com/x", "https://eviltwilio.com/x"),
    ],
)
def test_http_seam_rewrites_only_twilio_hosts(url: str, expected: str) -> None:
    seam = AioTwilioHttp(lambda: None, base_url="http://127.0.0.1:9/")  # type: ignore[arg-type,return-value]
    assert seam.rewrite(url) == expected
    live = AioTwilioHttp(lambda: None)  # type: ignore[arg-type,return-value]
    assert live.rewrite(url) == url


def test_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    # RFC 9110 allows an HTTP date too: counted from now, never negative.
    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert parse_retry_after(date, now=1445412480.0 - 3) == 3.0
    assert parse_retry_after(date) == 0.0
