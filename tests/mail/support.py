"""Helpers for the mail tests: settings builders and a runner-shaped delivery."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probes.base import (
    Accepted,
    ChannelRejected,
    ChannelUnreachable,
    Clock,
    DrillMessage,
    ObserverFault,
    ProbeEnv,
    Sighting,
    Throttling,
)
from probes.mail.message import token_in_headers
from probes.mail.probe import MailProbe, MailSettings
from probes.settings import SecretRef
from tests.servers.dovecot import Dovecot
from tests.servers.lmtp_front import LmtpFront

USERS = {
    "drill": "drillpass",
    "crowd": "crowdpass",
    "clean": "cleanpass",
    "tls": "tlspass",
    "jp": "jppass",
    "bench": "benchpass",
}


def imap_settings(dovecot: Dovecot, user: str = "drill", **over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": dovecot.imap_port,
        "security": "plain",
        "user": user,
        "password": SecretRef.inline(USERS.get(user, "wrong")),
        "timeout": 10,
    }
    base.update(over)
    return base


def mail_settings(
    front: LmtpFront | None,
    dovecot: Dovecot,
    user: str = "drill",
    *,
    imap: dict[str, Any] | None = None,
    smtp: dict[str, Any] | None = None,
    **over: Any,
) -> MailSettings:
    raw: dict[str, Any] = {
        "smtp": {
            "host": "127.0.0.1",
            "port": front.port if front is not None else 25,
            "security": "plain",
            "user": "sender",
            "password": SecretRef.inline("sendpass"),
            "timeout": 10,
            "retries": 0,
            **(smtp or {}),
        },
        "from": "drill-sender@example.lg.jp",
        "to": f"{user}@example.lg.jp",
        "imap": imap if imap is not None else imap_settings(dovecot, user),
        **over,
    }
    if raw["imap"] == {}:
        del raw["imap"]
    return MailSettings.model_validate(raw)


@dataclass
class Result:
    """What the runner would record for one delivery (probes/base.py outcomes)."""

    # delivered | accepted | lost | rejected | error (late is the runner's SLO call)
    outcome: str
    sent_at: float
    accepted: Accepted | None = None
    sighting: Sighting | None = None
    error: BaseException | None = None
    reason: str = ""
    throttling: Throttling | None = None

    @property
    def latency(self) -> float:
        assert self.sighting is not None
        return self.sighting.at - self.sent_at


async def deliver(probe: MailProbe, message: DrillMessage, timeout: float = 10.0) -> Result:
    """Send and observe as the contract in probes/base.py describes; classify the outcome.

    Like drills.core.runner: a recipient no observer covers is ``accepted`` (unconfirmed);
    not seen while the observer could not look is ``error``; a send that timed out
    carries the probe's throttling record.
    """
    sent_at = Clock.monotonic()
    waiting = (
        asyncio.ensure_future(probe.observe(message)) if probe.observes(message.recipient) else None
    )

    async def stop_waiting() -> None:
        if waiting is not None:
            waiting.cancel()
            with contextlib.suppress(BaseException):
                await waiting

    try:
        accepted = await asyncio.wait_for(probe.send(message), timeout)
    except (ChannelRejected, ChannelUnreachable) as exc:
        await stop_waiting()
        # As drills.core.runner maps them: a refusal is rejected, an unreachable relay lost.
        outcome = "rejected" if isinstance(exc, ChannelRejected) else "lost"
        return Result(outcome, sent_at, error=exc, reason=exc.reason)
    except TimeoutError as exc:
        await stop_waiting()
        throttling = probe.throttling(message.token)
        if throttling is not None and throttling.count > 0:  # rate limited until the timeout
            reason = f"rate limited {throttling.count} times ({throttling.code})"
            return Result("rejected", sent_at, error=exc, reason=reason, throttling=throttling)
        return Result("lost", sent_at, error=exc, reason="send timed out")
    if waiting is None:
        return Result("accepted", sent_at, accepted=accepted, reason="not observed")
    remaining = timeout - (Clock.monotonic() - sent_at)
    try:
        sighting = await asyncio.wait_for(waiting, max(remaining, 0.0))
    except TimeoutError:
        trouble = probe.observer_trouble()
        if trouble is not None:
            return Result("error", sent_at, accepted=accepted, reason=trouble)
        return Result("lost", sent_at, accepted=accepted, reason="not seen")
    except ObserverFault as exc:
        return Result("error", sent_at, accepted=accepted, error=exc, reason=exc.reason)
    return Result("delivered", sent_at, accepted=accepted, sighting=sighting)


def assert_against_store(result: Result, stored: float | None) -> None:
    """Real-server ground truth: the measured arrival (sent + latency) against the store time.

    Never earlier than the file's time (2 ms for the wall → monotonic conversion),
    and no later than it by more than the sighting's own error bound + 20 ms.
    """
    assert stored is not None, "no stored file for this token"
    sighting = result.sighting
    assert sighting is not None
    measured = result.sent_at + result.latency
    assert measured >= stored - 0.002, (measured, stored)
    assert measured - stored <= sighting.error_bound_s + 0.020, (
        measured - stored,
        sighting.error_bound_s,
    )


@contextlib.asynccontextmanager
async def opened(*settings: MailSettings, env: ProbeEnv | None = None):
    env = env or ProbeEnv()
    probes = [MailProbe(f"ch{i}", s, env) for i, s in enumerate(settings)]
    try:
        await asyncio.gather(*(p.open() for p in probes))
        yield probes
    finally:
        for p in probes:
            await p.close()
        await env.aclose()


# A file's ctime is read from the kernel's coarse clock, which advances one tick at a
# time: it may stand up to one tick before the instant the file was made. The tick is
# the coarse clock's resolution, read from the kernel (CLOCK_REALTIME_COARSE is 5 in
# linux/time.h), not guessed: 4 ms at HZ=250.
CTIME_TICK_S = time.clock_getres(5)


def maildir_ctime(maildir: Path, token: str) -> float | None:
    """When Dovecot stored the message with *token* (ctime of its Maildir file), monotonic.

    Only ``new/`` counts: a move into ``cur/`` (by a read-write IMAP session) resets ctime.
    """
    for sub in ("new",):
        folder = maildir / sub
        if not folder.is_dir():
            continue
        for name in os.listdir(folder):
            path = folder / name
            if token.encode() in path.read_bytes():
                return Clock.monotonic_from_wall(path.stat().st_ctime)
    return None


def maildir_tokens(maildir: Path) -> set[str]:
    """Drill tokens of every message still in the Maildir."""
    tokens = set()
    for sub in ("new", "cur"):
        folder = maildir / sub
        if folder.is_dir():
            for name in os.listdir(folder):
                token = token_in_headers((folder / name).read_bytes())
                if token:
                    tokens.add(token)
    return tokens


async def deliver_all(probes: list[MailProbe], messages: list[DrillMessage]) -> list[Result]:
    """Deliver each message with its probe, all at once."""
    pairs = zip(probes, messages, strict=True)
    return list(await asyncio.gather(*(deliver(p, m) for p, m in pairs)))


async def open_fault(settings: MailSettings) -> ObserverFault:
    """Open a probe that must fail to observe; return the ObserverFault it raised."""
    env = ProbeEnv()
    probe = MailProbe("mail", settings, env)
    try:
        await probe.open()
    except ObserverFault as exc:
        return exc
    finally:
        await probe.close()
        await env.aclose()
    raise AssertionError("the probe opened without an observer fault")
