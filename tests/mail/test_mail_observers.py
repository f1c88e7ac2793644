"""Observers: one IMAP connection for many probes, strategies, clean-up, Maildir."""

from __future__ import annotations

import asyncio

import pytest

from probes.base import DrillMessage, ProbeEnv
from probes.mail.message import token_in_headers
from tests.mail.support import (
    assert_against_store,
    deliver,
    deliver_all,
    imap_settings,
    mail_settings,
    maildir_ctime,
    maildir_tokens,
    open_fault,
    opened,
)
from tests.mail.test_mail_delivery import assert_seen_within_bound, fetch_raw

pytestmark = pytest.mark.servers


async def test_fifty_concurrent_probes_share_one_imap_connection_and_all_match(
    clean_front, dovecot
):
    logins_before = dovecot.logins("crowd")
    env = ProbeEnv()
    settings = [mail_settings(clean_front, dovecot, "crowd") for _ in range(50)]
    async with opened(*settings, env=env) as probes:
        messages = [DrillMessage.new(f"一斉送信 {i}") for i in range(50)]
        results = await deliver_all(probes, messages)
        observers = env.shared["mail.imap"]
        assert len(observers) == 1
        observer = next(iter(observers._observers.values()))
        assert observer.logins == 1
    assert [r.outcome for r in results] == ["delivered"] * 50
    # Every sighting points at the message that carries that probe's token.
    uids = [r.sighting.extra["uid"] for r in results]
    assert len(set(uids)) == 50
    for message, result in zip(messages[:10], results[:10], strict=True):
        raw = await fetch_raw(dovecot, "crowd", result.sighting.extra["uid"])
        assert token_in_headers(raw) == message.token
    assert all(r.sighting.extra["content_intact"] for r in results)
    assert dovecot.logins("crowd") - logins_before == 1 + 10  # the observer + our 10 checks


@pytest.mark.parametrize("strategy", ["idle", "poll", "auto"])
async def test_each_strategy_reports_a_bound_that_covers_its_real_error(
    clean_front, dovecot, strategy
):
    imap = imap_settings(dovecot, "drill", strategy=strategy, poll_interval=0.3)
    async with opened(mail_settings(clean_front, dovecot, imap=imap)) as [probe]:
        message = DrillMessage.new(f"strategy {strategy}")
        result = await deliver(probe, message)
    assert result.outcome == "delivered", result
    assert result.sighting.extra["observer"].startswith("imap-")
    assert_seen_within_bound(result, maildir_ctime(dovecot.maildir("drill"), message.token))


async def test_cleanup_delete_removes_confirmed_drill_mail(clean_front, dovecot):
    settings = [mail_settings(clean_front, dovecot, "clean", cleanup="delete") for _ in range(5)]
    async with opened(*settings) as probes:
        messages = [DrillMessage.new(f"片付け {i}") for i in range(5)]
        results = await deliver_all(probes, messages)
    assert [r.outcome for r in results] == ["delivered"] * 5
    left = maildir_tokens(dovecot.maildir("clean"))
    assert not {m.token for m in messages} & left


async def test_late_probe_still_finds_a_message_that_arrived_before_it_waited(clean_front, dovecot):
    # The observer records every token it sees; observe() looks there first.
    async with opened(mail_settings(clean_front, dovecot)) as [probe]:
        message = DrillMessage.new("先に届いた")
        await probe.send(message)
        sighting = await asyncio.wait_for(probe.observe(message), 5)
    assert sighting.extra["uid"] > 0


async def test_maildir_observer_reports_the_store_time(clean_front, dovecot):
    settings = mail_settings(clean_front, dovecot, "drill", imap={}, maildir=str(dovecot.maildir()))
    async with opened(settings) as [probe]:
        message = DrillMessage.new("Maildir で確認")
        result = await deliver(probe, message)
        lag = probe.observer.ctime_lag
    assert result.outcome == "delivered", result
    assert_against_store(result, maildir_ctime(dovecot.maildir(), message.token))
    # The file system's own time: a bound of its clock's lag (+1 ms conversion), not a poll
    # interval (the observer scans every 50 ms).
    assert result.sighting.error_bound_s <= lag + 0.001 + 1e-9
    assert lag < 0.05
    assert result.sighting.extra["observer"] == "maildir"
    assert result.sighting.extra["content_intact"] is True
    assert result.sighting.extra["observed_lag_s"] >= 0


async def test_maildir_observer_shares_one_scan_for_many_probes(clean_front, dovecot):
    env = ProbeEnv()
    path = str(dovecot.maildir("crowd"))
    settings = [
        mail_settings(clean_front, dovecot, "crowd", imap={}, maildir=path) for _ in range(20)
    ]
    async with opened(*settings, env=env) as probes:
        assert len(env.shared["mail.maildir"]) == 1
        messages = [DrillMessage.new(f"maildir {i}") for i in range(20)]
        results = await deliver_all(probes, messages)
    assert [r.outcome for r in results] == ["delivered"] * 20
    assert len({r.sighting.extra["file"] for r in results}) == 20


async def test_missing_maildir_is_an_observer_error(clean_front, dovecot, tmp_path):
    settings = mail_settings(clean_front, dovecot, imap={}, maildir=str(tmp_path / "nope"))
    fault = await open_fault(settings)
    assert fault.code == "maildir" and "not a Maildir" in fault.reason


async def test_observer_reconnects_after_the_imap_server_restarts(clean_front, outage_dovecot):
    # IMAP goes away and comes back: the observer logs in again and keeps matching.
    from tests.servers.lmtp_front import LmtpFront

    front = LmtpFront(lmtp_port=outage_dovecot.lmtp_port).start()
    imap = imap_settings(outage_dovecot, "drill", timeout=2)
    try:
        async with opened(mail_settings(front, outage_dovecot, imap=imap)) as [probe]:
            first = await deliver(probe, DrillMessage.new("before"))
            outage_dovecot.stop()
            outage_dovecot.start()
            second = await deliver(probe, DrillMessage.new("after"))
            assert probe.observer.logins == 2
    finally:
        front.stop()
    assert first.outcome == second.outcome == "delivered"
