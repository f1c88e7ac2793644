"""The local Twilio's account resources: what a preflight reads, read-only.

Mounted by :class:`probes.sim.twilio.TwilioSimulator` beside the Messages API,
in the documented shapes of the 2010-04-01 API::

    GET /2010-04-01/Accounts/{Sid}.json                      Account
        (https://www.twilio.com/docs/iam/api/account)
    GET /2010-04-01/Accounts/{Sid}/IncomingPhoneNumbers.json  page of IncomingPhoneNumbers
        ?PhoneNumber=+81…  (https://www.twilio.com/docs/phone-numbers/api/incomingphonenumber-resource)
    GET /2010-04-01/Accounts/{Sid}/Balance.json              {"account_sid", "balance", "currency"}

Knobs (tests): :meth:`AccountBook.set_balance` (a low balance),
:meth:`AccountBook.set_number` (a number without SMS capability, or not
``in-use``), :meth:`AccountBook.set_status` (``suspended``, ``closed``). These
reads write nothing in the ledger: a check is not a message.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from aiohttp import web

if TYPE_CHECKING:
    from probes.sim.twilio import TwilioSimulator

__all__ = ["AccountBook", "AccountFacts", "NumberFacts"]

API = "/2010-04-01"
_CREATED = "Thu, 01 Feb 2024 00:00:00 +0000"


@dataclass
class NumberFacts:
    """What IncomingPhoneNumbers says of one number."""

    sms: bool = True
    mms: bool = False
    voice: bool = True
    status: str = "in-use"


@dataclass
class AccountFacts:
    """What the Account and Balance resources say of one account."""

    status: str = "active"  # active | suspended | closed
    balance: float | None = 20.0  # None: a subaccount (Twilio gives it no balance)
    currency: str = "USD"
    numbers: dict[str, NumberFacts] = field(default_factory=dict)


def _sid(prefix: str, *parts: str) -> str:
    return prefix + hashlib.sha256(":".join(parts).encode()).hexdigest()[:32]


class AccountBook:
    """The account facts of a :class:`TwilioSimulator`, and the handlers that show them."""

    def __init__(self, sim: TwilioSimulator) -> None:
        self.sim = sim
        self.facts: dict[str, AccountFacts] = {}

    def of(self, account_sid: str) -> AccountFacts:
        facts = self.facts.get(account_sid)
        if facts is None:
            facts = self.facts[account_sid] = AccountFacts()
        return facts

    # ------------------------------------------------------------------ knobs

    def set_balance(self, account_sid: str, balance: float | None, currency: str = "USD") -> None:
        facts = self.of(account_sid)
        facts.balance, facts.currency = balance, currency

    def set_number(self, account_sid: str, number: str, **facts: Any) -> None:
        """Change what IncomingPhoneNumbers says of *number* (``sms=False``, ``status=…``)."""
        book = self.of(account_sid).numbers
        current = book.get(number, NumberFacts())
        book[number] = NumberFacts(**{**current.__dict__, **facts})

    def set_status(self, account_sid: str, status: str) -> None:
        self.of(account_sid).status = status

    # ------------------------------------------------------------------ handlers

    def routes(self, app: web.Application) -> None:
        app.router.add_get(API + "/Accounts/{account}.json", self._account)
        app.router.add_get(API + "/Accounts/{account}/Balance.json", self._balance)
        app.router.add_get(
            API + "/Accounts/{account}/IncomingPhoneNumbers.json", self._incoming_numbers
        )

    async def _account(self, request: web.Request) -> web.StreamResponse:
        account = self.sim.authenticated(request)
        if isinstance(account, web.Response):
            return account
        facts = self.of(account.sid)
        base = f"{API}/Accounts/{account.sid}"
        body = {
            "auth_token": account.token,  # the real resource shows it too; never printed
            "date_created": _CREATED,
            "date_updated": _CREATED,
            "friendly_name": "Tsunagari drill (simulated)",
            "owner_account_sid": account.sid,
            "sid": account.sid,
            "status": facts.status,
            "subresource_uris": {
                "balance": f"{base}/Balance.json",
                "incoming_phone_numbers": f"{base}/IncomingPhoneNumbers.json",
                "messages": f"{base}/Messages.json",
            },
            "type": "Full",
            "uri": f"{base}.json",
        }
        return web.json_response(body)

    async def _balance(self, request: web.Request) -> web.StreamResponse:
        account = self.sim.authenticated(request)
        if isinstance(account, web.Response):
            return account
        facts = self.of(account.sid)
        balance = None if facts.balance is None else f"{facts.balance:.5f}"
        return web.json_response(
            {"account_sid": account.sid, "balance": balance, "currency": facts.currency}
        )

    async def _incoming_numbers(self, request: web.Request) -> web.StreamResponse:
        account = self.sim.authenticated(request)
        if isinstance(account, web.Response):
            return account
        wanted = request.query.get("PhoneNumber")
        numbers = [n for n in account.numbers if wanted is None or n == wanted]
        size = max(1, min(1000, int(request.query.get("PageSize", "50"))))
        rows = [self._number(account.sid, n, account.numbers[n]) for n in numbers[:size]]
        keep = {k: v for k, v in request.query.items() if k not in ("Page", "PageSize")}
        first = f"{request.path}?{urlencode({**keep, 'PageSize': str(size), 'Page': '0'})}"
        return web.json_response(
            {
                "end": max(0, len(rows) - 1),
                "first_page_uri": first,
                "incoming_phone_numbers": rows,
                "next_page_uri": None,
                "page": 0,
                "page_size": size,
                "previous_page_uri": None,
                "start": 0,
                "uri": request.path_qs,
            }
        )

    def _number(self, account_sid: str, number: str, sms_url: str | None) -> dict[str, Any]:
        facts = self.of(account_sid).numbers.get(number, NumberFacts())
        sid = _sid("PN", account_sid, number)
        stamp = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
        return {
            "account_sid": account_sid,
            "address_requirements": "none",
            "address_sid": None,
            "api_version": "2010-04-01",
            "beta": False,
            "capabilities": {
                "fax": False,
                "mms": facts.mms,
                "sms": facts.sms,
                "voice": facts.voice,
            },
            "date_created": _CREATED,
            "date_updated": stamp,
            "emergency_status": "Inactive",
            "friendly_name": number,
            "identity_sid": None,
            "origin": "twilio",
            "phone_number": number,
            "sid": sid,
            "sms_application_sid": None,
            "sms_fallback_method": "POST",
            "sms_fallback_url": "",
            "sms_method": "POST",
            "sms_url": sms_url or "",
            "status": facts.status,
            "status_callback": "",
            "status_callback_method": "POST",
            "trunk_sid": None,
            "type": "local",
            "uri": f"{API}/Accounts/{account_sid}/IncomingPhoneNumbers/{sid}.json",
            "voice_method": "POST",
            "voice_url": "",
        }
