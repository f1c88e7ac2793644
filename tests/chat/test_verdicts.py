"""The pure parts of the chat kinds: error mapping, parsing, token ids, windows."""

from __future__ import annotations

import doctest
import importlib
from decimal import Decimal

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from probes.base import ChannelRejected, ChannelUnreachable
from probes.chat.base import Throttle, retry_after_seconds
from probes.chat.lineworks import (
    lineworks_verdict,
    load_private_key,
    monitoring_window,
    service_account_jwt,
)
from probes.chat.matrix import message_texts, room_filter, send_verdict, txn_id
from probes.chat.mattermost import mattermost_verdict, posted_message
from probes.chat.slack import history_oldest, slack_verdict
from probes.chat.teams import adaptive_card, graph_verdict, token_refusal, workflow_verdict
from probes.chat.webhook import webhook_verdict

MODULES = [
    "probes.chat.base",
    "probes.chat.webhook",
    "probes.chat.matrix",
    "probes.chat.slack",
    "probes.chat.teams",
    "probes.chat.mattermost",
    "probes.chat.lineworks",
]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0


def bilingual(fault: object) -> bool:
    return isinstance(fault, ChannelRejected | ChannelUnreachable) and " / " in fault.reason


# ------------------------------------------------------------------ matrix


def test_matrix_rate_limit_prefers_retry_after_ms_then_the_header() -> None:
    assert send_verdict(429, {"errcode": "M_LIMIT_EXCEEDED", "retry_after_ms": 250}) == Throttle(
        0.25, "M_LIMIT_EXCEEDED"
    )
    assert send_verdict(429, {"errcode": "M_LIMIT_EXCEEDED"}, {"Retry-After": "2"}) == Throttle(
        2.0, "M_LIMIT_EXCEEDED"
    )


@pytest.mark.parametrize(
    ("status", "body", "kind", "code", "temporary"),
    [
        # the errcode with the HTTP status it came with (drills.core.taxonomy reads both)
        (401, {"errcode": "M_UNKNOWN_TOKEN"}, ChannelRejected, "M_UNKNOWN_TOKEN HTTP 401", False),
        (401, {"errcode": "M_MISSING_TOKEN"}, ChannelRejected, "M_MISSING_TOKEN HTTP 401", False),
        (
            403,
            {"errcode": "M_FORBIDDEN", "error": "not in room"},
            ChannelRejected,
            "M_FORBIDDEN HTTP 403",
            False,
        ),
        (404, {"errcode": "M_NOT_FOUND"}, ChannelRejected, "M_NOT_FOUND HTTP 404", False),
        (500, {"errcode": "M_UNKNOWN"}, ChannelRejected, "M_UNKNOWN HTTP 500", True),
        (400, None, ChannelRejected, "HTTP 400", False),
        (502, None, ChannelUnreachable, "HTTP 502", False),
    ],
)
def test_matrix_faults(status, body, kind, code, temporary) -> None:
    fault = send_verdict(status, body)
    assert isinstance(fault, kind) and bilingual(fault)
    assert fault.code == code
    if isinstance(fault, ChannelRejected):
        assert fault.temporary is temporary


def test_matrix_accepts_2xx_and_txn_ids_are_stable() -> None:
    assert send_verdict(200, {"event_id": "$x"}) is None
    assert txn_id("TSG-7K3Q9XW2M4PD") == txn_id("TSG-7K3Q9XW2M4PD") != txn_id("TSG-7K3Q9XW2M4PE")


def test_matrix_message_texts_keep_only_message_bodies() -> None:
    events = [
        {"type": "m.room.member", "content": {"membership": "join"}},
        {"type": "m.room.message", "content": {"msgtype": "m.image"}},
        {"type": "m.room.message", "event_id": "$a", "sender": "@b:x", "content": {"body": "A"}},
        "garbage",
    ]
    assert message_texts(events) == [("A", {"event_id": "$a", "sender": "@b:x"})]
    assert message_texts(None) == []


def test_matrix_filter_admits_only_the_drill_room_messages() -> None:
    f = room_filter("!r:x")
    assert f["room"]["rooms"] == ["!r:x"]
    assert f["room"]["timeline"]["types"] == ["m.room.message"]
    assert f["presence"] == {"types": []}


# ------------------------------------------------------------------ slack


@pytest.mark.parametrize(
    ("error", "temporary"),
    [
        ("invalid_auth", False),
        ("not_authed", False),
        ("channel_not_found", False),
        ("not_in_channel", False),
        ("is_archived", False),
        ("internal_error", True),
        ("some_new_error", False),
    ],
)
def test_slack_refusals(error: str, temporary: bool) -> None:
    fault = slack_verdict(200, error)
    assert isinstance(fault, ChannelRejected) and bilingual(fault)
    assert fault.code == error and fault.temporary is temporary and error in fault.reason


def test_slack_rate_limit_and_outage() -> None:
    assert slack_verdict(429, "ratelimited", {"Retry-After": "30"}) == Throttle(30.0, "ratelimited")
    assert slack_verdict(200, "ratelimited") == Throttle(1.0, "ratelimited")
    assert isinstance(slack_verdict(503, None), ChannelUnreachable)


def test_slack_oldest_looks_back_but_never_before_the_drill() -> None:
    assert history_oldest(1000.0, None, 30) == "999.000000"
    assert history_oldest(1000.0, Decimal("1010.5"), 30) == "999.000000"
    assert history_oldest(1000.0, Decimal("2000.000001"), 30) == "1970.000001"


def test_slack_window_reaches_back_to_the_oldest_awaited_message() -> None:
    # Seen a later message (1010.5); one sent at 1000.3 is still awaited: keep it in.
    assert history_oldest(1000.0, Decimal("1010.5"), 0.2, 1000.3) == "1000.100000"
    # Nothing older awaited: behind the newest seen, as before.
    assert history_oldest(1000.0, Decimal("1010.5"), 0.2, 1012.0) == "1010.300000"
    assert history_oldest(1000.0, None, 0.2, 1005.0) == "1004.800000"


# ------------------------------------------------------------------ mattermost


def test_mattermost_rate_limit_uses_retry_after_then_reset() -> None:
    assert mattermost_verdict(429, "limit exceeded", {"Retry-After": "3"}) == Throttle(3.0, "429")
    assert mattermost_verdict(429, "limit exceeded", {"X-RateLimit-Reset": "4"}) == Throttle(
        4.0, "429"
    )


@pytest.mark.parametrize(
    ("status", "error_id", "fragment"),
    [
        (401, "api.context.session_expired.app_error", "token"),
        (403, "api.context.permissions.app_error", "permission"),
        (404, "app.channel.get.existing.app_error", "channel not found"),
        (400, "api.post.create_post.channel_not_found", "channel not found"),
    ],
)
def test_mattermost_refusals(status: int, error_id: str, fragment: str) -> None:
    fault = mattermost_verdict(status, f'{{"id": "{error_id}", "message": "m"}}')
    assert isinstance(fault, ChannelRejected) and bilingual(fault)
    assert fault.code == f"{error_id} HTTP {status}" and fragment in fault.reason


def test_mattermost_posted_events_are_matched_by_channel() -> None:
    frame = {
        "event": "posted",
        "broadcast": {"channel_id": "c1"},
        "data": {"post": '{"id": "p", "channel_id": "c1", "message": "m"}'},
    }
    assert posted_message(frame, "c1") == {"id": "p", "channel_id": "c1", "message": "m"}
    assert posted_message(frame, "c2") is None
    assert posted_message({**frame, "event": "typing"}, "c1") is None
    assert posted_message({**frame, "data": {"post": "{not json"}}, "c1") is None


# ------------------------------------------------------------------ teams


def test_teams_workflow_answers() -> None:
    assert workflow_verdict(202, "") is None
    assert workflow_verdict(429, "", {"Retry-After": "5"}) == Throttle(5.0, "429")
    sig = workflow_verdict(401, '{"error": {"code": "DirectApiInvalidAuthorizationSignature"}}')
    gone = workflow_verdict(404, '{"error": {"code": "WorkflowNotFound"}}')
    schema = workflow_verdict(400, '{"error": {"code": "TriggerInputSchemaMismatch"}}')
    for fault in (sig, gone, schema):
        assert isinstance(fault, ChannelRejected) and bilingual(fault) and not fault.temporary
    assert "signature" in sig.reason and "turned off" in gone.reason
    assert isinstance(workflow_verdict(504, "<html>"), ChannelUnreachable)


def test_teams_graph_answers() -> None:
    assert graph_verdict(201, "{}") is None
    assert graph_verdict(503, "", {"Retry-After": "9"}) == Throttle(9.0, "TooManyRequests")
    assert isinstance(graph_verdict(503, ""), ChannelUnreachable)
    token = graph_verdict(401, '{"error": {"code": "InvalidAuthenticationToken"}}')
    assert (
        isinstance(token, ChannelRejected) and token.code == "InvalidAuthenticationToken HTTP 401"
    )
    assert graph_verdict(502, "").code == "HTTP 502"
    assert "permission" in graph_verdict(403, '{"error": {"code": "Forbidden"}}').reason


def test_teams_token_refusal_keeps_only_the_error_code() -> None:
    code, reason = token_refusal(401, '{"error": "invalid_client", "error_description": "x"}')
    assert (
        code == "invalid_client HTTP 401" and " / " in reason and "x" not in reason.split("(")[-1]
    )


def test_teams_card_carries_the_text() -> None:
    card = adaptive_card("【訓練】 x [TSG-7K3Q9XW2M4PD]")
    assert card["type"] == "message"
    content = card["attachments"][0]["content"]
    assert content["type"] == "AdaptiveCard"
    assert content["body"][0]["text"].endswith("[TSG-7K3Q9XW2M4PD]")


# ------------------------------------------------------------------ line works


def test_lineworks_answers() -> None:
    assert lineworks_verdict(201, "") is None
    assert lineworks_verdict(
        429, '{"code": "TOO_MANY_REQUESTS"}', {"rateLimit-reset": "40"}
    ) == Throttle(40.0, "TOO_MANY_REQUESTS")
    for status, code in ((401, "UNAUTHORIZED"), (403, "FORBIDDEN"), (404, "NOT_FOUND")):
        fault = lineworks_verdict(status, f'{{"code": "{code}", "description": "d"}}')
        assert isinstance(fault, ChannelRejected) and bilingual(fault)
        assert fault.code == f"{code} HTTP {status}"
    unavailable = lineworks_verdict(503, "")
    assert isinstance(unavailable, ChannelUnreachable) and unavailable.code == "HTTP 503"


def test_lineworks_jwt_is_signed_for_the_service_account() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    from cryptography.hazmat.primitives import serialization

    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    token = service_account_jwt("cid", "sa@x", load_private_key(pem), 1_700_000_000)
    claims = jwt.decode(
        token, key.public_key(), algorithms=["RS256"], options={"verify_exp": False}
    )
    assert claims == {"iss": "cid", "sub": "sa@x", "iat": 1_700_000_000, "exp": 1_700_003_600}
    with pytest.raises(ValueError):
        load_private_key("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")


def test_lineworks_monitoring_window_is_jst() -> None:
    window = monitoring_window(1_700_000_000.0, 1_700_000_000.0)
    assert window == {
        "startTime": "2023-11-15T07:13:19+09:00",
        "endTime": "2023-11-15T07:14:20+09:00",
    }


# ------------------------------------------------------------------ webhook and base


@pytest.mark.parametrize(
    ("status", "kind", "fragment"),
    [
        (401, ChannelRejected, "credentials"),
        (403, ChannelRejected, "credentials"),
        (404, ChannelRejected, "does not exist"),
        (500, ChannelRejected, "refused"),
        (503, ChannelUnreachable, "unavailable"),
    ],
)
def test_webhook_answers(status: int, kind: type, fragment: str) -> None:
    fault = webhook_verdict(status, '{"ok": false, "error": "x"}')
    assert isinstance(fault, kind) and bilingual(fault) and fragment in fault.reason
    assert webhook_verdict(204, "") is None
    assert webhook_verdict(429, "", {"Retry-After": "2"}) == Throttle(2.0, "429")


def test_retry_after_reads_http_dates_and_ignores_negative_values() -> None:
    date = {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}  # RFC 9110: a date is allowed too
    assert retry_after_seconds(date, 1.5, now=1445412480.0 - 4) == 4.0
    assert retry_after_seconds(date, 1.5) == 0.0  # in the past: go ahead now
    assert retry_after_seconds({"Retry-After": "soon"}, 1.5) == 1.5
    assert retry_after_seconds({"Retry-After": "-3"}) == 0.0
    assert retry_after_seconds(None, 2.0) == 2.0
