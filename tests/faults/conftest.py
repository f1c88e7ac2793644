"""Fixtures of the fault matrix: the mail channel's real servers, shared with tests/mail.

The mail fixtures (test CA, real Dovecot, the LMTP front, real Postfix) are
tests/mail/conftest.py's own, re-exported here so a case can name them in
``FaultCase.fixtures``. ``mail_servers`` and ``quota_servers`` hand the started
servers to the case (:func:`tests.faults.mail_drill.servers`).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.mail_drill import MailServers, using
from tests.mail.conftest import (
    MailCA,
    clean_front,
    dovecot,
    fresh_dovecot,
    front,
    mail_ca,
    outage_dovecot,
    outage_ports,
    postfix,
)
from tests.mail.support import USERS
from tests.servers.dovecot import Dovecot
from tests.servers.lmtp_front import LmtpFront

__all__ = [
    "clean_front",
    "dovecot",
    "fresh_dovecot",
    "front",
    "mail_ca",
    "mail_servers",
    "outage_dovecot",
    "outage_ports",
    "postfix",
    "quota_servers",
]

QUOTA = "4K"  # the full mailbox's limit; fill() puts 8 KB in it


@pytest.fixture
def mail_servers(
    clean_front: LmtpFront, dovecot: Dovecot, mail_ca: MailCA
) -> Iterator[MailServers]:
    """The session's Dovecot and LMTP front (faults cleared) and the test CA, for a case."""
    with using(MailServers(front=clean_front, dovecot=dovecot, ca=mail_ca)) as found:
        yield found


@pytest.fixture
def quota_servers(mail_ca: MailCA) -> Iterator[MailServers]:
    """A Dovecot of its own with the quota plugin, ``drill``'s mailbox already over it,
    and an LMTP front for it (starting both takes some 30 ms)."""
    server = Dovecot(users=dict(USERS), quota=QUOTA)
    server.fill("drill", 8 * 1024)
    server.start()
    relay = LmtpFront(lmtp_port=server.lmtp_port).start()
    try:
        with using(MailServers(front=relay, dovecot=server, ca=mail_ca)) as found:
            yield found
    finally:
        relay.stop()
        server.remove()
