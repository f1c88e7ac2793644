"""Every chat kind as a registry ``sim:`` channel, driven by the drill runner.

This is how the demo uses the chat simulators: kinds resolved through the
``tsunagari.channels`` entry points, far ends started by the runner's
simulator pool, outcomes classified and journalled.
"""

from __future__ import annotations

import pytest

from drills.core.delivery import Outcome
from drills.core.journal import Journal
from drills.core.registry import load_kind, parse_registry
from drills.core.runner import Drill
from probes.base import Clock
from probes.chat.base import ChatProbe
from probes.sim.ledger import Fate

CHAT_KINDS = ["webhook", "matrix", "slack", "teams", "mattermost", "lineworks"]


def registry_text() -> str:
    lines = [
        "defaults: {slo: {latency: 2s}}",
        "municipalities:",
        '  - code: "131041"',
        "    name: 新宿区",
        "    channels:",
    ]
    for kind in CHAT_KINDS:
        lines += [
            f"      - {{id: {kind}-ok, kind: {kind}, sim: {{latency: 200ms}}}}",
            f"      - {{id: {kind}-auth, kind: {kind}, sim: {{reject: auth}}}}",
            f"      - {{id: {kind}-down, kind: {kind}, sim: {{outage: true}}}}",
            f"      - {{id: {kind}-void, kind: {kind}, sim: {{latency: 10ms, loss: 1.0}}}}",
            f"      - {{id: {kind}-busy, kind: {kind}, sim: {{latency: 50ms, rate_limit: 2}}}}",
        ]
    return "\n".join(lines) + "\n"


@pytest.fixture
def journal(tmp_path):
    j = Journal(tmp_path / "journal.sqlite")
    yield j
    j.close()


@pytest.mark.parametrize("kind", CHAT_KINDS)
def test_kind_is_found_through_the_entry_point_group(kind: str) -> None:
    cls = load_kind(kind)
    assert issubclass(cls, ChatProbe) and cls.kind == kind
    sim = cls.simulator()
    assert sim is not None and sim.kind == kind
    cls.Settings.model_validate(sim.placeholder_settings())


async def test_every_chat_kind_through_the_runner(journal: Journal) -> None:
    """Every record agrees with the simulators' ledger (what really happened at the far end).

    Latency is judged against the ledger's visible time, never by subtracting the
    acceptance time from it: 90 sends share one event loop with the far ends, so
    acceptance and sighting both carry the loop's queueing, in unequal parts.
    """
    reg = parse_registry(registry_text(), "chat.yaml")
    async with Drill(reg, journal, scenario="chat", seed=5) as drill:
        step = await drill.broadcast("全職員は参集してください", timeout=2.5, repeat=3)
        sims = {sim.kind: sim for sim in drill.sims.running.values()}
    assert set(sims) == set(CHAT_KINDS)
    by: dict[str, list] = {}
    for d in step.deliveries:
        by.setdefault(d.channel_id, []).append(d)
    for kind in CHAT_KINDS:
        ledger = sims[kind].ledger
        for d in by[f"{kind}-ok"]:
            assert d.outcome is Outcome.DELIVERED, (kind, d.reason)
            entry = ledger.entry(d.token)
            assert entry is not None and entry.fate is Fate.VISIBLE, (kind, entry)
            assert entry.visible_at is not None and entry.received_at is not None
            seen = Clock.monotonic_from_wall(d.sent_at + d.latency_s)
            facts = (kind, d.latency_s, d.error_bound_s, seen - entry.visible_at)
            assert entry.visible_at - entry.received_at >= 0.2, facts  # the injected 200 ms
            assert d.error_bound_s is not None
            assert seen >= entry.visible_at, facts
            assert seen - entry.visible_at <= d.error_bound_s + 0.02, facts
        for d in by[f"{kind}-auth"]:
            assert d.outcome is Outcome.REJECTED, (kind, d.reason)
            entry = ledger.entry(d.token)
            # LINE WORKS refuses the service account before any message is sent.
            assert entry is None or entry.fate is Fate.REFUSED, (kind, entry)
        assert ledger.outages(f"131041/{kind}-down"), kind
        for d in by[f"{kind}-down"]:
            assert d.outcome is Outcome.LOST, (kind, d.reason)
            assert ledger.entry(d.token) is None  # the far end never heard of it
        for d in by[f"{kind}-void"]:
            assert d.outcome is Outcome.LOST, (kind, d.reason)
            entry = ledger.entry(d.token)
            assert entry is not None and entry.fate is Fate.DROPPED, (kind, entry)
        busy = by[f"{kind}-busy"]
        assert {d.outcome for d in busy} == {Outcome.DELIVERED}, (kind, [d.reason for d in busy])
        assert sum(d.throttled for d in busy) >= 1, kind
        refusals = [ledger.entry(d.token) for d in busy]
        assert sum(e.refusals for e in refusals if e is not None) == sum(
            d.throttled for d in busy
        ), kind
        for d in busy:
            entry = ledger.entry(d.token)
            assert entry is not None and entry.visible_at is not None
            assert Clock.monotonic_from_wall(d.sent_at + d.latency_s) >= entry.visible_at
