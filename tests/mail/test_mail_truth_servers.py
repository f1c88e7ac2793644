"""Measurement truth for mail against real servers: shared mailboxes, STARTTLS, throttling.

Every case here once produced a record that said something other than what
happened (issue 12, items 12 and 16).
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from drills.core.delivery import Outcome
from drills.core.journal import Journal
from drills.core.registry import parse_registry
from drills.core.runner import Drill
from probes.base import Clock, DrillMessage, ProbeEnv
from probes.mail.probe import MailProbe
from probes.settings import SecretRef
from tests.mail.support import (
    assert_against_store,
    deliver,
    imap_settings,
    mail_settings,
    maildir_ctime,
    opened,
)
from tests.servers.lmtp_front import LmtpFront

pytestmark = pytest.mark.servers


# ------------------------------------------------------------ one mailbox, two channels


@pytest.mark.parametrize("wrong_first", [True, False], ids=["wrong-first", "right-first"])
async def test_two_channels_one_mailbox_a_wrong_password_fails_only_its_own_channel(
    fresh_dovecot, wrong_first
):
    front = LmtpFront(lmtp_port=fresh_dovecot.lmtp_port).start()
    right = mail_settings(front, fresh_dovecot, "drill")
    wrong = mail_settings(
        front,
        fresh_dovecot,
        "drill",
        imap=imap_settings(fresh_dovecot, "drill", password=SecretRef.inline("not-the-password")),
    )
    order = [wrong, right] if wrong_first else [right, wrong]
    try:
        results = await _open_and_deliver(order)
    finally:
        front.stop()
    by_settings = dict(zip(map(id, order), results, strict=True))
    ok, bad = by_settings[id(right)], by_settings[id(wrong)]
    assert ok.outcome == "delivered", ok
    assert_against_store(ok, maildir_ctime(fresh_dovecot.maildir("drill"), ok.token))
    assert bad.outcome == "error" and "login refused" in bad.reason, bad


@pytest.mark.parametrize("wrong_first", [True, False], ids=["wrong-first", "right-first"])
async def test_two_channels_one_mailbox_a_wrong_security_fails_only_its_own_channel(
    clean_front, dovecot, wrong_first
):
    right = mail_settings(clean_front, dovecot, "tls")
    # IMAPS (TLS from the first byte) on the plain IMAP port: a configuration mistake.
    wrong = mail_settings(
        clean_front, dovecot, "tls", imap=imap_settings(dovecot, "tls", security="tls")
    )
    order = [wrong, right] if wrong_first else [right, wrong]
    results = await _open_and_deliver(order)
    by_settings = dict(zip(map(id, order), results, strict=True))
    ok, bad = by_settings[id(right)], by_settings[id(wrong)]
    assert ok.outcome == "delivered", ok
    assert_against_store(ok, maildir_ctime(dovecot.maildir("tls"), ok.token))
    assert bad.outcome == "error" and "TLS" in bad.reason, bad


async def _open_and_deliver(settings_list):
    """Open every channel at once on one env (as the runner does), then deliver one each."""
    env = ProbeEnv()
    probes = [MailProbe(f"ch{i}", s, env) for i, s in enumerate(settings_list)]
    results = []
    try:
        opened_ = await asyncio.gather(*(p.open() for p in probes), return_exceptions=True)
        for probe, failure in zip(probes, opened_, strict=True):
            if isinstance(failure, BaseException):  # the runner records it as the channel's
                results.append(_Failed("error", getattr(failure, "reason", repr(failure))))
                continue
            message = DrillMessage.new(f"同じメールボックス {probe.channel_id}")
            result = await deliver(probe, message, timeout=5)
            result.token = message.token
            results.append(result)
    finally:
        for probe in probes:
            await probe.close()
        await env.aclose()
    return results


class _Failed:
    def __init__(self, outcome: str, reason: str) -> None:
        self.outcome, self.reason, self.token = outcome, reason, None

    def __repr__(self) -> str:
        return f"_Failed({self.outcome!r}, {self.reason!r})"


# ------------------------------------------------------------ STARTTLS not offered


REGISTRY = """\
municipalities:
  - code: "131211"
    name: 足立区
    slo: {{latency: 5s}}
    channels:
      - id: mail
        kind: mail
        smtp: {{host: 127.0.0.1, port: {smtp_port}, security: starttls,
               user: sender, password: "env:TSG_TEST_SMTP_PW"}}
        from: drill-sender@example.lg.jp
        to: drill@example.lg.jp
        imap: {{host: 127.0.0.1, port: {imap_port}, security: plain,
               user: drill, password: "env:TSG_TEST_IMAP_PW"}}
"""


async def test_a_relay_without_starttls_is_a_configuration_rejection_not_lost(
    dovecot, tmp_path, monkeypatch
):
    monkeypatch.setenv("TSG_TEST_SMTP_PW", "sendpass")
    monkeypatch.setenv("TSG_TEST_IMAP_PW", "drillpass")
    plain_front = LmtpFront(lmtp_port=dovecot.lmtp_port).start()  # no certificate: no STARTTLS
    try:
        text = REGISTRY.format(smtp_port=plain_front.port, imap_port=dovecot.imap_port)
        registry = parse_registry(text, "registry.yaml", True)
        async with Drill(registry, Journal(tmp_path / "j.db"), scenario="tls", live=True) as drill:
            step = await drill.broadcast("STARTTLS なし", timeout=3)
    finally:
        plain_front.stop()
    [delivery] = step.deliveries
    assert delivery.outcome is Outcome.REJECTED, delivery.reason
    assert delivery.reason.startswith("設定誤り")
    assert "configuration error" in delivery.reason and "does not offer STARTTLS" in delivery.reason
    assert plain_front.accepted == 0  # nothing went out in the clear


# ------------------------------------------------------------ throttling


async def test_a_send_throttled_until_the_timeout_says_how_often_and_why(clean_front, dovecot):
    fault = clean_front.fail("mail", "451 4.7.1 Rate limit exceeded, try again later")
    settings = mail_settings(clean_front, dovecot, smtp={"retries": 10, "retry_delay": 0.05})
    async with opened(settings) as [probe]:
        message = DrillMessage.new("制限中")
        result = await deliver(probe, message, timeout=1.0)
        answered = len(fault.answered)
    assert result.outcome == "rejected", result
    # One count per refusal the relay gave: the record agrees with the relay's own count.
    assert result.throttling.count == answered >= 3
    assert result.throttling.code == "451 4.7.1"
    assert probe.throttling(message.token) == result.throttling


async def test_a_retry_accepted_just_before_the_timeout_keeps_its_acceptance_time(
    clean_front, dovecot
):
    clean_front.fail("mail", "451 4.7.1 Rate limit exceeded, try again later", times=2)
    release = threading.Event()
    quit_fault = clean_front.fail("quit", "", hold=release)  # QUIT hangs until released
    settings = mail_settings(clean_front, dovecot, smtp={"retries": 5, "retry_delay": 0.05})
    try:
        async with opened(settings) as [probe]:
            message = DrillMessage.new("滑り込み")
            sent = Clock.monotonic()
            # The relay answers 250, then does not answer QUIT.
            accepted = await asyncio.wait_for(probe.send(message), timeout=5)
            returned = Clock.monotonic()
            took = clean_front.accepted_at[-1]
            # The QUIT of the accepted session reaches the relay (and hangs there) ...
            await _until(lambda: any(q > took for q in quit_fault.answered))
            quit_at = min(q for q in quit_fault.answered if q > took)
            release.set()
    finally:
        release.set()
    assert accepted.throttled == 2
    assert probe.throttling(message.token).count == 2
    # ... only after the acceptance time was taken: it is the 250's, not QUIT's.
    assert sent < took <= accepted.at <= returned
    assert accepted.at < quit_at


# ------------------------------------------------------------ observer trouble


async def test_observer_trouble_while_the_imap_server_is_down(clean_front, outage_dovecot):
    front = LmtpFront(lmtp_port=outage_dovecot.lmtp_port).start()
    imap = imap_settings(outage_dovecot, "drill", timeout=2)
    try:
        async with opened(mail_settings(front, outage_dovecot, imap=imap)) as [probe]:
            first = await deliver(probe, DrillMessage.new("正常"))
            assert probe.observer_trouble() is None
            outage_dovecot.stop()
            await _until(lambda: probe.observer_trouble() is not None)
            assert "IMAP" in probe.observer_trouble()
            outage_dovecot.start()
            await _until(lambda: probe.observer_trouble() is None)
            second = await deliver(probe, DrillMessage.new("復旧後"))
    finally:
        front.stop()
    assert first.outcome == second.outcome == "delivered"


async def _until(condition, limit: float = 10.0) -> None:
    """Wait for a state change the observer reports (a deadline, not a timing guess)."""
    deadline = Clock.monotonic() + limit
    while not condition():
        assert Clock.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_every_imap_bound_covers_the_store_time_for_many_messages(clean_front, dovecot):
    # Ground truth from Dovecot itself: the Maildir file's ctime, for 30 messages at once.
    settings = [mail_settings(clean_front, dovecot, "crowd") for _ in range(30)]
    async with opened(*settings) as probes:
        messages = [DrillMessage.new(f"境界 {i}") for i in range(30)]
        results = await asyncio.gather(
            *(deliver(p, m) for p, m in zip(probes, messages, strict=True))
        )
    worst = 0.0
    for message, result in zip(messages, results, strict=True):
        assert result.outcome == "delivered", result
        stored = maildir_ctime(dovecot.maildir("crowd"), message.token)
        assert_against_store(result, stored)
        worst = max(worst, result.sent_at + result.latency - stored - result.sighting.error_bound_s)
    assert worst <= 0.0 + 0.020
