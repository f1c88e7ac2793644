"""``sim:`` SMS channels through the drill runner: each knob becomes the right outcome."""

from __future__ import annotations

from pathlib import Path

from drills.core.journal import Journal
from drills.core.registry import load_registry
from drills.core.runner import Drill
from drills.core.truth import compare

REGISTRY = """\
defaults:
  slo: {latency: 2s}
municipalities:
  - code: "131211"
    name: 足立区
    channels:
      - {id: sms, kind: twilio, to: ["+819011110001"], poll_interval: 50ms, sim: {latency: 300ms}}
      - id: sms-loopback
        kind: twilio
        to: ["+819011110009", "+818011110009"]
        status_callback: {}
        loopback: {receiver: "+818011110009"}
        sim: {latency: 200ms}
      - id: sms-unconfirmable                 # no callback, no polling: nothing can confirm
        kind: twilio
        to: ["+819011110010"]
        poll_interval: null
        sim: {latency: 100ms}
  - code: "132012"
    name: 八王子市
    channels:
      - {id: sms, kind: twilio, to: ["+819011110004"], sim: {outage: true}}
  - code: "134210"
    name: 小笠原村
    channels:
      - {id: sms, kind: twilio, to: ["+819011110006"], poll_interval: 50ms, sim: {loss: 1.0}}
  - code: "131016"
    name: 千代田区
    channels:
      - {id: sms, kind: twilio, to: ["+819011110002"], sim: {reject: auth}}
"""


async def test_sim_sms_channels_through_the_runner(tmp_path: Path) -> None:
    path = tmp_path / "registry.yaml"
    path.write_text(REGISTRY, encoding="utf-8")
    registry = load_registry(path)
    journal = Journal(tmp_path / "journal.db")
    async with Drill(registry, journal, scenario="sms", seed=3) as drill:
        step = await drill.broadcast("参集訓練", timeout=1.5)
        ledgers = [drill.sims.simulator_of(t).ledger for t in drill.targets()]
    got = {(d.municipality_code, d.channel_id, d.recipient): d for d in step.deliveries}
    # Every record agrees with what the local Twilio says happened.
    assert compare(step.deliveries, ledgers) == []
    ok = got[("131211", "sms", "+819011110001")]
    assert ok.outcome.value == "delivered" and 0.3 <= ok.latency_s <= 0.3 + ok.error_bound_s + 0.05
    assert ok.evidence.value == "receipt"  # a staff phone: the carrier's word, not a sighting
    assert ok.extra["segments"] == 1 and ok.extra["provider_id"].startswith("SM")
    loop = got[("131211", "sms-loopback", "+818011110009")]
    assert loop.outcome.value == "delivered" and loop.evidence.value == "seen"
    assert loop.extra["inbound_at_wall"] is not None and loop.extra["receipt_at_wall"] is not None
    assert got[("131211", "sms-loopback", "+819011110009")].evidence.value == "receipt"
    unconfirmable = got[("131211", "sms-unconfirmable", "+819011110010")]
    assert unconfirmable.outcome.value == "accepted" and unconfirmable.evidence.value == "accepted"
    assert got[("132012", "sms", "+819011110004")].outcome.value == "lost"  # unreachable
    lost = got[("134210", "sms", "+819011110006")]
    assert lost.outcome.value == "lost" and "no carrier receipt" in lost.reason
    rejected = got[("131016", "sms", "+819011110002")]
    assert rejected.outcome.value == "rejected" and "20003" in rejected.reason
    journal.close()
