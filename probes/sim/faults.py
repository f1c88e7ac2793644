"""Injected faults for the simulated chat services (tests; the fault matrix).

In the style of pytest-httpserver's handlers: a simulator answers its next
request(s) of a *role* — ``"send"`` (the kind's post endpoint) or ``"read"``
(what its observer reads) — with a :class:`Fault` instead of its usual answer::

    sim.inject("131211/chat", Fault("send", "status", status=429, headers={...}, body=...))
    sim.inject(key, Fault("send", "garbage"))      # 200 text/html: a proxy's page, not the API
    sim.inject(key, Fault("send", "disconnect"))   # the far end takes the message, then the
                                                   # connection is cut mid-response
    sim.inject(key, Fault("read", "delay", delay=2.0))   # answers late (then normally)

Each simulator names the request paths of its roles (``fault_paths``, regular
expressions searched in the path); :class:`probes.sim.chat.ChatSimBase` runs
:func:`take_fault` and :func:`answer_with` in a middleware. ``times`` answers are
faulty (0: every one). A ``status`` fault on a send books the drill tokens of the
request in the ledger as refused under the fault's channel (``final`` unless 429 or
5xx); ``garbage`` and ``status`` faults never reach the service (no ledger entry:
the far end never heard of the message).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from aiohttp import web

from probes.sim.ledger import Ledger

__all__ = ["GARBAGE", "Fault", "answer_with", "cut_off", "take_fault"]

GARBAGE = "<html><head><title>Maintenance</title></head><body>メンテナンス中</body></html>"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Fault:
    """One injected misbehaviour: what, for which role, how often.

    ``action``: ``status`` (answer *status* with *headers* and *body*, the request is not
    served), ``garbage`` (200 ``text/html``, not the service's JSON; not served),
    ``disconnect`` (served, then the answer is cut off mid-body), ``delay`` (served
    after *delay* seconds).
    """

    role: Literal["send", "read"]
    action: Literal["status", "garbage", "disconnect", "delay"]
    status: int = 200
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    times: int = 1  # 0: every matching request
    delay: float = 0.0
    channel: str = ""  # set when injected: where the ledger books a refused send
    hits: int = 0  # how many requests met it


def take_fault(faults: list[Fault], paths: Mapping[str, str], request: web.Request) -> Fault | None:
    """The first armed fault *request* meets (counted, and disarmed when used up), or None."""
    for fault in faults:
        pattern = paths.get(fault.role)
        if pattern is None or not re.search(pattern, request.path):
            continue
        if fault.role == "send" and request.method not in ("POST", "PUT"):
            continue
        fault.hits += 1
        if fault.times and fault.hits >= fault.times:
            faults.remove(fault)
        return fault
    return None


async def answer_with(
    fault: Fault, request: web.Request, handler: Handler, ledger: Ledger
) -> web.StreamResponse:
    """Answer *request* as *fault* says (*handler* is the service's own answer)."""
    if fault.action == "delay":
        await asyncio.sleep(fault.delay)
        return await handler(request)
    if fault.action == "disconnect":
        return await cut_off(request, await handler(request))
    if fault.action == "garbage":
        return web.Response(status=200, text=GARBAGE, content_type="text/html")
    if fault.role == "send":
        final = fault.status != 429 and fault.status < 500
        body = await request.text() if request.can_read_body else ""
        ledger.refused_text(fault.channel, body, code=str(fault.status), final=final)
    return web.Response(
        status=fault.status,
        text=fault.body,
        headers={"Content-Type": "application/json", **fault.headers},
    )


async def cut_off(request: web.Request, served: web.StreamResponse) -> web.StreamResponse:
    """Send the head of *served* and half its body, then drop the connection."""
    body = served.body if isinstance(served, web.Response) else None
    data = bytes(body) if isinstance(body, bytes | bytearray) else b""
    cut = web.StreamResponse(status=served.status, headers=served.headers)
    cut.content_length = max(len(data), 64)  # promised, never all sent
    await cut.prepare(request)
    await cut.write(data[: len(data) // 2])
    if request.transport is not None:
        request.transport.close()
    return cut
