"""Journals written by hand, with fixed times, for the scorecard tests.

The "sample" journal is the README's worked example (section "Scoring model"):
two drills of the same scenario a week apart, plus an older drill of another
scenario, so there is something that got worse, something better, a
municipality overdue and one never drilled.

The "surge" journal (:func:`fill_surge_sample`) is one surge drill of two
channels, one breaking and one holding.

The registry gives SLOs, names and drill intervals. Its channels are
``kind: webhook`` simulators because only that kind exists on every branch;
the deliveries carry the kinds a real drill records (webhook, mail, twilio).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from drills.core.delivery import Delivery, Evidence, Outcome
from drills.core.events import (
    FallbackAttempt,
    FallbackEvent,
    FallbackMunicipality,
    RollCallEvent,
    RollCallParticipant,
)
from drills.core.journal import Journal
from drills.core.registry import Registry
from drills.reporting.scorecard import TOKYO
from tests.surge.samples import record_sample_surge

SCENARIO = "首都直下地震 初動参集"
PREV_START = datetime(2026, 11, 20, 19, 15, tzinfo=TOKYO).timestamp()
RUN_START = datetime(2026, 11, 27, 19, 15, tzinfo=TOKYO).timestamp()
OLD_START = datetime(2026, 10, 18, 19, 15, tzinfo=TOKYO).timestamp()

REGISTRY_YAML = """
defaults:
  slo: {latency: 3s, reachability: 0.95}
municipalities:
  - code: "131211"
    name: 足立区
    name_en: Adachi City
    drill_interval: 30d
    channels:
      - {id: chat, kind: webhook, label: 庁内チャット, sim: {latency: 250ms}}
      - {id: mail, kind: webhook, label: 職員メール, sim: {latency: 400ms}}
      - {id: sms, kind: webhook, label: 緊急SMS, sim: {latency: 800ms}}
  - code: "131016"
    name: 千代田区
    name_en: Chiyoda City
    channels:
      - {id: chat, kind: webhook, sim: {latency: 200ms}}
      - {id: mail, kind: webhook, sim: {latency: 300ms}}
  - code: "134210"
    name: 小笠原村
    name_en: Ogasawara Village
    channels:
      - {id: chat, kind: webhook, sim: {reject: auth}}
      - {id: mail, kind: webhook, slo: {latency: 10s, reachability: 0.8}, sim: {latency: 1s}}
  - code: "132012"
    name: 八王子市
    name_en: Hachioji City
    drill_interval: 30d
    channels:
      - {id: chat, kind: webhook, sim: {latency: 300ms}}
  - code: "133086"
    name: 奥多摩町
    name_en: Okutama Town
    channels:
      - {id: chat, kind: webhook, sim: {latency: 2s}}
"""

# Channels on the local chat simulator, for real drills in the tests.
SIM_REGISTRY = """
defaults:
  slo: {latency: 2s, reachability: 0.9}
municipalities:
  - code: "131211"
    name: 足立区
    channels:
      - {id: chat, kind: webhook, sim: {latency: 20ms}}
      - {id: backup, kind: webhook, sim: {latency: 30ms}}
  - code: "131016"
    name: 千代田区
    channels:
      - {id: chat, kind: webhook, sim: {latency: 20ms}}
  - code: "134210"
    name: 小笠原村
    channels:
      - {id: chat, kind: webhook, sim: {reject: auth}}
"""


@dataclass
class Ch:
    """What one channel did in a hand-written run."""

    code: str
    name: str
    cid: str
    kind: str
    delivered: list[float] = field(default_factory=list)  # latencies
    late: list[float] = field(default_factory=list)
    accepted: int = 0
    lost: int = 0
    rejected: int = 0
    error: int = 0
    slo: float = 3.0
    receipt: list[float] = field(default_factory=list)  # delivered, known by carrier receipt only
    drill_outage: int = 0  # sent into the drill's own outage


def write_run(
    journal: Journal,
    run_id: str,
    started: float,
    channels: list[Ch],
    scenario: str = SCENARIO,
    events: list[tuple[str, dict[str, Any]]] = (),
    duration: float = 8.0,
) -> str:
    """Record a run with these channels' deliveries; start and end at fixed times."""
    journal.begin_run(scenario=scenario, run_id=run_id)
    n = 0
    for ch in channels:
        outcomes: list[tuple[Outcome, float | None, str]] = (
            [(Outcome.DELIVERED, x, "") for x in ch.delivered]
            + [(Outcome.DELIVERED, x, "受信報告 / carrier receipt") for x in ch.receipt]
            + [(Outcome.LATE, x, "SLO超過 / over SLO") for x in ch.late]
            + [(Outcome.ACCEPTED, None, "受付のみ / accepted only")] * ch.accepted
            + [(Outcome.LOST, None, "不達 / lost")] * ch.lost
            + [(Outcome.REJECTED, None, "認証エラー / invalid_auth")] * ch.rejected
            + [(Outcome.ERROR, None, "ハーネスの障害 / harness fault")] * ch.error
            + [(Outcome.DRILL_OUTAGE, None, "訓練による停止 / drill outage")] * ch.drill_outage
        )
        for outcome, latency, reason in outcomes:
            n += 1
            sent = started + 1.0 + n * 0.01
            journal.record(
                Delivery(
                    run_id=run_id,
                    step="初動参集",
                    municipality_code=ch.code,
                    municipality_name=ch.name,
                    channel_id=ch.cid,
                    kind=ch.kind,
                    token=f"TSG-{n:012d}",
                    outcome=outcome,
                    reason=reason,
                    sent_at=sent,
                    accepted_at=sent + 0.05 if outcome is not Outcome.REJECTED else None,
                    delivered_at=None if latency is None else sent + latency,
                    latency_s=latency,
                    slo_latency_s=ch.slo,
                    scenario=scenario,
                    evidence=Evidence.RECEIPT if reason.startswith("受信報告") else None,
                )
            )
    for kind, data in events:
        journal.record_event(run_id, kind, data)
    journal.finish_run(run_id)
    journal.db.execute(
        "UPDATE runs SET started_at = ?, finished_at = ? WHERE run_id = ?",
        (started, started + duration, run_id),
    )
    journal.db.execute("UPDATE events SET at = ? WHERE run_id = ?", (started + 5.0, run_id))
    return run_id


def lat(start: float, n: int, step: float = 0.01) -> list[float]:
    return [round(start + i * step, 4) for i in range(n)]


EVIDENCE_START = datetime(2026, 12, 4, 19, 15, tzinfo=TOKYO).timestamp()


def fill_evidence_sample(journal: Journal) -> str:
    """One drill under a simulated chat outage, with SMS known by carrier receipt.

    - 足立区 chat: 8 seen, 2 sent into the drill's own outage → 8/8, 100
    - 足立区 sms: 9 by carrier receipt, 1 lost → reach credit 0.8 × 9 / 10 = 0.72,
      100 × (0.6 × 0.72 / 0.95 + 0.4 × 0.72) = 45.47 + 28.8 = 74.3
    - 千代田区 chat: only drill outage → untested, no score, never lost
    - 千代田区 mail: 10 seen → 100
    """
    return write_run(
        journal,
        "20261204T101500-ev0001",
        EVIDENCE_START,
        [
            Ch("131211", "足立区", "chat", "webhook", delivered=lat(0.25, 8), drill_outage=2),
            Ch("131211", "足立区", "sms", "twilio", receipt=lat(2.0, 9), lost=1),
            Ch("131016", "千代田区", "chat", "webhook", drill_outage=3),
            Ch("131016", "千代田区", "mail", "mail", delivered=lat(0.3, 10)),
        ],
        scenario="首都直下地震 代替経路",
    )


def fill_sample(journal: Journal) -> str:
    """The worked example; returns the run id of the latest drill."""
    write_run(
        journal,
        "20261018T101500-old000",
        OLD_START,
        [Ch("132012", "八王子市", "chat", "webhook", delivered=lat(0.3, 5))],
        scenario="多摩地域 通信訓練",
    )
    write_run(
        journal,
        "20261120T101500-prev00",
        PREV_START,
        [
            Ch("131211", "足立区", "chat", "webhook", delivered=lat(0.25, 10)),
            Ch("131211", "足立区", "mail", "mail", delivered=lat(0.4, 10)),
            Ch("131211", "足立区", "sms", "twilio", accepted=10),
            Ch("131016", "千代田区", "chat", "webhook", delivered=lat(0.2, 6), lost=4),
            Ch("131016", "千代田区", "mail", "mail", delivered=lat(0.3, 10)),
            Ch("134210", "小笠原村", "chat", "webhook", delivered=lat(0.5, 10)),
            Ch("134210", "小笠原村", "mail", "mail", delivered=lat(1.2, 6), lost=4, slo=10.0),
        ],
        events=[_roll_call(20)],
    )
    return write_run(
        journal,
        "20261127T101500-3fa2c1",
        RUN_START,
        [
            Ch("131211", "足立区", "chat", "webhook", delivered=lat(0.25, 9), late=[3.5]),
            Ch("131211", "足立区", "mail", "mail", delivered=lat(0.4, 6), late=[4.0], lost=3),
            Ch("131211", "足立区", "sms", "twilio", accepted=10),
            Ch("131016", "千代田区", "chat", "webhook", delivered=lat(0.2, 10)),
            Ch("131016", "千代田区", "mail", "mail", delivered=lat(0.3, 9), error=1),
            Ch("134210", "小笠原村", "chat", "webhook", rejected=10),
            Ch("134210", "小笠原村", "mail", "mail", delivered=lat(1.2, 8), lost=2, slo=10.0),
        ],
        events=[_roll_call(18), _fallback()],
    )


def _roll_call(answered: int) -> tuple[str, dict[str, Any]]:
    """足立区 asked for 20 answers (a roll call of its staff), *answered* of them came."""
    part = RollCallParticipant("131211", "足立区", 20, answered, None)
    event = RollCallEvent(
        step="点呼", room="131211/chat", within_s=60.0, delivered=True, municipalities=(part,)
    )
    return event.kind, event.to_data()


def _fallback() -> tuple[str, dict[str, Any]]:
    """小笠原村: chat rejected, the chain reached it by mail."""
    attempts = (
        FallbackAttempt("chat", "webhook", "rejected", "", 0.0, None, 30.0),
        FallbackAttempt("mail", "mail", "delivered", "", 30.0, 1.2),
    )
    chain = FallbackMunicipality("134210", "小笠原村", True, "mail", 31.2, attempts)
    event = FallbackEvent(
        step="代替経路",
        order=("chat", "mail"),
        within_s=120.0,
        escalate_after_s=30.0,
        municipalities=(chain,),
    )
    return event.kind, event.to_data()


SURGE_SCENARIO = "災害当日の輻輳"
SURGE_START = datetime(2026, 12, 1, 19, 0, tzinfo=TOKYO).timestamp()


def fill_surge_sample(journal: Journal, registry: Registry) -> str:
    """A surge drill: 足立区/chat breaks at 80 msg/s, 千代田区/chat holds up to 80 msg/s.

    Recorded by the surge's own journal writer with fixed numbers and times
    (``tests/surge/samples.py``); the probes' deliveries are journalled too, as
    in a real surge. Returns the run id.
    """
    run_id = journal.begin_run(scenario=SURGE_SCENARIO, run_id="20261201T100000-surge1")
    targets = {t.key: t for t in registry.targets()}
    for seq, (key, breaks_at) in enumerate((("131211/chat", 80.0), ("131016/chat", None)), 1):
        record_sample_surge(
            journal,
            run_id,
            targets[key],
            rates=[10, 40, 80],
            breaks_at=breaks_at,
            started_at=SURGE_START + 60.0 * (seq - 1),
            seq=seq,
            scenario=SURGE_SCENARIO,
        )
    journal.finish_run(run_id)
    journal.db.execute(
        "UPDATE runs SET started_at = ?, finished_at = ? WHERE run_id = ?",
        (SURGE_START - 1.0, SURGE_START + 120.0, run_id),
    )
    return run_id
