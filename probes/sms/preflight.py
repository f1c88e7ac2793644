"""Preflight of a Twilio channel: account, sending number, balance, API — nothing sent.

Through the official ``twilio`` client as the probe uses it
(:class:`~probes.sms.twilio_http.AioTwilioHttp` on the drill's session), all reads::

    api.dns / .connect / .tls   api.twilio.com (or ``api_base``): its certificate
    account.auth    GET Accounts/{Sid}.json — the credentials log in
    account.status  the account is ``active`` (not ``suspended`` / ``closed``)
    number.sms      GET IncomingPhoneNumbers.json?PhoneNumber={from}: the number is the
                    account's, ``capabilities.sms`` is true and its status ``in-use``
    account.balance GET Balance.json: the balance covers the channel's cost cap
    callback.*      only when ``status_callback.public_url`` is set and is not the
                    listener's own address (which answers only during a drill): DNS,
                    connect, TLS of the public URL and one GET that gets an HTTP answer
                    (any status: the listener behind it runs only during a drill)

The cost cap compared is ``caps.max_cost``, or — without one — what the caps
let a run spend at the registered price (``max_segments × price_per_segment``);
with neither, the balance is reported and not judged. Facts (numbers, for the
metrics): ``twilio_balance``, ``cost_cap``, ``observer_configured``. A subaccount
has no balance of its own (Twilio says so): the phase passes and says it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
from twilio.base.exceptions import TwilioRestException, TwilioServiceException

from probes.base import ChannelRejected, ChannelUnreachable
from probes.endpoint import check_endpoint
from probes.faultcodes import transport_code
from probes.preflight import PhaseFailure, PhaseTimer, PreflightReport
from probes.sms.callbacks import callback_urls
from probes.sms.status import error_reason
from probes.sms.twilio_http import AioTwilioHttp

if TYPE_CHECKING:
    from probes.sms.probe import TwilioProbe

__all__ = ["TWILIO_API", "balance_verdict", "check_twilio", "cost_cap"]

TWILIO_API = "https://api.twilio.com"
T = TypeVar("T")


def cost_cap(max_cost: float | None, max_segments: int, price: float | None) -> float | None:
    """The most one run may cost under the channel's caps (None: nothing to compare).

    >>> cost_cap(5.0, 300, 0.08), cost_cap(None, 300, 0.08), cost_cap(None, 300, None)
    (5.0, 24.0, None)
    """
    if max_cost is not None:
        return max_cost
    if price is not None:
        return round(max_segments * price, 6)
    return None


def balance_verdict(
    balance: float, currency: str, cap: float | None, cap_currency: str
) -> ChannelRejected | None:
    """None when the balance covers the cap; else the refusal to report.

    >>> balance_verdict(20.0, "USD", 5.0, "USD") is None
    True
    >>> balance_verdict(1.5, "USD", 5.0, "USD").code
    'balance_below_cap'
    >>> balance_verdict(900.0, "JPY", 5.0, "USD").code
    'currency'
    """
    if cap is None:
        return None
    if currency.upper() != cap_currency.upper():
        return ChannelRejected(
            f"残高の通貨 {currency} が上限の通貨 {cap_currency} と異なり比べられません / "
            f"the balance is in {currency}, the cost cap in {cap_currency}: cannot compare",
            code="currency",
        )
    if balance < cap:
        return ChannelRejected(
            f"残高 {balance:g} {currency} が 1 回の上限費用 {cap:g} {cap_currency} を下回ります"
            f"（チャージしてください） / balance {balance:g} {currency} is below the run's "
            f"cost cap {cap:g} {cap_currency}: top up the account",
            code="balance_below_cap",
        )
    return None


async def _twilio(call: Awaitable[T], timeout: float) -> T:
    """One Twilio API call; its failures as the channel's faults, in both languages."""
    from probes.sms.probe import _code_of, _detail_of

    try:
        return await call
    except (TwilioRestException, TwilioServiceException) as exc:
        code, status = _code_of(exc), int(exc.status)
        reason = error_reason(code, http_status=status, detail=_detail_of(exc))
        if status == 401:  # refused credentials, in whichever phase: an auth failure
            raise PhaseFailure(str(reason), phase="auth", code=str(code or status)) from exc
        raise ChannelRejected(str(reason), code=str(code or status)) from exc
    except TimeoutError as exc:
        raise ChannelUnreachable(
            f"Twilio が {timeout:g} 秒以内に応答しません / Twilio did not answer within {timeout:g} s",
            code="timeout",
        ) from exc
    except aiohttp.ClientError as exc:
        name = exc.__class__.__name__
        raise ChannelUnreachable(
            f"Twilio に接続できません（{name}） / cannot reach Twilio ({name})",
            code=transport_code(exc),
        ) from exc


def _client(sid: str, token: str, http: AioTwilioHttp) -> Any:
    from twilio.rest import Client

    client = Client(sid, token, sid, http_client=http)
    return client.api.v2010.account  # builds the account's resources (lazy imports)


async def check_twilio(probe: TwilioProbe) -> PreflightReport:
    """Run the phases of the module docstring for *probe* (never opened, nothing sent)."""
    from probes.sms.probe import _reveal

    s = probe.settings
    wait = s.request_timeout
    async with PhaseTimer(probe.channel_id, probe.kind) as timer:
        await check_endpoint(timer, "api", s.api_base or TWILIO_API, timeout=wait)
        http = AioTwilioHttp(probe.env.http, base_url=s.api_base, timeout=wait)
        account = await asyncio.to_thread(
            _client, _reveal(s.account_sid), s.auth_token.reveal(), http
        )
        async with timer.phase("account.auth", "auth") as note:
            info = await _twilio(account.fetch_async(), wait)
            note["detail"] = f"{info.sid} ({info.type})"
        async with timer.phase("account.status", "account") as note:
            note["detail"] = str(info.status)
            if info.status != "active":
                raise ChannelRejected(
                    f"Twilio アカウントが {info.status} です（有効ではありません） / the Twilio "
                    f"account is {info.status}, not active",
                    code=f"account_{info.status}",
                )
        async with timer.phase("number.sms", "account") as note:
            note["detail"] = await _number(account, s.from_, wait)
        async with timer.phase("account.balance", "account") as note:
            note["detail"] = await _balance(timer, account, probe, wait)
        timer.fact("observer_configured", 1.0 if any(map(probe.observes, s.to)) else 0.0)
        callback = s.status_callback
        if callback is not None and callback.public_url is not None:
            if _own_listener(callback.public_url, callback.listen_host, callback.listen_port):
                timer.fact("callback_checked", 0.0)  # nothing listens there between drills
            else:
                await _callback(timer, callback.public_url, probe, wait)
                timer.fact("callback_checked", 1.0)
    return timer.report()


def _own_listener(public_url: str, listen_host: str, listen_port: int) -> bool:
    """Does *public_url* point straight at our own callback listener?

    That listener runs only while a drill is open, so between drills nobody answers
    there and a check of it would always fail: it is not checked (``callback_checked``
    0). A public URL in front of it (a reverse proxy) is checked.

    >>> _own_listener("http://127.0.0.1:8931", "127.0.0.1", 8931)
    True
    >>> _own_listener("https://drill.example.lg.jp/tsunagari", "127.0.0.1", 8931)
    False
    """
    url = urlsplit(public_url)
    port = url.port or (443 if url.scheme == "https" else 80)
    return url.hostname == listen_host and port == listen_port


async def _number(account: Any, number: str, wait: float) -> str:
    listing = account.incoming_phone_numbers.list_async(phone_number=number, limit=20)
    rows = [n for n in await _twilio(listing, wait) if n.phone_number == number]
    if not rows:
        raise ChannelRejected(
            f"送信元 {number} はこのアカウントの番号ではありません / the sending number {number} "
            "is not one of this account's numbers",
            code="number_missing",
        )
    row = rows[0]
    capabilities = row.capabilities if isinstance(row.capabilities, dict) else {}
    if not capabilities.get("sms"):
        raise ChannelRejected(
            f"送信元 {number} は SMS を送れません（capabilities.sms が false） / the sending "
            f"number {number} cannot send SMS (capabilities.sms is false)",
            code="number_not_sms",
        )
    if row.status is not None and row.status != "in-use":
        raise ChannelRejected(
            f"送信元 {number} の状態が {row.status} です（in-use ではありません） / the sending "
            f"number {number} is {row.status}, not in-use",
            code="number_status",
        )
    return f"{number} sms in-use"


async def _balance(timer: PhaseTimer, account: Any, probe: TwilioProbe, wait: float) -> str:
    s = probe.settings
    cap = cost_cap(s.caps.max_cost, s.caps.max_segments, s.price_per_segment)
    if cap is not None:
        timer.fact("cost_cap", cap)
    found = await _twilio(account.balance.fetch_async(), wait)
    if found.balance in (None, ""):
        return "残高なし（サブアカウント） / no balance of its own (a subaccount)"
    try:
        balance = float(found.balance)
    except ValueError as exc:
        raise ChannelRejected(
            "残高を読めません / the balance cannot be read", code="balance_unreadable"
        ) from exc
    timer.fact("twilio_balance", balance)
    currency = str(found.currency or s.currency)
    refusal = balance_verdict(balance, currency, cap, s.currency)
    if refusal is not None:
        raise refusal
    limit = f" ≥ {cap:g} {s.currency}" if cap is not None else " (上限なし / no cap)"
    return f"{balance:g} {currency}{limit}"


async def _callback(timer: PhaseTimer, public_url: str, probe: TwilioProbe, wait: float) -> None:
    await check_endpoint(timer, "callback", public_url, timeout=wait)
    status_url = callback_urls(public_url)[0]
    async with timer.phase("callback.http", "read") as note:
        try:
            async with probe.env.http().get(
                status_url, allow_redirects=False, timeout=aiohttp.ClientTimeout(total=wait)
            ) as resp:
                note["detail"] = f"HTTP {resp.status}"
        except aiohttp.ClientError as exc:
            name = exc.__class__.__name__
            raise ChannelUnreachable(
                f"状態通知の URL が HTTP で応答しません（{name}） / the status-callback URL "
                f"gives no HTTP answer ({name})",
                code="callback",
            ) from exc
