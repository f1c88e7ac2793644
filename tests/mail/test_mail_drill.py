"""A registry mail channel through the real runner and journal, against real Dovecot."""

from __future__ import annotations

import pytest

from drills.core.delivery import Outcome
from drills.core.journal import Journal
from drills.core.registry import parse_registry
from drills.core.runner import Drill
from probes.base import Clock
from probes.sim.ledger import Fate
from tests.mail.support import maildir_ctime

pytestmark = pytest.mark.servers

REGISTRY = """\
municipalities:
  - code: "131211"
    name: 足立区
    slo: {{latency: 5s}}
    channels:
      - id: mail
        kind: mail
        smtp: {{host: 127.0.0.1, port: {smtp_port}, security: starttls, ca_file: "{ca}",
               user: sender, password: "env:TSG_TEST_SMTP_PW"}}
        from: drill-sender@example.lg.jp
        to: [drill@example.lg.jp, crowd@example.lg.jp]
        imap: {{host: 127.0.0.1, port: {imaps_port}, security: tls, ca_file: "{ca}",
               user: drill, password: "file:{imap_pw}"}}
"""


async def test_registry_mail_channel_through_the_runner(
    clean_front, dovecot, mail_ca, tmp_path, monkeypatch
):
    monkeypatch.setenv("TSG_TEST_SMTP_PW", "sendpass")
    (tmp_path / "imap.pw").write_text("drillpass\n")
    text = REGISTRY.format(
        smtp_port=clean_front.port,
        imaps_port=dovecot.imaps_port,
        ca=mail_ca.ca_file,
        imap_pw=tmp_path / "imap.pw",
    )
    registry = parse_registry(text, "registry.yaml", True)
    journal = Journal(tmp_path / "journal.db")
    async with Drill(registry, journal, scenario="mail", live=True) as drill:
        step = await drill.broadcast("メール訓練", timeout=2)
    by_recipient = {d.recipient: d for d in step.deliveries}
    # Two recipients, two deliveries; only drill@ lands in the observed mailbox.
    assert set(by_recipient) == {"drill@example.lg.jp", "crowd@example.lg.jp"}
    seen = by_recipient["drill@example.lg.jp"]
    assert seen.outcome is Outcome.DELIVERED, seen.reason
    assert 0 < seen.latency_s < 2 and seen.error_bound_s < 0.5
    assert seen.extra["insecure"] is False and seen.extra["tls_days_left"] > 300
    assert seen.extra["imap_tls_days_left"] > 300 and seen.extra["content_intact"] is True
    assert seen.extra["accepted_detail"].startswith("250 ")
    other = by_recipient["crowd@example.lg.jp"]
    # Accepted by the relay for a mailbox nobody observes: unconfirmed, never lost.
    assert other.outcome is Outcome.ACCEPTED, other.reason
    # Ground truth: Dovecot's stored file time for the observed recipient's message.
    stored = maildir_ctime(dovecot.maildir("drill"), seen.token)
    measured = Clock.monotonic_from_wall(seen.sent_at + seen.latency_s)
    assert measured >= stored - 0.002
    assert measured - stored <= seen.error_bound_s + 0.020
    # Secrets never reach the journal.
    raw = (tmp_path / "journal.db").read_bytes()
    assert b"sendpass" not in raw and b"drillpass" not in raw


SIM_REGISTRY = """\
municipalities:
  - code: "131211"
    name: 足立区
    slo: {latency: 5s}
    channels:
      - id: mail
        kind: mail
        to: [drill@adachi.example.lg.jp, kacho@adachi.example.lg.jp]
        sim: {latency: 100ms}
"""


async def test_several_to_on_the_simulator_only_the_observed_one_is_confirmed(tmp_path):
    registry = parse_registry(SIM_REGISTRY, "registry.yaml", True)
    async with Drill(registry, Journal(tmp_path / "j.db"), scenario="mail", seed=3) as drill:
        step = await drill.broadcast("複数宛先", timeout=2)
        ledger = drill.sims.simulator_of(drill.targets()[0]).ledger
        by_recipient = {d.recipient: d for d in step.deliveries}
        seen = by_recipient["drill@adachi.example.lg.jp"]
        other = by_recipient["kacho@adachi.example.lg.jp"]
        assert seen.outcome is Outcome.DELIVERED, seen.reason
        # Never lost: the other mailbox got it (ledger), nobody could look there.
        assert other.outcome is Outcome.ACCEPTED, other.reason
        entry = ledger.entry(seen.token, seen.recipient)
        assert entry.fate is Fate.VISIBLE
        measured = Clock.monotonic_from_wall(seen.sent_at + seen.latency_s)
        assert measured >= entry.visible_at - 0.002
        assert measured - entry.visible_at <= seen.error_bound_s + 0.020
        assert ledger.entry(other.token, other.recipient).received_at is not None
