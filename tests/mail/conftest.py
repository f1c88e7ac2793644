"""Fixtures for the mail channel: a test CA, real Dovecot, the LMTP front, real Postfix."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from probes.sim.base import free_port
from tests.mail.support import USERS
from tests.servers.dovecot import Dovecot
from tests.servers.lmtp_front import LmtpFront
from tests.servers.postfix import Postfix


@dataclass
class MailCA:
    ca: trustme.CA
    dir: Path

    @property
    def ca_file(self) -> str:
        return str(self.dir / "ca.pem")

    @property
    def cert_file(self) -> Path:
        return self.dir / "server-chain.pem"

    @property
    def key_file(self) -> Path:
        return self.dir / "server-key.pem"

    @property
    def other_ca_file(self) -> str:
        return str(self.dir / "other-ca.pem")

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx


@pytest.fixture(scope="session")
def mail_ca(tmp_path_factory: pytest.TempPathFactory) -> MailCA:
    folder = tmp_path_factory.mktemp("mail-ca")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_and_cert_chain_pem.write_to_path(str(folder / "server-chain.pem"))
    cert.private_key_pem.write_to_path(str(folder / "server-key.pem"))
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    trustme.CA().cert_pem.write_to_path(str(folder / "other-ca.pem"))
    return MailCA(ca, folder)


@pytest.fixture(scope="session")
def dovecot(mail_ca: MailCA):
    server = Dovecot(
        users=dict(USERS),
        cert_file=mail_ca.cert_file,
        key_file=mail_ca.key_file,
    )
    server.start()
    yield server
    server.remove()


@pytest.fixture(scope="session")
def front(dovecot: Dovecot, mail_ca: MailCA):
    server = LmtpFront(lmtp_port=dovecot.lmtp_port, server_context=mail_ca.server_context())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def clean_front(front: LmtpFront):
    front.clear_faults()
    yield front
    front.clear_faults()


@pytest.fixture
def fresh_dovecot():
    """A Dovecot of its own for wrong-password tests: Dovecot penalises repeated auth
    failures from one IP by up to 15 s (anvil), which would slow every later login."""
    server = Dovecot(users=dict(USERS))
    server.start()
    yield server
    server.remove()


@pytest.fixture(scope="session")
def outage_ports() -> dict[str, int]:
    """Fixed ports for a Dovecot that tests stop and start (Postfix routes to it)."""
    return {"imap_port": free_port(), "lmtp_port": free_port()}


@pytest.fixture
def outage_dovecot(outage_ports: dict[str, int]):
    """A Dovecot of its own, for tests that take it away mid-drill."""
    server = Dovecot(users=dict(USERS), **outage_ports)
    server.start()
    yield server
    server.remove()


@pytest.fixture(scope="session")
def postfix(dovecot: Dovecot, outage_ports: dict[str, int], mail_ca: MailCA):
    """Real Postfix as the MTA: example.lg.jp → session Dovecot, outage.test → outage Dovecot."""
    server = Postfix(
        lmtp_port=dovecot.lmtp_port,
        routes={"outage.test": outage_ports["lmtp_port"]},
        cert_file=mail_ca.cert_file,
        key_file=mail_ca.key_file,
    )
    server.start()
    yield server
    server.stop()
