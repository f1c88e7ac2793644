"""Fault matrix, mail rows: each fault injected at a real server, the drill run by the real runner.

Every case runs a one-channel drill through the operator API over a file journal
(:func:`tests.faults.mail_drill.drill_mail`) against the real Dovecot, the LMTP
front that hands mail to it, or a small faulty server (tests/servers/tcp_faults.py),
and checks (a) the record's outcome and reason and the verdict, against what the
server really did (its own counters and Maildir: the ground truth), (b) no
traceback, (c) the journal intact, one run, its status right
(:func:`~tests.faults.mail_drill.assert_sound`).

What the runner must say, by fault::

    refused, slow greeting, TLS (bad CA / expired / wrong host)  lost, a channel fault
    4xx (after its retries), 5xx, mailbox over quota            rejected, the server's text
    IMAP dropped while waiting, then back                      delivered, bound honest
    IMAP dropped while waiting, never back                     error: the drill could not look
"""

from __future__ import annotations

import datetime as dt
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from drills.core.delivery import Outcome
from drills.core.requirements import HarnessFault, RequirementMissed
from probes.base import Clock
from probes.sim.base import closed_port
from tests.faults.mail_drill import (
    TO,
    assert_sound,
    drill_mail,
    imap_of,
    mail_channel,
    servers,
)
from tests.faults.matrix import FaultCase
from tests.mail.support import CTIME_TICK_S, maildir_ctime, maildir_tokens
from tests.servers.lmtp_front import LmtpFront
from tests.servers.tcp_faults import CutProxy, SlowGreeter

__all__ = ["CASES"]


def _until(what: str, check: Callable[[], object], limit: float = 5.0) -> None:
    """Wait (polling) until *check()* is true; fail naming *what* after *limit* s."""
    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {limit:g} s"
        time.sleep(0.01)


def _observed(tmp: Path) -> dict[str, object]:
    return imap_of(tmp, servers().dovecot.imap_port)


# ---------------------------------------------------------------------- unreachable


def connection_refused(tmp: Path) -> None:
    port = closed_port()
    rec = drill_mail(tmp, mail_channel(tmp, smtp={"port": port}, imap=_observed(tmp)), timeout=3)
    d = rec.only
    assert d.outcome is Outcome.LOST, d.reason
    assert "cannot connect" in d.reason and "[Errno 111]" in d.reason, d.reason  # ECONNREFUSED
    assert d.accepted_at is None and d.latency_s is None
    assert isinstance(rec.verdict, RequirementMissed)
    assert_sound(rec)


def slow_greeting(tmp: Path) -> None:
    greeter = SlowGreeter(delay=3.0).start()
    try:
        smtp = {"port": greeter.port, "timeout": "0.5s"}
        rec = drill_mail(tmp, mail_channel(tmp, smtp=smtp, imap=_observed(tmp)), timeout=2)
    finally:
        greeter.stop()
    d = rec.only
    assert d.outcome is Outcome.LOST, d.reason
    assert "timed out" in d.reason, d.reason
    assert isinstance(rec.verdict, RequirementMissed)
    # Ground truth, the server's side: one client, who hung up after the 0.5 s timeout and
    # before the greeting was due; nobody was ever greeted.
    assert len(greeter.accepted) == 1 and len(greeter.gave_up) == 1 and not greeter.greeted
    waited = greeter.gave_up[0] - greeter.accepted[0]
    assert 0.5 - 0.01 <= waited < 3.0, waited
    assert d.extra["sent_mono"] <= greeter.accepted[0] <= d.extra["watched_until_mono"]
    assert_sound(rec)


def _tls_front(cert_pem_chain: bytes, key_pem: bytes, folder: Path) -> LmtpFront:
    chain, key = folder / "front-chain.pem", folder / "front-key.pem"
    chain.write_bytes(cert_pem_chain)
    key.write_bytes(key_pem)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(chain, key)
    return LmtpFront(lmtp_port=servers().dovecot.lmtp_port, server_context=context).start()


def _tls_case(folder: Path, *, expired: bool = False, host: str | None = None) -> None:
    """STARTTLS to a relay whose certificate is unknown, expired or for another host."""
    ca = servers().ca
    if expired or host:
        now = dt.datetime.now(dt.UTC)
        window = {
            "not_before": now - dt.timedelta(days=60),
            "not_after": now - dt.timedelta(days=1),
        }
        cert = ca.ca.issue_cert(*([host] if host else ["127.0.0.1"]), **(window if expired else {}))
        front = _tls_front(
            cert.private_key_and_cert_chain_pem.bytes(), cert.private_key_pem.bytes(), folder
        )
        ca_file = ca.ca_file  # the right CA: expiry or the name is the only fault
    else:
        front = servers().front
        ca_file = ca.other_ca_file
    before = front.accepted
    try:
        smtp = {"port": front.port, "security": "starttls", "ca_file": ca_file}
        rec = drill_mail(folder, mail_channel(folder, smtp=smtp, imap=_observed(folder)), timeout=3)
    finally:
        if front is not servers().front:
            front.stop()
    d = rec.only
    assert d.outcome is Outcome.LOST, d.reason
    assert "certificate verification failed" in d.reason, d.reason
    why = (
        "certificate has expired"
        if expired
        else "IP address mismatch"
        if host
        else "unable to get local issuer certificate"
    )
    assert why in d.reason, d.reason
    assert front.accepted == before  # nothing was sent: not in the clear, not at all
    assert isinstance(rec.verdict, RequirementMissed)
    assert_sound(rec)


# ---------------------------------------------------------------------- refused by the server


def smtp_4xx(tmp: Path) -> None:
    fault = servers().front.fail("rcpt", f"450 4.2.1 <{TO}>: Mailbox busy, try again later")
    smtp = {"port": servers().front.port, "retries": 1, "retry_delay": "50ms"}
    rec = drill_mail(tmp, mail_channel(tmp, smtp=smtp, imap=_observed(tmp)), timeout=3)
    d = rec.only
    assert d.outcome is Outcome.REJECTED, d.reason
    assert "SMTP 450" in d.reason and "Mailbox busy, try again later" in d.reason, d.reason
    # Ground truth: the server deferred it twice (the first try and its one retry) and
    # nothing reached the mailbox.
    assert len(fault.answered) == 2, fault.answered
    assert d.token not in maildir_tokens(servers().dovecot.maildir("drill"))
    assert isinstance(rec.verdict, RequirementMissed)
    assert_sound(rec)


def smtp_5xx(tmp: Path) -> None:
    # Dovecot's LMTP refuses an unknown user; the front relays its 550 after DATA.
    front = servers().front
    before = front.accepted
    channel = mail_channel(
        tmp, smtp={"port": front.port}, imap=_observed(tmp), to="nobody-here@example.lg.jp"
    )
    rec = drill_mail(tmp, channel, timeout=3)
    d = rec.only
    assert d.outcome is Outcome.REJECTED, d.reason
    assert "SMTP 550" in d.reason and "doesn't exist" in d.reason, d.reason
    assert front.accepted == before
    assert isinstance(rec.verdict, RequirementMissed)
    assert_sound(rec)


def over_quota(tmp: Path) -> None:
    # Real Dovecot, quota plugin: drill's mailbox holds 8 KB against a 4 KB limit. LMTP
    # refuses at RCPT with 552 5.2.2; the front relays it after DATA.
    found = servers()
    box = found.dovecot.maildir("drill")
    channel = mail_channel(
        tmp, smtp={"port": found.front.port}, imap=imap_of(tmp, found.dovecot.imap_port)
    )
    rec = drill_mail(tmp, channel, timeout=3)
    d = rec.only
    assert d.outcome is Outcome.REJECTED, d.reason
    assert "SMTP 552" in d.reason and "5.2.2" in d.reason and "Quota exceeded" in d.reason
    assert found.front.accepted == 0 and d.token not in maildir_tokens(box)
    # Dovecot's own quota account (Maildir++ ``maildirsize``): a 4096-byte limit, 8192 used.
    limit, used = (box / "maildirsize").read_text().splitlines()[:2]
    assert limit == "4096S" and int(used.split()[0]) > 4096, (limit, used)
    assert isinstance(rec.verdict, RequirementMissed)
    assert_sound(rec)


# ---------------------------------------------------------------------- the observer's side


def _imap_dropped(tmp: Path, *, comes_back: bool) -> None:
    """The observer's IMAP connection is cut while it waits; the message is stored meanwhile.

    The front holds the message at DATA until the cut, so it is stored while the
    observer is blind; its reconnects are reset until the port comes back (or for
    the rest of the step).
    """
    found = servers()
    proxy = CutProxy(found.dovecot.imap_port).start()
    hold = threading.Event()
    fault = found.front.fail("data", "", times=1, hold=hold)
    before = found.front.accepted
    marks: dict[str, float] = {}

    def cut_while_waiting() -> None:
        _until("the message reaching DATA", lambda: fault.answered)
        assert proxy.down() == 1  # the observer's one connection, cut; no new one let in
        marks["down"] = Clock.monotonic()
        hold.set()
        _until("the front's 250", lambda: found.front.accepted > before)
        # Stored while blind; the observer tries again and is turned away at least once.
        _until("a refused reconnect", lambda: proxy.refused)
        if comes_back:
            proxy.up()
            marks["up"] = Clock.monotonic()

    channel = mail_channel(tmp, smtp={"port": found.front.port}, imap=imap_of(tmp, proxy.port))
    try:
        rec = drill_mail(
            tmp, channel, timeout=3 if comes_back else 2, slo="3s", during=cut_while_waiting
        )
    finally:
        hold.set()
        proxy.stop()
    d = rec.only
    stored = maildir_ctime(found.dovecot.maildir("drill"), d.token)
    # Stored while blind: made after the cut, so its ctime is at most one tick of the
    # kernel's coarse clock before the mark (CTIME_TICK_S; 2 ms flaked at a 4 ms tick).
    assert stored is not None and stored >= marks["down"] - CTIME_TICK_S - 1e-6
    if comes_back:
        assert d.outcome is Outcome.DELIVERED, d.reason
        assert len(proxy.accepted) >= 2  # the observer logged in again
        # The reset before the greeting was noticed at once, not after the IMAP timeout
        # (2 s): the next attempt came one backoff step later.
        retry = proxy.accepted[1] - proxy.refused[-1]
        assert retry < 2.0, retry
        assert d.latency_s is not None and d.error_bound_s is not None
        seen = d.extra["sent_mono"] + d.latency_s
        # Seen only after the port came back, and the bound covers the blind gap:
        # the measured arrival is never before the stored time, nor after it by more
        # than the record's own error bound.
        assert seen >= marks["up"], (seen, marks)
        assert stored - 0.002 <= seen <= stored + d.error_bound_s + 0.020, (seen, stored, d)
        assert rec.verdict is None
    else:
        assert d.outcome is Outcome.ERROR, d.reason
        assert "the drill could not look" in d.reason and "IMAP" in d.reason, d.reason
        assert d.latency_s is None
        assert isinstance(rec.verdict, HarnessFault)
    assert_sound(rec)


def _case(case_id: str, run: Callable[[Path], None], *fixtures: str) -> FaultCase:
    return FaultCase(
        case_id,
        run,
        marks=(pytest.mark.servers,),
        fixtures=fixtures or ("mail_servers",),
    )


CASES = [
    _case("mail-connection-refused", connection_refused),
    _case("mail-slow-greeting-past-timeout", slow_greeting),
    _case("mail-smtp-4xx-deferred", smtp_4xx),
    _case("mail-smtp-5xx-rejected", smtp_5xx),
    _case("mail-tls-unknown-ca", lambda tmp: _tls_case(tmp)),
    _case("mail-tls-expired", lambda tmp: _tls_case(tmp, expired=True)),
    _case("mail-tls-wrong-host", lambda tmp: _tls_case(tmp, host="mail.other.example.jp")),
    _case("mail-imap-dropped-while-waiting", lambda tmp: _imap_dropped(tmp, comes_back=True)),
    _case("mail-imap-dropped-never-back", lambda tmp: _imap_dropped(tmp, comes_back=False)),
    _case("mail-over-quota-dovecot", over_quota, "quota_servers"),
]
