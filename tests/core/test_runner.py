"""The runner against the chat simulator over real loopback sockets."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from drills.core.delivery import Outcome
from drills.core.errors import DrillSafetyError, ScenarioError
from drills.core.journal import Journal
from drills.core.registry import parse_registry
from drills.core.runner import Drill
from drills.core.truth import compare
from probes.base import Accepted, DrillMessage, Probe, Sighting

REG = """\
defaults: {slo: {latency: 1s}}
municipalities:
  - code: "131211"
    name: 足立区
    channels:
      - {id: fixed, kind: webhook, sim: {latency: 200ms}}
      - {id: slow, kind: webhook, sim: {latency: 1500ms}}
      - {id: down, kind: webhook, sim: {outage: true}}
      - {id: auth, kind: webhook, sim: {reject: auth}}
      - {id: void, kind: webhook, sim: {latency: 10ms, loss: 1.0}}
      - {id: busy, kind: webhook, sim: {latency: 50ms, rate_limit: 2}}
"""


@pytest.fixture
def journal(tmp_path):
    j = Journal(tmp_path / "journal.sqlite")
    yield j
    j.close()


async def test_outcomes_and_latency(journal):
    reg = parse_registry(REG, "reg.yaml")
    async with Drill(reg, journal, scenario="t", seed=3) as drill:
        step = await drill.broadcast("テスト", timeout=3.0, repeat=3)
    by = {}
    for d in step.deliveries:
        by.setdefault(d.channel_id, []).append(d)
    for d in by["fixed"]:
        assert d.outcome is Outcome.DELIVERED
        assert d.latency_s >= 0.2  # never earlier than the far end could show it
        assert d.error_bound_s is not None and d.delivered_at > d.accepted_at >= d.sent_at
    for d in by["slow"]:
        assert d.outcome is Outcome.LATE and "SLO" in d.reason
        assert d.latency_s >= 1.5
    # Latency is judged against ground truth, not a guessed margin: every arrival was
    # noticed no earlier than the far end showed it and no later than its own error bound
    # (+ 20 ms) after, and took at least the injected far-end latency.
    ledgers = [sim.ledger for sim in drill.sims.running.values()]
    assert compare(step.deliveries, ledgers, outages=drill.outages()) == []
    for name, injected in (("fixed", 0.2), ("slow", 1.5)):
        for d in by[name]:
            entry = next(e for ledger in ledgers if (e := ledger.entry(d.token)) is not None)
            assert entry.visible_at is not None and entry.received_at is not None
            assert entry.visible_at - entry.received_at >= injected
    assert {d.outcome for d in by["down"]} == {Outcome.LOST}
    assert all(d.delivered_at is None for d in by["down"])
    assert {d.outcome for d in by["auth"]} == {Outcome.REJECTED}
    assert "401" in by["auth"][0].reason
    assert {d.outcome for d in by["void"]} == {Outcome.LOST}
    assert "3" in by["void"][0].reason
    # rate limit 2/s, 3 messages at once: the third waits for Retry-After and still arrives
    assert {d.outcome for d in by["busy"]} <= {Outcome.DELIVERED, Outcome.LATE}
    assert sum(d.throttled for d in by["busy"]) >= 1
    stored = journal.deliveries(drill.run_id)
    assert sorted(d.token for d in stored) == sorted(d.token for d in step.deliveries)
    assert journal.run(drill.run_id)["status"] == "finished"


async def test_outage_step_takes_channel_away_and_back(journal):
    reg = parse_registry(REG, "reg.yaml")
    async with Drill(reg, journal) as drill:
        (target,) = reg.targets(channels=["fixed"])
        before = await drill.broadcast("1", [target], timeout=2)
        await drill.take_down(target)
        during = await drill.broadcast("2", [target], timeout=1)
        await drill.restore(target)
        after = await drill.broadcast("3", [target], timeout=2)
    assert before.deliveries[0].outcome is Outcome.DELIVERED
    # the drill's own outage is the drill's, never the channel's lost
    assert during.deliveries[0].outcome is Outcome.DRILL_OUTAGE
    assert "outage the drill itself made" in during.deliveries[0].reason
    assert during.counted() == [] and during.missed() == []
    assert after.deliveries[0].outcome is Outcome.DELIVERED
    assert [o.channel for o in drill.drill_outages] == [target.key]


@pytest.fixture
async def sink():
    """A webhook endpoint with no read-back: counts what reaches it."""
    hits: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        hits.append((await request.json())["text"])
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/hook", hits
    await runner.cleanup()


async def test_live_channel_refused_without_live_flag_before_any_send(journal, sink):
    url, hits = sink
    reg = parse_registry(REG + f"      - {{id: real, kind: webhook, url: '{url}'}}\n", "reg.yaml")
    async with Drill(reg, journal) as drill:
        with pytest.raises(DrillSafetyError, match="--live"):
            await drill.broadcast("x", timeout=1)
    assert hits == []
    assert journal.deliveries(drill.run_id) == []
    # no empty "finished" run is left for the scorecard to show as the latest drill
    assert journal.runs() == [] and not drill.begun


async def test_accepted_only_channel_is_never_delivered(journal, sink):
    url, hits = sink
    reg = parse_registry(
        REG.split("      - {id: fixed")[0] + f"      - {{id: real, kind: webhook, url: '{url}'}}\n",
        "reg.yaml",
    )
    async with Drill(reg, journal, live=True) as drill:
        step = await drill.broadcast("受付のみ", timeout=1)
    (d,) = step.deliveries
    assert d.outcome is Outcome.ACCEPTED and d.latency_s is None and "accepted only" in d.reason
    assert len(hits) == 1 and hits[0].startswith("【訓練】 受付のみ") and d.token in hits[0]


class _BrokenProbe(Probe):
    kind = "webhook"

    async def send(self, message: DrillMessage) -> Accepted:
        raise RuntimeError("bug in the harness")

    async def observe(self, message: DrillMessage) -> Sighting:
        await asyncio.Event().wait()
        raise AssertionError


async def test_harness_fault_is_error_not_channel_fault(journal):
    reg = parse_registry(REG, "reg.yaml")
    async with Drill(reg, journal) as drill:
        (target,) = reg.targets(channels=["fixed"])
        drill._probes[target.key] = _BrokenProbe(target.key, target.channel.settings, drill.env)
        step = await drill.broadcast("x", [target], timeout=1)
    (d,) = step.deliveries
    assert d.outcome is Outcome.ERROR and "RuntimeError" in d.reason
    assert step.counted() == [] and step.reachability() == 0.0


async def test_step_without_channels_is_a_scenario_error(journal):
    reg = parse_registry(REG, "reg.yaml")
    async with Drill(reg, journal) as drill:
        with pytest.raises(ScenarioError):
            await drill.broadcast("x", [], timeout=1)


async def test_sms_cost_cap_refuses_the_step_before_the_first_send(journal):
    reg = parse_registry(
        'municipalities:\n  - code: "131211"\n    name: 足立区\n    channels:\n'
        '      - {id: sms, kind: twilio, to: ["+819011110001", "+819011110002"], caps: {max_messages: 3}, sim: {latency: 100ms}}\n',
        "reg.yaml",
    )
    async with Drill(reg, journal) as drill:
        with pytest.raises(DrillSafetyError, match="上限"):
            await drill.broadcast("費用上限", timeout=2, repeat=2)  # 2 recipients x 2 = 4 > 3
        (sim,) = drill.sims.running.values()
        assert sim.messages == {}  # nothing reached the local Twilio
        step = await drill.broadcast("上限内", timeout=3)  # 2 <= 3: allowed
    assert [d.outcome for d in step.deliveries] == [Outcome.DELIVERED] * 2
    assert len(sim.messages) == 2


async def test_concurrent_first_uses_of_a_channel_share_one_opened_probe(journal, monkeypatch):
    opened: list[str] = []
    from probes.chat.webhook import WebhookProbe

    real_open = WebhookProbe.open

    async def counting_open(self):
        opened.append(self.channel_id)
        await asyncio.sleep(0)  # let the other first uses arrive while this one opens
        await real_open(self)

    monkeypatch.setattr(WebhookProbe, "open", counting_open)
    reg = parse_registry(REG, "reg.yaml")
    target = next(t for t in reg.targets() if t.channel.id == "fixed")
    async with Drill(reg, journal, scenario="t", seed=3) as drill:
        probes = await asyncio.gather(*(drill.probe(target) for _ in range(20)))
        again = await drill.probe(target)
    assert len({id(p) for p in probes}) == 1 and again is probes[0]
    assert opened == ["131211/fixed"]
