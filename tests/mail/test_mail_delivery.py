"""The mail channel end to end against real Dovecot (IMAP + LMTP) behind the SMTP front."""

from __future__ import annotations

import os

from probes.base import Clock, DrillMessage
from tests.mail.support import deliver, mail_settings, opened


def maildir_ctime(maildir, token: str) -> float | None:
    """When Dovecot stored the message with *token* (ctime of its Maildir file), monotonic."""
    for sub in ("new", "cur"):
        folder = maildir / sub
        if not folder.is_dir():
            continue
        for name in os.listdir(folder):
            path = folder / name
            if token.encode() in path.read_bytes():
                return Clock.monotonic_from_wall(path.stat().st_ctime)
    return None


async def test_delivered_with_plausible_latency(clean_front, dovecot):
    settings = mail_settings(clean_front, dovecot)
    async with opened(settings) as [probe]:
        message = DrillMessage.new("参集訓練です。受信を確認してください。", subject="安否確認")
        result = await deliver(probe, message)
    assert result.outcome == "delivered", result
    print(result.latency, result.sighting)
    assert result.accepted is not None and result.accepted.detail.startswith("250")
    stored = maildir_ctime(dovecot.maildir("drill"), message.token)
    assert stored is not None
    sighting = result.sighting
    # Seen after it was stored, and no later than the bound the observer reported.
    assert stored <= sighting.at + 0.01
    assert sighting.at - stored <= sighting.error_bound_s + 0.01
    assert 0 < result.latency < 5
    assert sighting.error_bound_s < 0.5
    assert sighting.extra["insecure"] is True  # plain SMTP to the front
    assert sighting.extra["content_intact"] is True
