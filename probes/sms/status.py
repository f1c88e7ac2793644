"""Pure SMS facts: Twilio statuses and error codes, segments, E.164 numbers.

Nothing here does I/O; the ``twilio`` probe (:mod:`probes.sms.probe`) and the local
Twilio (:mod:`probes.sim.twilio`) both lean on it, and it is unit-tested alone.

Twilio's status flow (https://www.twilio.com/docs/messaging/api/message-resource#message-status-values)::

    queued / accepted / scheduled ──► sending ──► sent ──► delivered ──► read
                                                      └──► undelivered | failed
    (canceled: a scheduled or queued message withdrawn before sending)

``delivered`` is the *carrier's receipt*; ``sent`` only means the carrier took
it. A message that stays at ``sent`` never got a receipt: it is not delivered.

    >>> classify("delivered").phase
    <Phase.DELIVERED: 'delivered'>
    >>> classify("undelivered", 30003).reason.en
    'unreachable destination handset (switched off or out of coverage) (30003)'
    >>> count_segments("【訓練】" + "あ" * 66).segments
    1
    >>> parse_e164("+819012345678")
    '+819012345678'
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import phonenumbers

from probes.base import Reason

__all__ = [
    "TERMINAL_STATUSES",
    "InvalidNumber",
    "Phase",
    "Reason",
    "SegmentCount",
    "StatusVerdict",
    "classify",
    "count_segments",
    "error_reason",
    "is_temporary",
    "is_throttle",
    "lost_reason",
    "parse_e164",
    "status_rank",
]


# --------------------------------------------------------------------------- reasons


# Twilio error codes → (ja, en, temporary). https://www.twilio.com/docs/api/errors/<code>
_ERRORS: dict[int, tuple[str, str, bool]] = {
    20003: (
        "認証に失敗しました（Account SID と Auth Token を確認してください）",
        "authentication failed (check the Account SID and Auth Token)",
        False,
    ),
    20404: ("Twilio 上にリソースがありません", "resource not found at Twilio", False),
    20429: (
        "Twilio API の要求が多すぎます（流量制限）",
        "too many requests (Twilio API rate limit)",
        True,
    ),
    20500: ("Twilio 内部エラー", "Twilio internal server error", True),
    20503: ("Twilio が一時的に利用できません", "Twilio service temporarily unavailable", True),
    21211: ("宛先番号 (To) が無効です", "invalid 'To' phone number", False),
    21408: (
        "この地域への SMS 送信が許可されていません",
        "permission to send SMS to this region is not enabled",
        False,
    ),
    21610: (
        "宛先が配信停止（STOP）しています",
        "recipient has unsubscribed (replied STOP)",
        False,
    ),
    21612: (
        "この送信元からこの宛先へは送れません",
        "the 'To' number cannot be reached from this 'From' number",
        False,
    ),
    21614: ("宛先は携帯電話番号ではありません", "'To' number is not a mobile number", False),
    30001: ("送信キューがあふれました", "message queue overflow", True),
    30002: ("Twilio アカウントが停止されています", "Twilio account suspended", False),
    30003: (
        "端末に届きません（電源が切れているか圏外）",
        "unreachable destination handset (switched off or out of coverage)",
        True,
    ),
    30004: ("受信側でブロックされました", "message blocked by the recipient", False),
    30005: (
        "宛先番号が存在しないか不明です",
        "unknown destination handset (number does not exist)",
        False,
    ),
    30006: (
        "固定電話、または SMS を受けられない通信事業者です",
        "landline or unreachable carrier",
        False,
    ),
    30007: (
        "通信事業者に迷惑メッセージとして遮断されました",
        "message filtered by the carrier (spam filter)",
        False,
    ),
    30008: (
        "不明なエラー（通信事業者から詳細なし）",
        "unknown error (no detail from the carrier)",
        True,
    ),
}

_THROTTLE_CODES = frozenset({20429, 14107, 30022})


def error_reason(code: int | None, *, http_status: int | None = None, detail: str = "") -> Reason:
    """The reason for a Twilio error code (or a bare HTTP status when there is none).

    *detail* is Twilio's own message, appended for codes this table does not know.
    It must never carry a credential (Twilio's messages do not).
    """
    if code is None and http_status is not None:
        code = {401: 20003, 429: 20429}.get(http_status)
    if code is not None and code in _ERRORS:
        ja, en, _ = _ERRORS[code]
        return Reason(f"{ja}（{code}）", f"{en} ({code})")
    if code is not None and code >= 100 and code not in (http_status,):
        tail = f": {detail[:160]}" if detail else ""
        return Reason(f"Twilio エラー {code}", f"Twilio error {code}{tail}")
    if http_status is not None and http_status >= 500:
        return Reason(
            f"Twilio サーバーエラー（HTTP {http_status}）",
            f"Twilio server error (HTTP {http_status})",
        )
    if http_status is not None:
        tail = f": {detail[:160]}" if detail else ""
        return Reason(
            f"Twilio が拒否しました（HTTP {http_status}）",
            f"refused by Twilio (HTTP {http_status}){tail}",
        )
    return Reason("Twilio エラー（コードなし）", "Twilio error (no code)")


def is_throttle(code: int | None, http_status: int | None = None) -> bool:
    """Is this "slow down" (safe to retry after backing off), not a refusal?"""
    return http_status == 429 or code in _THROTTLE_CODES


def is_temporary(code: int | None, http_status: int | None = None) -> bool:
    """May the same message succeed later (rate limits, 5xx, unreachable handset)?"""
    if is_throttle(code, http_status) or (http_status is not None and http_status >= 500):
        return True
    return code is not None and code in _ERRORS and _ERRORS[code][2]


# --------------------------------------------------------------------------- statuses


class Phase(Enum):
    """Where a Message is on its way, as far as a drill cares."""

    PENDING = "pending"  # queued, accepted, scheduled, sending: still at Twilio
    AWAITING_RECEIPT = "awaiting_receipt"  # sent: the carrier took it, no receipt yet
    DELIVERED = "delivered"  # delivered, read: the carrier's receipt
    FAILED = "failed"  # undelivered, failed, canceled
    INBOUND = "inbound"  # receiving, received: a message *to* one of our numbers


_PHASES: dict[str, Phase] = {
    "queued": Phase.PENDING,
    "accepted": Phase.PENDING,
    "scheduled": Phase.PENDING,
    "sending": Phase.PENDING,
    "sent": Phase.AWAITING_RECEIPT,
    "partially_delivered": Phase.AWAITING_RECEIPT,
    "delivered": Phase.DELIVERED,
    "read": Phase.DELIVERED,
    "undelivered": Phase.FAILED,
    "failed": Phase.FAILED,
    "canceled": Phase.FAILED,
    "receiving": Phase.INBOUND,
    "received": Phase.INBOUND,
}

# Callbacks may arrive out of order; a status never moves back down this ladder.
_RANK: dict[str, int] = {
    "scheduled": 0,
    "accepted": 1,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "partially_delivered": 3,
    "delivered": 4,
    "undelivered": 4,
    "failed": 4,
    "canceled": 4,
    "read": 5,
    "receiving": 0,
    "received": 4,
}

TERMINAL_STATUSES = frozenset({"delivered", "read", "undelivered", "failed", "canceled"})

_FAILED_WITHOUT_CODE: dict[str, Reason] = {
    "undelivered": Reason(
        "配信されませんでした（エラーコードなし）", "undelivered (no error code)"
    ),
    "failed": Reason("Twilio が送出できませんでした（エラーコードなし）", "failed (no error code)"),
    "canceled": Reason("送出前に取り消されました", "canceled before sending"),
}


def status_rank(status: str | None) -> int:
    """Order of *status* on the ladder (unknown statuses rank lowest)."""
    return _RANK.get(status or "", -1)


@dataclass(frozen=True, slots=True)
class StatusVerdict:
    """What one observed status (with its error code) means for the delivery."""

    status: str
    phase: Phase
    code: int | None = None
    reason: Reason | None = None  # set for FAILED


def classify(status: str, error_code: int | None = None) -> StatusVerdict:
    """Map a Message status (+ ``error_code``) to a phase and, for failures, a reason.

    Unknown statuses count as pending: the far end has not confirmed anything.
    """
    phase = _PHASES.get(status, Phase.PENDING)
    if phase is not Phase.FAILED:
        return StatusVerdict(status, phase)
    if error_code is not None:
        return StatusVerdict(status, phase, error_code, error_reason(error_code))
    return StatusVerdict(status, phase, None, _FAILED_WITHOUT_CODE[status])


def lost_reason(last_status: str | None, *, receipt_without_arrival: bool = False) -> Reason:
    """Why a delivery timed out, from the last status seen.

    ``receipt_without_arrival``: in loopback mode, the carrier said *delivered*
    but the receiving number never got the message — a false receipt.
    """
    if receipt_without_arrival:
        return Reason(
            "配信済みの通知はあるが受信側の番号に届いていません（偽の配信確認）",
            "carrier receipt says delivered, but nothing arrived at the receiving number "
            "(false receipt)",
        )
    if last_status in ("sent", "partially_delivered"):
        return Reason(
            "着信通知なし（キャリアの配信確認が来ず「送信済み」のまま）",
            "no carrier receipt (still 'sent')",
        )
    if last_status is None:
        return Reason("Twilio から状態を得られませんでした", "no status received from Twilio")
    return Reason(
        f"Twilio から送出されないまま（{last_status}）",
        f"never left Twilio (still '{last_status}')",
    )


# --------------------------------------------------------------------------- segments

# GSM 03.38 default alphabet (ESC excluded) and its extension table (2 septets each).
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = frozenset("^{}\\[~]|€\f")


@dataclass(frozen=True, slots=True)
class SegmentCount:
    """How an SMS body is encoded and into how many segments it is split.

    ``units`` are septets (GSM-7) or UTF-16 code units (UCS-2).
    """

    encoding: str  # "GSM-7" or "UCS-2"
    units: int
    segments: int


def _pack(sizes: list[int], single: int, multi: int) -> int:
    """Segments needed for characters of the given unit *sizes*.

    A character is never split across segments (a GSM escape pair, a UTF-16
    surrogate pair), so a long message may need one more segment than
    ``ceil(units / multi)``.
    """
    total = sum(sizes)
    if total <= single:
        return 1 if total else 0
    segments, used = 1, 0
    for size in sizes:
        if used + size > multi:
            segments += 1
            used = 0
        used += size
    return segments


def count_segments(body: str) -> SegmentCount:
    """Encoding and segment count of *body* as a carrier would split it.

    GSM-7: 160 septets in one segment, 153 per segment when concatenated.
    UCS-2 (any Japanese text): 70 UTF-16 units, 67 when concatenated; a
    character outside the BMP (most emoji) takes two units.

    >>> count_segments("a" * 160), count_segments("a" * 161).segments
    (SegmentCount(encoding='GSM-7', units=160, segments=1), 2)
    >>> count_segments("訓" * 70).segments, count_segments("訓" * 71).segments
    (1, 2)
    """
    if all(ch in _GSM_BASIC or ch in _GSM_EXTENDED for ch in body):
        sizes = [2 if ch in _GSM_EXTENDED else 1 for ch in body]
        return SegmentCount("GSM-7", sum(sizes), _pack(sizes, 160, 153))
    sizes = [2 if ord(ch) > 0xFFFF else 1 for ch in body]
    return SegmentCount("UCS-2", sum(sizes), _pack(sizes, 70, 67))


# --------------------------------------------------------------------------- numbers


class InvalidNumber(ValueError):
    """A phone number that is not a valid E.164 number (or cannot receive SMS)."""


def parse_e164(number: str, *, recipient: bool = False) -> str:
    """Validate *number* as E.164 and return it; raise :class:`InvalidNumber` with advice.

    With ``recipient=True`` landlines are refused too: they cannot receive SMS
    (Twilio would answer 30006).

    >>> parse_e164("090-1234-5678")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    probes.sms.status.InvalidNumber: ... (did you mean +819012345678?)
    """
    text = number.strip() if isinstance(number, str) else ""
    if not text.startswith("+"):
        hint_ja = hint_en = ""
        try:
            guess = phonenumbers.parse(text, "JP")
            if phonenumbers.is_valid_number(guess):
                e164 = phonenumbers.format_number(guess, phonenumbers.PhoneNumberFormat.E164)
                hint_ja, hint_en = f"（{e164} ですか？）", f" (did you mean {e164}?)"
        except phonenumbers.NumberParseException:
            pass
        raise InvalidNumber(
            f"E.164 形式ではありません: {number!r}{hint_ja} / "
            f"not in E.164 format: {number!r}{hint_en}"
        )
    try:
        parsed = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException as exc:
        raise InvalidNumber(
            f"電話番号として読めません: {number!r} / not a phone number: {number!r}"
        ) from exc
    canonical = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidNumber(f"存在しない番号です: {number!r} / not a valid number: {number!r}")
    if canonical != text:
        raise InvalidNumber(
            f"E.164 形式ではありません: {number!r}（{canonical} と書いてください） / "
            f"not in E.164 format: {number!r} (write {canonical})"
        )
    if recipient and phonenumbers.number_type(parsed) == phonenumbers.PhoneNumberType.FIXED_LINE:
        raise InvalidNumber(
            f"固定電話番号には SMS を送れません: {number!r} / "
            f"a landline cannot receive SMS: {number!r}"
        )
    return canonical
