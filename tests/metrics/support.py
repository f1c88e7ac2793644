"""A small drill world for the metrics tests: webhook sim channels, two drills.

Municipalities (all channels ``kind: webhook`` against the local simulator):

- 131211 足立区 — two healthy chats; in the second drill ``chat2`` is taken down
  (so its readiness gets worse and ``chat2`` is newly unreachable);
- 133086 奥多摩町 — a healthy chat and ``backup`` whose far end is down in both
  drills (unreachable twice in a row);
- 134210 小笠原村 — ``chat`` refuses our credentials, ``chat2`` is fine;
  ``drill_interval: 1s`` so it is overdue a moment after each drill;
- 131016 千代田区 — registered, never drilled.

Roll call and fallback results are journalled as the steps journal them, typed
(:class:`~drills.core.events.RollCallEvent`, :class:`~drills.core.events.FallbackEvent`:
足立区 misses the second roll call; 小笠原村 is reached by fallback over
``chat2`` in 0.35 s; 奥多摩町's chain is lost); a surge of 小笠原村/chat2 is journalled by the surge's own writer
(held in the first drill, broken at 20 msg/s in the second); a TLS certificate's days-left is journalled on a mail-kind
delivery, as the mail probe records it (``extra["tls_days_left"]``) — the mail
kind itself is tested by its own suite.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from drills.core.delivery import Delivery, Outcome
from drills.core.events import (
    FallbackAttempt,
    FallbackEvent,
    FallbackMunicipality,
    RollCallEvent,
    RollCallParticipant,
)
from drills.core.journal import Journal
from drills.core.registry import Registry, load_registry, parse_registry
from drills.core.runner import Drill
from probes.base import new_token
from tests.surge.samples import record_sample_surge

REGISTRY_YAML = """\
defaults:
  slo: {latency: 2s, reachability: 0.9}
municipalities:
  - code: "131211"
    name: 足立区
    drill_interval: 30d
    channels:
      - {id: chat, kind: webhook, sim: {latency: 40ms}}
      - {id: chat2, kind: webhook, sim: {latency: {dist: uniform, low: 20ms, high: 150ms}}}
  - code: "133086"
    name: 奥多摩町
    drill_interval: 720h
    channels:
      - {id: chat, kind: webhook, sim: {latency: 120ms}}
      - {id: backup, kind: webhook, sim: {outage: true}}
  - code: "134210"
    name: 小笠原村
    drill_interval: 1s
    channels:
      - {id: chat, kind: webhook, sim: {reject: auth}}
      - {id: chat2, kind: webhook, sim: {latency: 60ms}}
  - code: "131016"
    name: 千代田区
    drill_interval: 24h
    channels:
      - {id: chat, kind: webhook, sim: {latency: 30ms}}
"""

# From the second drill on, 足立区/chat2's far end is down on its own: a channel fault (lost),
# not the drill's doing (``drill.take_down`` would make those messages drill_outage).
_CHAT2 = "{id: chat2, kind: webhook, sim: {latency: {dist: uniform, low: 20ms, high: 150ms}}}"
assert _CHAT2 in REGISTRY_YAML
FAILING_YAML = REGISTRY_YAML.replace(_CHAT2, "{id: chat2, kind: webhook, sim: {outage: true}}")

SCENARIO = "統合テスト: 首都直下地震 初動"
VANTAGE = "tokyo-hq"
DRILLED = ("131211", "133086", "134210")


def write_registry(folder: Path) -> Registry:
    path = folder / "registry.yaml"
    path.write_text(REGISTRY_YAML, encoding="utf-8")
    return load_registry(path)


def _tls_delivery(run_id: str, days_left: int) -> Delivery:
    now = time.time()
    return Delivery(
        run_id=run_id,
        step="初動参集",
        municipality_code="134210",
        municipality_name="小笠原村",
        channel_id="mail",
        kind="mail",
        token=new_token(),
        outcome=Outcome.DELIVERED,
        sent_at=now - 0.4,
        accepted_at=now - 0.3,
        delivered_at=now,
        latency_s=0.4,
        accept_latency_s=0.1,
        error_bound_s=0.1,
        slo_latency_s=2.0,
        vantage=VANTAGE,
        scenario=SCENARIO,
        extra={"tls_days_left": days_left},
    )


def record_steps(journal: Journal, run_id: str, second: bool) -> None:
    """A roll call and a fallback step, journalled as the steps write them."""
    roll_call = RollCallEvent(
        step="点呼",
        room="130001/chat",
        within_s=5.0,
        delivered=True,
        municipalities=(
            RollCallParticipant("131211", "足立区", 1, 0 if second else 1, None if second else 1.2),
            RollCallParticipant("134210", "小笠原村", 1, 1, 0.8),
        ),
    )
    fallback = FallbackEvent(
        step="代替経路",
        order=("backup", "chat2"),
        within_s=5.0,
        escalate_after_s=1.0,
        municipalities=(
            FallbackMunicipality(
                "134210",
                "小笠原村",
                True,
                "chat2",
                0.35,
                (FallbackAttempt("chat2", "webhook", "delivered", "", 0.0, 0.35),),
            ),
            FallbackMunicipality(
                "133086",
                "奥多摩町",
                False,
                None,
                None,
                (FallbackAttempt("backup", "webhook", "lost", "未着 / not seen", 0.0, None, 1.0),),
            ),
        ),
    )
    for event in (roll_call, fallback):
        journal.record_event(run_id, event.kind, event.to_data())


async def _drill(
    registry: Registry, journal: Journal, second: bool, vantage: str, scenario: str
) -> str:
    if second:
        registry = parse_registry(FAILING_YAML, registry.path)
    async with Drill(registry, journal, scenario=scenario, vantage=vantage, seed=7) as drill:
        targets = drill.targets(DRILLED)
        await drill.broadcast(
            "参集してください", targets, timeout=2.0, repeat=3, interval=0.05, step="初動参集"
        )
        assert drill.run_id is not None
        run_id = drill.run_id
        journal.record(_tls_delivery(run_id, days_left=10))
        record_steps(journal, run_id, second)
        # A surge of 小笠原村/chat2: it holds in the first drill and breaks at 20 msg/s in the
        # second. Only the event is journalled (record_surge, as a real surge does): the
        # probes' deliveries would change the scores the alert tests are built on.
        record_sample_surge(
            journal,
            run_id,
            next(t for t in targets if t.key == "134210/chat2"),
            rates=[5, 20],
            breaks_at=20 if second else None,
            started_at=time.time(),
            scenario=scenario,
            vantage=vantage,
            journal_probes=False,
        )
        return run_id


def run_drills(
    registry: Registry,
    journal: Journal,
    count: int = 2,
    vantage: str = VANTAGE,
    scenario: str = SCENARIO,
) -> list[str]:
    """Run the world's drills (the second and later with 足立区/chat2's far end down)."""
    return [asyncio.run(_drill(registry, journal, i > 0, vantage, scenario)) for i in range(count)]


def one_drill(registry: Registry, journal: Journal, second: bool = False) -> str:
    return asyncio.run(_drill(registry, journal, second, VANTAGE, SCENARIO))


def sample_set(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Parse exposition text into {(sample name, sorted labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = {
                k: (repr(float(v)) if k == "le" else v) for k, v in s.labels.items()
            }  # "1" == "1.0"
            out[(s.name, tuple(sorted(labels.items())))] = s.value
    return out


def names_in(text: str) -> set[str]:
    return {name for name, _ in sample_set(text)}


def labels_of(text: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for name, labels in sample_set(text):
        out.setdefault(name, set()).update(k for k, _ in labels)
    return out
