"""A record's send instant is when the message left, not when it was queued.

The drill paces its sends (here 20 a second, one at a time), so the later
messages wait in the harness for up to 0.35 s. That wait must show as
``queue_s``, never as channel latency: against the simulator's ledger, each
message left (``sent_mono``) before the far end took it, and no earlier than
the loop's own lag at that moment allows — while the queue grows send by send.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from drills.core.journal import Journal
from drills.core.pacing import Pacing
from drills.core.runner import Drill
from drills.core.truth import SLACK_S, compare
from probes.base import ProbeEnv
from probes.sendmark import SendMark, opened
from tests.support import webhook_registry

N = 8
RATE = 20.0  # sends per second: the last of N waits (N - 1) / RATE = 0.35 s in the harness


async def test_paced_queue_is_queue_s_not_latency(tmp_path) -> None:
    reg = webhook_registry(N)
    journal = Journal(tmp_path / "journal.sqlite")
    pacing = Pacing(rate=RATE, burst=1)
    async with Drill(reg, journal, pacing=pacing) as drill:
        step = await drill.broadcast("参集してください", timeout=10)
        ledgers = [sim.ledger for sim in drill.sims.running.values()]
    journal.close()
    assert len(step.deliveries) == N
    assert compare(step.deliveries, ledgers, outages=drill.outages()) == []
    by_token = {e.token: e for ledger in ledgers for e in ledger}
    resolution = time.get_clock_info("monotonic").resolution
    queued = []
    for d in step.deliveries:
        assert d.outcome.reached, d.reason
        assert d.extra["sent_how"] == "http"  # stamped at the write, not the call
        entry = by_token[d.token]
        assert entry.received_at is not None and entry.visible_at is not None
        sent = d.extra["sent_mono"]
        # it left before the far end took it, and the far end took it as soon as
        # the (shared) loop let it: the harness's queue is not in between
        assert sent <= entry.received_at
        assert entry.received_at - sent <= drill.lag.lag_at(entry.received_at) + SLACK_S
        queued.append(sent - d.queue_s)
    # the queue grew by one pacing interval per send: the k-th to leave left no
    # earlier than k / RATE after the first was queued (the token bucket's schedule)
    left = sorted(d.extra["sent_mono"] for d in step.deliveries)
    first = min(queued)
    for k, at in enumerate(left):
        assert at - first >= k / RATE - 1e-6 - resolution
    assert (
        max(d.queue_s for d in step.deliveries)
        >= (N - 1) / RATE - (max(queued) - first) - 1e-6 - resolution
    )
    assert step.pacing.sends == N and step.pacing.waited_max_s >= (N - 2) / RATE


async def _hook_server() -> tuple[web.AppRunner, str]:
    async def hook(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}/hook"


async def test_the_first_use_of_the_network_in_the_send_stamps_the_mark() -> None:
    """A token fetch or login inside the send is part of the channel's path: the message
    started to leave when the send first used the network (never later, never before)."""
    runner, url = await _hook_server()
    env = ProbeEnv()
    try:
        mark = SendMark("TSG-0000000000AB", queued=time.monotonic())
        http = env.http()
        with opened(mark):
            assert mark.left is None  # nothing has used the network yet
            before = time.monotonic()
            async with http.post(url, json={"login": "no token here"}) as r:
                await r.read()
                after = time.monotonic()
            assert mark.how == "http" and mark.left is not None
            assert before <= mark.left <= after
            first = mark.left
            async with http.post(url, json={"text": "【訓練】 x [TSG-0000000000AB]"}) as r:
                await r.read()
        assert mark.left == first  # the first stamp wins
        with opened(mark):  # a retry of the same message: the first time it left counts
            async with http.post(url, data={"text": "TSG-0000000000AB"}) as r:
                await r.read()
        assert mark.left == first
    finally:
        await env.aclose()
        await runner.cleanup()


async def test_a_task_started_before_the_mark_never_stamps_it() -> None:
    runner, url = await _hook_server()
    env = ProbeEnv()
    go = asyncio.Event()

    async def watcher() -> None:  # like an observer: started before the send's mark
        await go.wait()
        async with env.http().post(url, data="TSG-0000000000AB") as r:
            await r.read()

    try:
        task = asyncio.create_task(watcher())
        mark = SendMark("TSG-0000000000AB", queued=time.monotonic())
        with opened(mark):
            go.set()
            await task
        assert mark.left is None
        assert mark.sent_instant() == (mark.queued, "call")
    finally:
        await env.aclose()
        await runner.cleanup()


async def test_a_pooled_connection_stamps_when_it_is_taken() -> None:
    """A send on a connection another request left in the pool starts to leave when it
    takes that connection (the connector's stamp), not at its answer; and the drill's
    session carries no aiohttp trace, whose signals every look would pay for."""
    runner, url = await _hook_server()
    env = ProbeEnv()
    try:
        http = env.http()
        assert not http.trace_configs
        async with http.post(url, data="warm-up") as r:  # leaves a pooled connection
            await r.read()
        assert http.connector is not None
        mark = SendMark("TSG-0000000000AB", queued=time.monotonic())
        with opened(mark):
            before = time.monotonic()
            async with http.post(url, data="【訓練】 [TSG-0000000000AB]") as r:
                assert mark.left is not None and before <= mark.left  # before the answer
                await r.read()
        assert mark.how == "http"
    finally:
        await env.aclose()
        await runner.cleanup()


async def test_a_channel_that_could_not_open_has_no_wait(tmp_path, monkeypatch) -> None:
    """Nothing was handed to a send on a channel that failed to open: no ``queue_s``."""
    from probes.base import ChannelUnreachable
    from probes.chat.webhook import WebhookProbe

    real_open = WebhookProbe.open

    async def open_or_fail(self: WebhookProbe) -> None:
        if self.channel_id.endswith("c0"):
            raise ChannelUnreachable("接続できません / cannot connect", code="connect")
        await real_open(self)

    monkeypatch.setattr(WebhookProbe, "open", open_or_fail)
    journal = Journal(tmp_path / "journal.sqlite")
    async with Drill(webhook_registry(2), journal) as drill:
        step = await drill.broadcast("参集してください", timeout=10)
    journal.close()
    by_channel = {d.channel_id: d for d in step.deliveries}
    assert not by_channel["c0"].outcome.reached, by_channel["c0"].reason
    assert "(open)" in (by_channel["c0"].reason or "")
    assert "queue_s" not in by_channel["c0"].extra and by_channel["c0"].queue_s is None
    assert by_channel["c1"].outcome.reached and by_channel["c1"].queue_s is not None


async def test_an_answer_is_stamped_when_its_first_bytes_come_in() -> None:
    """The drill session's connections note when each answer began to arrive
    (:func:`probes.sendmark.answered_at`): an answer that comes in two parts 0.3 s
    apart is stamped at its first, and a request on the pooled connection afresh."""
    from probes.stamped_http import answered_at

    writes: list[tuple[float, float]] = []

    async def in_two_parts(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        first = time.monotonic()
        await resp.prepare(request)
        await resp.write(b'{"cursor": 1,')
        await asyncio.sleep(0.3)
        writes.append((first, time.monotonic()))
        await resp.write(b' "messages": []}')
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/read", in_two_parts)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/read"
    env = ProbeEnv()
    try:
        http = env.http()
        for _ in range(2):  # the second on the connection the first left in the pool
            async with http.get(url) as r:
                at = answered_at(r)
                await r.read()
            done = time.monotonic()
            first, last = writes[-1]
            assert at is not None and first <= at < last <= done
    finally:
        await env.aclose()
        await runner.cleanup()
