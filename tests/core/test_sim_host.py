"""Simulators in a process of their own (:mod:`drills.core.sim_host`, ``ProcessSimulatorPool``).

Judged by the ground truth that comes back across the process boundary: the
ledger's times are the machine's monotonic clock, so a record taken here must
agree with the child's ledger exactly as with an in-process simulator's.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from drills.core.delivery import Outcome
from drills.core.errors import HarnessError
from drills.core.journal import Journal
from drills.core.registry import parse_registry
from drills.core.runner import Drill
from drills.core.sim_host import SimHost
from drills.core.simulators import ProcessSimulatorPool
from drills.core.truth import compare
from probes.base import new_token
from probes.sim.base import SimKnobs
from probes.sim.chat import ChatSimulator
from probes.sim.ledger import Fate

REGISTRY = """\
defaults: {slo: {latency: 10s}}
municipalities:
  - code: "131211"
    name: 足立区
    channels:
      - {id: a, kind: webhook, sim: {latency: 80ms}}
      - {id: b, kind: webhook, sim: {latency: 80ms}}
"""


def _request(url: str, secret: str, body: dict[str, str] | None = None) -> dict[str, object]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Authorization": f"Bearer {secret}"})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as resp:
        answer: dict[str, object] = json.loads(resp.read())
        return answer


def test_a_channel_in_the_child_answers_on_loopback_and_its_ledger_comes_back() -> None:
    host = SimHost(seed=1).start()
    assert host.proc is not None and host.proc.pid != os.getpid()
    try:
        knobs = SimKnobs.model_validate({"latency": "50ms"})
        s = host.add(ChatSimulator, "131211/chat", knobs, {})
        read, read_secret = s["observer"]["url"], s["observer"]["auth"].reveal()
        cursor = _request(f"{read}?after=0&wait=0", read_secret)["cursor"]
        token = new_token()
        host.proc.send_signal(signal.SIGINT)  # a Ctrl-C reaches the whole process group
        sent = time.monotonic()
        _request(s["url"], s["auth"].reveal(), {"text": f"【訓練】 [{token}]"})
        got = _request(f"{read}?after={cursor}&wait=5", read_secret)
        seen = time.monotonic()
        assert token in json.dumps(got, ensure_ascii=False)
        assert host.cpu_s() > 0  # still answering: the child ignored SIGINT
    finally:
        ledgers = host.stop()
    assert host.proc.returncode == 0
    entry = ledgers["probes.sim.chat.ChatSimulator"].entry(token)
    assert entry is not None and entry.fate is Fate.VISIBLE
    assert entry.received_at is not None and entry.visible_at is not None
    # one monotonic clock for both processes
    assert sent <= entry.received_at <= entry.visible_at <= seen
    assert entry.visible_at - entry.received_at >= 0.05


def test_the_child_runs_at_the_priority_asked_for_and_says_so() -> None:
    """A higher nice value (a lower priority) needs no privilege: the child takes it."""
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    host = SimHost(nice=min(19, mine + 3)).start()
    try:
        assert host.proc is not None
        assert (
            host.nice_applied == os.getpriority(os.PRIO_PROCESS, host.proc.pid) == min(19, mine + 3)
        )
    finally:
        host.stop()
    assert SimHost().nice is None


def test_the_child_stops_when_the_parent_goes_away() -> None:
    host = SimHost().start()
    assert host._conn is not None and host.proc is not None
    host._conn.close()  # as when the parent dies: the socket's end of file
    assert host.proc.wait(15) == 0


def test_a_drill_on_the_process_pool_agrees_with_the_childs_ledgers(tmp_path: Path) -> None:
    registry = parse_registry(REGISTRY, "reg.yaml")
    journal = Journal(tmp_path / "j.sqlite")

    async def main() -> Drill:
        drill = Drill(registry, journal, scenario="sim-host", seed=2)
        drill.sims = ProcessSimulatorPool(2)
        async with drill:
            _a, b = drill.targets()
            await drill.take_down(b)  # the outage is made in the child
            await drill.broadcast("訓練", timeout=1.5, repeat=2, interval=0.1)
            await drill.restore(b)
            await drill.broadcast("訓練 2", [b], timeout=5)
        return drill

    drill = asyncio.run(main())
    assert drill.run_id is not None
    records = journal.deliveries(drill.run_id)
    journal.close()
    ledgers = [sim.ledger for sim in drill.sims.running.values()]
    assert sum(len(ledger) for ledger in ledgers) == 3  # a twice, b once after the outage
    by = {(d.channel_id, d.step, d.outcome) for d in records}
    assert ("b", "broadcast", Outcome.DRILL_OUTAGE) in by
    assert ("a", "broadcast", Outcome.DELIVERED) in by
    assert sum(d.outcome is Outcome.DELIVERED for d in records) == 3
    assert [o.channel for ledger in ledgers for o in ledger.outages()] == ["131211/b"]
    assert compare(records, ledgers, outages=drill.outages()) == []


def test_a_child_that_cannot_start_is_a_bilingual_harness_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "executable", "/bin/false")  # exits at once, answers nothing
    with pytest.raises(HarnessError) as caught:
        SimHost().start()
    ja, en = str(caught.value).split(" / ", 1)
    assert "シミュレータのプロセス" in ja and "the simulator process ended" in en
