"""Preflight of a webhook channel: what can be checked without posting.

An incoming webhook cannot be tried without posting to it, so the check looks
at what the channel offers besides: the ``health_url`` (GET, no credentials)
and the observer's read-back URL (GET with the observer's token, read-only:
a long-poll read-back is asked for nothing new and not to wait). Each gets
DNS, connect and TLS phases and its certificate, then a ``read`` phase: one GET
over that same connection (:func:`probes.endpoint.check_get`). A redirect is
followed in a phase ``*.redirect`` by the probe's own HTTP client, as a drill's
client would follow it. Without an observer the check says so (fact
``observer_configured`` 0, the rule for every kind: :mod:`probes.preflight`); a
channel with neither is reported *skipped*: nothing about it can be known
without sending.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from probes.base import ChannelRejected, ObserverIsSender
from probes.endpoint import check_get
from probes.preflight import PhaseFailure, PhaseTimer, PreflightReport, Reason

if TYPE_CHECKING:
    from probes.chat.webhook import WebhookProbe

__all__ = ["preflight_webhook"]

NOTHING_TO_CHECK = Reason(
    "health_url も observer もありません: 送らずに確かめられることがありません",
    "neither health_url nor observer is configured: nothing can be checked without sending",
)

# Far past any cursor: a long-poll read-back answers at once with nothing new.
_NOTHING_NEW = str(2**31 - 1)


def _redirect_or(judge: Callable[[int], None]) -> Callable[[int], None]:
    """*judge*, except that a redirect (3xx) is left to be followed."""

    def judged(status: int) -> None:
        if not 300 <= status < 400:
            judge(status)

    return judged


def _health(status: int) -> None:
    if not 200 <= status < 300:
        raise ChannelRejected(
            f"ヘルス URL が HTTP {status} を返しました / the health URL answered HTTP {status}",
            code=str(status),
        )


def _read_back(status: int) -> None:
    if status in (401, 403):
        raise PhaseFailure(
            f"観測用アカウントのログインが拒否されました / observer login refused: HTTP {status}",
            phase="auth",
            code=str(status),
        )
    if not 200 <= status < 300:
        raise ChannelRejected(
            f"読み返しが HTTP {status} を返しました / the read-back answered HTTP {status}",
            code=str(status),
        )


async def preflight_webhook(probe: WebhookProbe) -> PreflightReport:
    """Check a webhook channel's health URL and read-back; never posts."""
    s = probe.settings
    timeout = s.request_timeout
    with PhaseTimer(probe.channel_id, "webhook") as timer:
        if s.health_url is not None:
            url = s.health_url
            status = await check_get(
                timer, "health", url, timeout=timeout, judge=_redirect_or(_health)
            )
            if 300 <= status < 400:
                with timer.phase("health.redirect", "read") as note:
                    status, _text, _headers, _at = await probe.fetch("GET", url)
                    note["detail"] = f"HTTP {status}"
                    _health(status)
        obs = s.observer
        timer.fact("observer_configured", 0.0 if obs is None else 1.0)
        if obs is None:
            if s.health_url is None:  # nothing at all can be known without posting
                return replace(timer.report(), skipped=NOTHING_TO_CHECK)
            return timer.report()
        token = obs.auth.reveal() if obs.auth is not None else None
        if token is not None and s.auth is not None and token == s.auth.reveal():
            same = ObserverIsSender.of(probe.channel_id, "auth")
            timer.fail("observer.auth", "auth", Reason.parse(same.reason), same.code)
        params = {"after": _NOTHING_NEW, "wait": "0"} if obs.mode == "longpoll" else {}
        status = await check_get(
            timer,
            "observer",
            obs.url,
            timeout=timeout,
            judge=_redirect_or(_read_back),
            headers={"Authorization": f"Bearer {token}"} if token else {},
            params=params,
        )
        if 300 <= status < 400:
            with timer.phase("observer.redirect", "read") as note:
                status, _text, _headers, _at = await probe.fetch(
                    "GET", obs.url, token=token, params=params
                )
                note["detail"] = f"HTTP {status}"
                _read_back(status)
    return timer.report()
