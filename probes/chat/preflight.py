"""Preflight of the chat kinds: can the sender post and the observer read, without a post.

Every chat check runs the same phases, in order, and stops at the first that
fails (:class:`probes.preflight.PhaseTimer`)::

    {endpoint}.dns / .connect / .tls   each HTTPS endpoint the kind talks to (probes.endpoint)
    sender.auth     who-am-I of the sending credential
    sender.read     the sender may post there (member of the room / channel, bot exists)
    observer.auth   who-am-I of the observing credential — refused when it is the sender
    observer.read   the observer can read the room (membership, or one empty read)

What each kind calls (all read-only, none leaves anything a person can see;
the calls are in :mod:`probes.chat.checks`):

============ =============================== ==================================== ================================
kind         sender.auth / sender.read       observer.auth                        observer.read
============ =============================== ==================================== ================================
matrix       ``/account/whoami`` /           ``/account/whoami`` (user must be    ``/joined_rooms`` holds the room
             ``/joined_rooms`` holds the      the ``observer.user``)
             room, the room is unencrypted
slack        ``auth.test`` /                 ``auth.test``                        ``conversations.info``
             ``conversations.info`` is_member                                      is_member
mattermost   ``users/me`` /                  ``users/me``                         ``channels/{id}/members/{user}``
             ``channels/{id}/members/{user}``
teams        Graph sender: token refresh;    client-credentials token             the channel's message delta,
             a Workflows URL cannot be                                             filtered to nothing newer than now
             checked without posting
lineworks    service-account token /         token with ``monitoring.read``       the monitoring download (its
             ``GET /bots/{botId}``                                                 redirect, not followed)
============ =============================== ==================================== ================================

A channel without an observer is *accepted only* in a drill; its check has no
observer phases and says so in the fact ``observer_configured`` (0), rather
than failing — the drill would run, it just cannot confirm arrival. Likewise a
Teams Workflows URL: its signature is checked only by posting, so there is no
``sender.auth`` phase and the fact ``sender_checked`` is 0. Teams and
LINE WORKS observers are app identities (tenant-wide reads), so "observer =
sender" cannot happen there and is not checked.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from probes.base import ChannelRejected, ObserverIsSender, ProbeError
from probes.chat.answers import both
from probes.chat.base import ChatProbe, Throttle, as_observer_fault
from probes.endpoint import check_endpoint, endpoint_of
from probes.preflight import PhaseFailure, PhaseTimer, PreflightReport

__all__ = [
    "ChatCheck",
    "as_fault",
    "check_chat",
    "credential_refused",
    "foreign",
    "json_object",
    "throttled",
]


async def check_chat(probe: ChatProbe, check: ChatCheck) -> PreflightReport:
    """Run *check*'s phases for *probe*; the report, never an exception for a channel fault."""
    try:
        return await _run(probe, check)
    finally:
        await probe._close_clients()  # the kind's own clients (made again when it opens)


async def _run(probe: ChatProbe, check: ChatCheck) -> PreflightReport:
    async with PhaseTimer(probe.channel_id, probe.kind) as timer:
        timeout = probe.settings.request_timeout
        seen: set[tuple[str, str, int]] = set()
        for name, url in check.endpoints():
            where = endpoint_of(url)
            if where not in seen:  # one service may serve several roles (a simulator does)
                seen.add(where)
                await check_endpoint(timer, name, url, timeout=timeout)
        sender: str | None = None
        timer.fact("sender_checked", 1.0 if check.checks_sender() else 0.0)
        if check.checks_sender():
            async with timer.phase("sender.auth", "auth") as note:
                sender = await check.sender()
                note["detail"] = sender or check.sender_detail()
        if check.reads_as_sender:
            async with timer.phase("sender.read", "read") as note:
                note["detail"] = await check.sender_read()
        observed = probe.confirms()
        timer.fact("observer_configured", 1.0 if observed else 0.0)
        if observed:
            async with timer.phase("observer.auth", "auth") as note:
                observer = await check.observer()
                if observer is not None and observer == sender:
                    raise ObserverIsSender.of(probe.channel_id, observer)
                note["detail"] = observer or check.observer_detail()
            async with timer.phase("observer.read", "read") as note:
                note["detail"] = await check.observer_read()
    return timer.report()


def throttled(service: str, throttle: Throttle) -> ChannelRejected:
    return ChannelRejected(
        both(
            f"{service} がレート制限中です（{throttle.seconds:g} 秒後に再試行）",
            f"{service} is rate limiting (retry in {throttle.seconds:g} s)",
            throttle.code,
        ),
        code=throttle.code,
        temporary=True,
    )


def as_fault(service: str, verdict: Any, observer: bool) -> ProbeError:
    """A kind's verdict (a fault or a Throttle) as the fault this phase raises."""
    if isinstance(verdict, Throttle):
        verdict = throttled(service, verdict)
    if observer and isinstance(verdict, ChannelRejected):
        return as_observer_fault(verdict)
    assert isinstance(verdict, ProbeError)
    return verdict


# Slack answers a refused token with HTTP 200 and one of these errors.
_SLACK_REFUSED = frozenset(
    {"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive"}
)


def credential_refused(status: int, fault: ProbeError, error: str = "") -> ProbeError:
    """*fault* as a failed ``auth`` phase when the service refused the credential — HTTP 401,
    or Slack's ``invalid_auth`` and kin (*error*) — in whichever phase it was met: a read
    answered 401 says the token is not valid, not that the room cannot be read. Anything
    else (403 included: logged in, not allowed) is returned as it is.

    >>> from probes.base import ChannelRejected
    >>> credential_refused(401, ChannelRejected("x / x", code="HTTP 401")).phase
    'auth'
    >>> type(credential_refused(403, ChannelRejected("x / x"))).__name__
    'ChannelRejected'
    """
    if (status == 401 or error in _SLACK_REFUSED) and not isinstance(fault, PhaseFailure):
        refused = PhaseFailure(fault.reason, phase="auth", code=fault.code)
        refused.__cause__ = fault
        return refused
    return fault


class ChatCheck(ABC):
    """The kind's read-only calls behind the phases of :func:`check_chat`."""

    # Does the sender's access to the room get a phase of its own?
    reads_as_sender: ClassVar[bool] = True

    def checks_sender(self) -> bool:
        """Can the sender's credential be checked without posting? (False: no phase, said.)"""
        return True

    def sender_detail(self) -> str:
        """What to show for a sender without a who-am-I (an app credential)."""
        return ""

    def observer_detail(self) -> str:
        """What to show for an observer without a who-am-I (an app credential)."""
        return ""

    @abstractmethod
    def endpoints(self) -> list[tuple[str, str]]:
        """(name, URL) of every endpoint the kind talks to; only scheme, host, port are used."""

    @abstractmethod
    async def sender(self) -> str | None:
        """Log in as the sender; who it is (None: the service has no who-am-I)."""

    async def sender_read(self) -> str:
        """The sender may post where the drill posts; what was learnt."""
        return ""

    @abstractmethod
    async def observer(self) -> str | None:
        """Log in as the observer; who it is (None: an app identity, nothing to compare)."""

    @abstractmethod
    async def observer_read(self) -> str:
        """The observer can read where the drill posts; what was learnt."""


def foreign(status: int) -> ChannelRejected:
    """The refusal for an answer that is not the service's own (no JSON it would send)."""
    return ChannelRejected(
        both("サービスの応答ではありません", "not the service's answer", f"HTTP {status}"),
        code=f"HTTP {status}",
    )


def json_object(text: str) -> dict[str, Any]:
    """*text* as a JSON object ({} when it is not one)."""
    try:
        body = json.loads(text)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
