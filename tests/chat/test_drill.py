"""Every chat kind as a registry ``sim:`` channel, driven by the drill runner.

This is how the demo uses the chat simulators: kinds resolved through the
``tsunagari.channels`` entry points, far ends started by the runner's
simulator pool, outcomes classified and journalled.
"""

from __future__ import annotations

import pytest

from drills.delivery import Outcome
from drills.journal import Journal
from drills.registry import load_kind, parse_registry
from drills.runner import Drill
from probes.chat.base import ChatProbe

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
    reg = parse_registry(registry_text(), "chat.yaml")
    async with Drill(reg, journal, scenario="chat", seed=5) as drill:
        step = await drill.broadcast("全職員は参集してください", timeout=2.5, repeat=3)
    by: dict[str, list] = {}
    for d in step.deliveries:
        by.setdefault(d.channel_id, []).append(d)
    for kind in CHAT_KINDS:
        for d in by[f"{kind}-ok"]:
            assert d.outcome is Outcome.DELIVERED, (kind, d.reason)
            # 90 sends share one event loop with the fakes: measure the far end's part, from
            # the provider's acceptance to the sighting, against the injected 200 ms.
            far_end = d.latency_s - d.accept_latency_s
            assert abs(far_end - 0.2) <= 0.2 * 0.1 + 0.02, (kind, d.latency_s, d.accept_latency_s)
            assert d.error_bound_s is not None and d.error_bound_s <= 0.05
        assert {d.outcome for d in by[f"{kind}-auth"]} == {Outcome.REJECTED}, kind
        assert {d.outcome for d in by[f"{kind}-down"]} == {Outcome.LOST}, kind
        assert {d.outcome for d in by[f"{kind}-void"]} == {Outcome.LOST}, kind
        busy = by[f"{kind}-busy"]
        assert {d.outcome for d in busy} == {Outcome.DELIVERED}, (kind, [d.reason for d in busy])
        assert sum(d.throttled for d in busy) >= 1, kind
