"""End to end as a new operator: ``registry init``, fill it in, ``registry check``, ``run --live``.

The starter for ``matrix,mail`` is filled for a real Synapse (a fresh room, the
drill bot sending, a second account observing) and the real Postfix → Dovecot
the mail tests start (STARTTLS submission, IMAPS observer: the starter's default
security modes, against the test CA). Secrets stay ``env:`` references, set in
the drill's environment only. Every delivery must be ``delivered``: seen at the
far end by the observer, not merely accepted.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml

from drills.cli import main
from drills.core.starter import PLACEHOLDER_RE
from tests.chat.farends import SynapseSetup
from tests.mail.conftest import (  # noqa: F401 — the mail fixtures, for this module
    dovecot,
    mail_ca,
    outage_ports,
    postfix,
)
from tests.mail.support import USERS

pytestmark = [pytest.mark.servers, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]

SCENARIO = '''\
"""init から作ったレジストリで実チャネルを訓練する"""
import pytest

pytestmark = [pytest.mark.scenario("初めての実チャネル訓練"), pytest.mark.deadline("15s")]


def test_matrix_and_mail(drill):
    drill.broadcast(
        "参集してください", channels=["matrix", "mail"]
    ).expect(reached="100%", within="15s")
'''


def test_a_starter_filled_for_real_servers_is_drilled_live(
    tmp_path: Path,
    synapse: SynapseSetup,
    postfix,  # noqa: F811
    dovecot,  # noqa: F811
    mail_ca,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    hs = synapse.hs
    room = hs.create_room(synapse.bot, invite=[synapse.watch])
    hs.join(synapse.watch, room)

    path = tmp_path / "registry.yaml"
    assert (
        main(["--lang", "en", "registry", "init", "--kinds", "matrix,mail", "-o", str(path)]) == 0
    )
    values = {
        "municipality.code": "131016",
        "municipality.name": "千代田区",
        "matrix.homeserver": hs.base_url,
        "matrix.sender.user": synapse.bot.user_id,
        "matrix.observer.user": synapse.watch.user_id,
        "matrix.room": room,
        "mail.smtp.host": "127.0.0.1",
        "mail.from": "drill-sender@example.lg.jp",
        "mail.to": "drill@example.lg.jp",
        "mail.imap.host": "127.0.0.1",
        "mail.imap.user": "drill",
    }
    text = path.read_text(encoding="utf-8")
    assert set(PLACEHOLDER_RE.findall(text)) == set(values)  # every blank, and only those
    text = PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], text)
    # What is not a blank but differs here: the servers' loopback ports and the test CA.
    # The security modes stay the starter's defaults (SMTP starttls, IMAP tls).
    data = yaml.safe_load(text)
    _, mail = data["municipalities"][0]["channels"]
    assert "security" not in mail["smtp"] and "security" not in mail["imap"]
    mail["smtp"] |= {"port": postfix.port, "ca_file": mail_ca.ca_file}
    mail["imap"] |= {"port": dovecot.imaps_port, "ca_file": mail_ca.ca_file}
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")

    secrets = {
        "MATRIX_SENDER_TOKEN": synapse.bot.token,
        "MATRIX_OBSERVER_TOKEN": synapse.watch.token,
        "MAIL_IMAP_PASSWORD": USERS["drill"],
    }
    assert main(["--lang", "en", "registry", "check", str(path)]) == 2  # variables not set
    assert "MATRIX_SENDER_TOKEN" in capsys.readouterr().err
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    assert main(["--lang", "en", "registry", "check", str(path)]) == 0, capsys.readouterr().err

    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "test_live.py").write_text(SCENARIO, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTEST_ADDOPTS", None)
    argv = [sys.executable, "-m", "drills.cli", "--lang", "en", "run", "s/test_live.py"]
    argv += ["--registry", "registry.yaml", "--journal", "j.sqlite", "--live"]
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    for token in secrets.values():
        assert token not in done.stdout + done.stderr

    rows = (
        sqlite3.connect(tmp_path / "j.sqlite")
        .execute("SELECT kind, channel_id, recipient, outcome, reason FROM deliveries")
        .fetchall()
    )
    assert sorted((kind, outcome) for kind, _, _, outcome, _ in rows) == [
        ("mail", "delivered"),
        ("matrix", "delivered"),
    ], rows
    # And the far ends hold them: the message in the room, the mail in the mailbox.
    tokens = dict(
        sqlite3.connect(tmp_path / "j.sqlite").execute("SELECT kind, token FROM deliveries")
    )
    messages = f"/_matrix/client/v3/rooms/{quote(room, safe='')}/messages?dir=b&limit=100"
    chunk = hs._call("GET", messages, synapse.bot)["chunk"]
    bodies = [e["content"].get("body", "") for e in chunk if e["type"] == "m.room.message"]
    assert sum(tokens["matrix"] in b for b in bodies) == 1
    maildir = dovecot.maildir("drill")
    assert any(
        tokens["mail"] in f.read_text(errors="replace") for f in maildir.rglob("*") if f.is_file()
    )
