"""Why a delivery was not confirmed, in words (Japanese / English): pure, no I/O.

:func:`fault_outcome` maps an exception met at a channel boundary to the record's
outcome and reason, :func:`fault_code` to its reason code (``extra["reason_code"]``,
what :mod:`drills.core.taxonomy` classifies); :func:`unanswered` says who saw what when a
send got no answer.
"""

from __future__ import annotations

import ssl

from drills.core.delivery import Outcome
from drills.core.taxonomy import NO_CODE
from probes.base import (
    ChannelRejected,
    ChannelUnreachable,
    ObserverFault,
    Probe,
    ProbeError,
    Throttling,
)
from probes.settings import SecretUnresolvable

__all__ = ["fault_code", "fault_outcome", "rate_limited", "unanswered"]


def unanswered(
    exc: BaseException,
    probe: Probe,
    waited_s: float,
    opened_s: float,
    called_at: float | None = None,
) -> str:
    """Why a send got no answer: the send's side, the observer's side, and how long it waited.

    The observer's side says only what it knows: trouble it met; or, when its look began
    at or after the send was called (*called_at*, monotonic) and has not answered, just
    that; else that it reported no trouble.
    """
    if isinstance(exc, ChannelUnreachable):
        ja, sep, en = exc.reason.partition(" / ")
        send_ja = f"送信: {ja}（{waited_s:.1f} 秒後）"
        send_en = f"the send: {en if sep else ja} (after {waited_s:.1f} s)"
    else:
        send_ja = f"送信は {waited_s:.1f} 秒待っても応答がありませんでした（手順の制限時間）"
        send_en = f"the send got no answer in {waited_s:.1f} s (the step's time limit)"
    looking_since = probe.observer_looking_since()
    if not probe.confirms():
        obs_ja = obs_en = ""
    elif probe.observer_trouble() is not None:
        obs_ja, obs_en = "。観測側も接続できません", "; the observer could not reach it either"
    elif called_at is not None and looking_since is not None and looking_since >= called_at:
        obs_ja = "。送信とともに始めた観測側の確認にはまだ応答がありません"
        obs_en = "; the observer's look, begun with the send, had not answered yet"
    else:
        obs_ja = "。観測側からは異常の報告はありません（送信の経路だけの問題かもしれません）"
        obs_en = "; the observer reported no trouble (only the sending path may be affected)"
    open_ja = open_en = ""
    if opened_s >= 0.5:  # an open that waited for a silent server is part of the wait
        open_ja = f"。チャネルを開くのにも {opened_s:.1f} 秒かかりました"
        open_en = f"; opening the channel had taken {opened_s:.1f} s"
    return f"応答なし: {send_ja}{obs_ja}{open_ja} / not answering: {send_en}{obs_en}{open_en}"


def rate_limited(throttled: Throttling, timeout: float) -> tuple[Outcome, str]:
    """A send the step's timeout cut while the provider kept saying "slow down".

    Every answer read: the far end refused it (``rejected``). Its last retry still on
    the wire (``unanswered``): taken or not is unknown, so not seen in time (``lost``).

    >>> rate_limited(Throttling(2, "429", unanswered=True), 1.0)[0].value
    'lost'
    """
    n, code = throttled.count, throttled.code
    if throttled.unanswered:
        return Outcome.LOST, (
            f"レート制限で {n} 回拒否され（{code}）、最後の再送は {timeout:g} 秒の時点で応答待ち"
            f"（受け付けられたかは不明） / rate limited {n} times ({code}); the last retry was "
            f"still unanswered at the step's {timeout:g} s timeout (taken or not, unknown)"
        )
    return Outcome.REJECTED, (
        f"レート制限で {n} 回拒否され、{timeout:g} 秒以内に受け付けられず（{code}） / "
        f"rate limited {n} times ({code}) until the step's {timeout:g} s timeout"
    )


def fault_outcome(exc: BaseException, sending: bool = False) -> tuple[Outcome, str]:
    """Map an exception at a channel boundary to (outcome, reason)."""
    if isinstance(exc, ChannelRejected):
        return Outcome.REJECTED, exc.reason
    if isinstance(exc, ChannelUnreachable):
        return Outcome.LOST, exc.reason
    if isinstance(exc, ObserverFault):
        ja, sep, en = exc.reason.partition(" / ")  # each half whole: "ja / en"
        return Outcome.ERROR, f"観測できません: {ja} / observer failed: {en if sep else ja}"
    if isinstance(exc, TimeoutError) and sending:
        return Outcome.LOST, "送信がタイムアウト / send timed out"
    return Outcome.ERROR, f"ハーネスの障害 / harness fault: {type(exc).__name__}: {exc}"


def _cause_code(exc: BaseException) -> str | None:
    """A code from what *exc* was raised from (its ``__cause__`` chain), if telling."""
    seen: set[int] = set()
    cause = exc.__cause__
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, SecretUnresolvable):
            return "secret"
        if isinstance(cause, ssl.SSLError):
            return "tls"
        if isinstance(cause, TimeoutError):
            return "timeout"
        if isinstance(cause, OSError):
            return "connect"
        cause = cause.__cause__
    return None


def fault_code(exc: BaseException, sending: bool = False) -> str:
    """The reason code of the record :func:`fault_outcome` makes of *exc*.

    A probe's own ``code`` wins (every refusal a probe raises carries one: a test scans
    ``probes/``); a probe error without one gets a default by what it was raised from
    (a timeout, a refused connection, TLS, an unresolvable secret), else by its class:
    ``unreachable``, ``observer``, or for a refusal ``rejected`` — no code at all
    (:data:`drills.core.taxonomy.NO_CODE`). A timeout while sending is ``send_timeout``;
    anything else is ``harness``: not judged (:class:`drills.core.taxonomy.NotJudged`).

    >>> fault_code(ChannelRejected("x", code="invalid_auth")), fault_code(ChannelUnreachable("x"))
    ('invalid_auth', 'unreachable')
    >>> fault_code(TimeoutError(), sending=True), fault_code(KeyError("bug"))
    ('send_timeout', 'harness')
    """
    if isinstance(exc, ProbeError):
        if exc.code:
            return exc.code
        from_cause = _cause_code(exc)
        if from_cause is not None:
            return from_cause
        if isinstance(exc, ChannelRejected):
            return NO_CODE
        if isinstance(exc, ChannelUnreachable):
            return "unreachable"
        if isinstance(exc, ObserverFault):
            return "observer"
        return "harness"
    if isinstance(exc, TimeoutError) and sending:
        return "send_timeout"
    return "harness"
