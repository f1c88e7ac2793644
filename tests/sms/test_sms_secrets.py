"""A canary Auth Token must appear nowhere: logs, stdout/stderr, journal, scorecard.

The drill runs through the real runner, journal and scorecard against the local
Twilio, and touches every path that produces text: delivered (callbacks and
loopback), throttled, refused at create (wrong token → 20003), undelivered
(30007), unreachable, lost (stuck at ``sent``), and forged status callbacks.
"""

from __future__ import annotations

import base64
import logging
import secrets
import sqlite3
import traceback
from pathlib import Path

import pytest

from drills.core.journal import Journal
from drills.core.registry import load_registry
from drills.core.runner import Drill
from drills.reporting.scorecard import build_scorecard, write_json
from probes.sim.base import closed_port, free_port

CANARY = "CANARY" + secrets.token_hex(13)

REGISTRY = """\
defaults:
  slo: {{latency: 5s}}
municipalities:
  - code: "131211"
    name: 足立区
    channels:
      - id: sms
        kind: twilio
        account_sid: {sid}
        auth_token: env:TSG_CANARY_TOKEN
        from: "+815012345678"
        to: ["+819012345678", "+818012345678", "+817012345678"]
        api_base: {base}
        poll_interval: 50ms
        status_callback:
          {{public_url: "http://127.0.0.1:{port}", listen_port: {port}, fallback_poll: 100ms}}
        loopback: {{receiver: "+818012345678", receipt_grace: 200ms}}
  - code: "131016"
    name: 千代田区
    channels:
      - id: sms
        kind: twilio
        account_sid: {other_sid}
        auth_token: env:TSG_CANARY_TOKEN
        from: "+815012345679"
        to: ["+819012345679"]
        api_base: {base}
  - code: "132012"
    name: 八王子市
    channels:
      - id: sms
        kind: twilio
        account_sid: {sid}
        auth_token: env:TSG_CANARY_TOKEN
        from: "+815012345678"
        to: ["+819012345670"]
        api_base: http://127.0.0.1:{closed}
"""


def forms_of_the_secret(*sids: str) -> list[str]:
    """The canary as it could leak: plain, and inside a Basic auth header."""
    forms = [CANARY, CANARY[6:]]
    for sid in sids:
        forms.append(base64.b64encode(f"{sid}:{CANARY}".encode()).decode())
    return forms


async def test_canary_auth_token_never_leaks(
    sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, capfd
) -> None:
    caplog.set_level(logging.DEBUG)
    sid, _ = sim.add_account(token=CANARY)
    sim.add_number(sid, "+815012345678")
    port = free_port()
    sim.add_number(sid, "+818012345678", sms_url=f"http://127.0.0.1:{port}/twilio/inbound")
    other_sid, _ = sim.add_account()  # its token is not the canary: our canary gets 20003
    sim.add_number(other_sid, "+815012345679")
    monkeypatch.setenv("TSG_CANARY_TOKEN", CANARY)
    path = tmp_path / "registry.yaml"
    path.write_text(
        REGISTRY.format(
            sid=sid, other_sid=other_sid, base=sim.base_url, port=port, closed=closed_port()
        ),
        encoding="utf-8",
    )
    registry = load_registry(path)
    journal = Journal(tmp_path / "journal.db")

    sim.inject("429", retry_after=1)
    sim.inject("30007", to="+817012345678")
    async with Drill(registry, journal, live=True, scenario="canary") as drill:
        first = await drill.broadcast("参集訓練", timeout=3)
        sim.inject("stuck_sent", to="+819012345678")
        sim.tamper_signatures = True  # forged callbacks: refused, polling confirms
        second = await drill.broadcast("参集訓練 2", timeout=1.5)
        run_id = drill.run_id
    assert run_id is not None

    # The drill really went down every path (else this test would prove little).
    outcomes = {(d.municipality_name, d.recipient, d.outcome.value) for d in first.deliveries}
    assert ("足立区", "+819012345678", "delivered") in outcomes
    assert ("足立区", "+818012345678", "delivered") in outcomes
    assert ("足立区", "+817012345678", "rejected") in outcomes
    assert ("千代田区", "+819012345679", "rejected") in outcomes
    assert ("八王子市", "+819012345670", "lost") in outcomes
    assert sum(d.throttled for d in first.deliveries) == 1
    lost = [d for d in second.deliveries if d.recipient == "+819012345678"]
    assert lost[0].outcome.value == "lost" and "no carrier receipt" in lost[0].reason
    assert any(status == 403 for _, _, status in sim.callbacks)

    # Everything the run produced, as text.
    card_path = tmp_path / "scorecard.json"
    write_json(build_scorecard(journal, run_id, registry), card_path)
    journal.close()
    texts = {"scorecard": card_path.read_text(encoding="utf-8")}
    db = sqlite3.connect(tmp_path / "journal.db")
    texts["journal rows"] = "\n".join(
        repr(row)
        for table in ("runs", "deliveries", "events")
        for row in db.execute(f"SELECT * FROM {table}")  # fixed table names
    )
    db.close()
    texts["journal files"] = "\n".join(
        p.read_bytes().decode("latin-1") for p in tmp_path.glob("journal.db*")
    )
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    texts["logs"] = "\n".join(
        formatter.format(r)
        + ("".join(traceback.format_exception(*r.exc_info)) if r.exc_info else "")
        for r in caplog.records
    )
    out, err = capfd.readouterr()
    texts["stdout/stderr"] = out + err
    texts["reasons"] = "\n".join(
        d.reason + repr(d.extra) for d in first.deliveries + second.deliveries
    )
    texts["settings"] = "\n".join(
        repr(t.channel.settings) + t.channel.settings.model_dump_json() for t in registry.targets()
    )
    assert texts["journal rows"] and texts["logs"]  # something was captured

    for where, text in texts.items():
        for form in forms_of_the_secret(sid, other_sid):
            assert form not in text, f"auth token leaked into {where}"
