"""Pure SMS facts: statuses, error codes, segments, E.164 numbers."""

from __future__ import annotations

import pytest

from probes.sms.status import (
    InvalidNumber,
    Phase,
    classify,
    count_segments,
    error_reason,
    is_temporary,
    is_throttle,
    lost_reason,
    parse_e164,
    status_rank,
)


@pytest.mark.parametrize(
    ("status", "phase"),
    [
        ("queued", Phase.PENDING),
        ("accepted", Phase.PENDING),
        ("scheduled", Phase.PENDING),
        ("sending", Phase.PENDING),
        ("sent", Phase.AWAITING_RECEIPT),
        ("delivered", Phase.DELIVERED),
        ("read", Phase.DELIVERED),
        ("undelivered", Phase.FAILED),
        ("failed", Phase.FAILED),
        ("canceled", Phase.FAILED),
        ("received", Phase.INBOUND),
        ("something-new", Phase.PENDING),
    ],
)
def test_every_status_has_a_phase(status: str, phase: Phase) -> None:
    assert classify(status).phase is phase


# The codes the issue names, with a word that must appear in each language.
CODES = {
    20003: ("認証", "authentication"),
    20429: ("要求が多すぎ", "too many requests"),
    21211: ("宛先番号", "invalid 'To'"),
    21610: ("配信停止", "unsubscribed"),
    30003: ("端末に届きません", "unreachable"),
    30005: ("存在しない", "unknown destination"),
    30006: ("固定電話", "landline"),
    30007: ("迷惑メッセージ", "filtered"),
    30008: ("不明なエラー", "unknown error"),
}


@pytest.mark.parametrize(("code", "words"), CODES.items())
def test_failure_codes_give_a_bilingual_reason(code: int, words: tuple[str, str]) -> None:
    verdict = classify("undelivered", code)
    assert verdict.phase is Phase.FAILED and verdict.code == code
    assert verdict.reason is not None
    text = str(verdict.reason)
    ja, en = text.split(" / ", 1)
    assert words[0] in ja and str(code) in ja
    assert words[1].lower() in en.lower() and str(code) in en
    assert verdict.reason.text("en") == en and verdict.reason.text("ja") == ja


def test_failure_without_code_still_explains() -> None:
    assert "no error code" in str(classify("undelivered").reason)
    assert "canceled" in str(classify("canceled").reason)


def test_http_status_without_code_maps_to_twilio_codes() -> None:
    assert "(20003)" in str(error_reason(None, http_status=401))
    assert "(20429)" in str(error_reason(None, http_status=429))
    assert "HTTP 503" in str(error_reason(None, http_status=503))
    unknown = error_reason(21999, http_status=400, detail="some new refusal")
    assert "21999" in str(unknown) and "some new refusal" in str(unknown)


def test_throttling_is_not_a_refusal() -> None:
    assert is_throttle(20429) and is_throttle(None, 429)
    assert not is_throttle(21211, 400)
    assert is_temporary(None, 500) and is_temporary(30003)
    assert not is_temporary(21610, 400) and not is_temporary(30007)


def test_status_never_moves_back() -> None:
    ladder = ["queued", "sending", "sent", "delivered", "read"]
    ranks = [status_rank(s) for s in ladder]
    assert ranks == sorted(ranks) and len(set(ranks)) == len(ranks)
    assert status_rank("undelivered") > status_rank("sent")
    assert status_rank(None) < status_rank("queued")


def test_lost_reasons_tell_stuck_at_sent_from_false_receipts() -> None:
    stuck = str(lost_reason("sent"))
    assert "no carrier receipt" in stuck and "着信通知なし" in stuck
    assert "never left Twilio" in str(lost_reason("queued"))
    false = str(lost_reason("delivered", receipt_without_arrival=True))
    assert "false receipt" in false and "偽" in false


# --------------------------------------------------------------------------- segments


@pytest.mark.parametrize(
    ("body", "encoding", "units", "segments"),
    [
        ("", "GSM-7", 0, 0),
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),
        ("a" * 306, "GSM-7", 306, 2),
        ("a" * 307, "GSM-7", 307, 3),
        ("€" * 80, "GSM-7", 160, 1),  # extension characters take two septets
        ("€" * 81, "GSM-7", 162, 2),
        ("a" + "€" * 76, "GSM-7", 153, 1),
        ("訓" * 70, "UCS-2", 70, 1),
        ("訓" * 71, "UCS-2", 71, 2),
        ("訓" * 134, "UCS-2", 134, 2),
        ("訓" * 135, "UCS-2", 135, 3),
        ("a" * 69 + "訓", "UCS-2", 70, 1),  # one non-GSM character makes it all UCS-2
        ("😀" * 35, "UCS-2", 70, 1),  # outside the BMP: two UTF-16 units each
        ("😀" * 36, "UCS-2", 72, 2),
    ],
)
def test_segments(body: str, encoding: str, units: int, segments: int) -> None:
    count = count_segments(body)
    assert (count.encoding, count.units, count.segments) == (encoding, units, segments)


def test_a_character_is_never_split_across_segments() -> None:
    # 134 UTF-16 units would fit two 67-unit segments, but the emoji's surrogate
    # pair cannot straddle the boundary: 66 | 2 + 65 | 1 → three segments.
    body = "訓" * 66 + "😀" + "訓" * 66
    assert count_segments(body).units == 134
    assert count_segments(body).segments == 3
    # The same for a GSM escape pair (€ is ESC + e): 152 | 2 + 151 | 1.
    gsm = "a" * 152 + "€" + "a" * 152
    assert (count_segments(gsm).units, count_segments(gsm).segments) == (306, 3)


def test_a_drill_sms_is_ucs2_because_of_the_marker() -> None:
    from probes.base import DrillMessage

    body = DrillMessage.new("Please report in").render()
    assert count_segments(body).encoding == "UCS-2"


# --------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    "number",
    ["+819012345678", "+818012345678", "+817012345678", "+815012345678", "+14155552671"],
)
def test_valid_e164_numbers_including_japanese(number: str) -> None:
    assert parse_e164(number) == number


def test_national_format_gets_a_hint() -> None:
    with pytest.raises(InvalidNumber, match=r"did you mean \+819012345678"):
        parse_e164("090-1234-5678")


@pytest.mark.parametrize(
    "number", ["+8190123456789", "+81701234567", "+abc", "", "+81 90 1234 5678"]
)
def test_invalid_numbers_are_refused(number: str) -> None:
    with pytest.raises(InvalidNumber):
        parse_e164(number)


def test_spaced_number_is_told_its_e164_form() -> None:
    with pytest.raises(InvalidNumber, match=r"write \+819012345678"):
        parse_e164("+81 90 1234 5678")


def test_a_landline_cannot_be_an_sms_recipient() -> None:
    assert parse_e164("+81312345678") == "+81312345678"  # fine as a number…
    with pytest.raises(InvalidNumber, match="landline"):
        parse_e164("+81312345678", recipient=True)  # …but not as an SMS recipient
