"""Past one core: a step fanned out over worker processes is the same step.

The same registry broadcast once in this process and once over two worker
processes: the same deliveries (municipality × channel, all confirmed), one
step result, one journal run holding each delivery once, the parent told of
every one, and the ground truth (the parent's simulators' ledgers) agrees.
"""

from __future__ import annotations

from collections import Counter

import pytest

from drills.core.errors import ScenarioError
from drills.core.journal import Journal, RunStatus
from drills.core.pacing import Pacing
from drills.core.registry import parse_registry
from drills.core.runner import Drill
from drills.core.shard import ENV_VAR, shard, workers_from_env
from drills.core.truth import compare

CODES = ("131016", "131024", "131032", "131041", "131059")


def registry():
    lines = ["defaults: {slo: {latency: 5s}}", "municipalities:"]
    for n, code in enumerate(CODES):
        lines += [f'  - code: "{code}"', f"    name: 区{n}", "    channels:"]
        lines += [
            f"      - {{id: c{i}, kind: webhook, sim: {{latency: 30ms}}}}" for i in range(n + 1)
        ]
    return parse_registry("\n".join(lines) + "\n", "reg.yaml")


async def drill_once(tmp_path, workers: int):
    reg = registry()
    told = []
    journal = Journal(tmp_path / f"journal-{workers}.sqlite")
    async with Drill(reg, journal, workers=workers, pacing=Pacing(), on_delivery=told.append) as d:
        step = await d.broadcast("参集してください", timeout=10)
        ledgers = [sim.ledger for sim in d.sims.running.values()]
        outages = d.outages()
    rows = journal.deliveries()
    runs = journal.runs()
    journal.close()
    return step, told, rows, runs, ledgers, outages


async def test_two_workers_make_the_same_step_as_one_process(tmp_path) -> None:
    one = await drill_once(tmp_path, workers=1)
    two = await drill_once(tmp_path, workers=2)
    keys = {(t.municipality.code, t.channel.id) for t in registry().targets()}
    for step, told, rows, runs, ledgers, outages in (one, two):
        assert {(d.municipality_code, d.channel_id) for d in step.deliveries} == keys
        assert len(step.deliveries) == len(keys)  # each once
        assert all(d.outcome.reached for d in step.deliveries), [d.reason for d in step.deliveries]
        assert Counter(d.token for d in told) == Counter(d.token for d in step.deliveries)
        (run,) = runs  # one run, finished once, holding every delivery once
        assert run["status"] == RunStatus.FINISHED
        assert Counter(d.token for d in rows) == Counter(d.token for d in step.deliveries)
        assert {d.run_id for d in rows} == {run["run_id"]}
        assert compare(rows, ledgers, outages=outages) == []
    step = two[0]
    assert "×2 workers" in step.pacing.pacing and step.pacing.sends == len(keys)


def test_shards_keep_municipalities_whole_and_balance_them() -> None:
    targets = registry().targets()
    parts = shard(targets, 2)
    assert sorted(t.key for p in parts for t in p) == sorted(t.key for t in targets)
    owner = {t.municipality.code: i for i, p in enumerate(parts) for t in p}
    assert all(owner[t.municipality.code] == i for i, p in enumerate(parts) for t in p)
    assert sorted(len(p) for p in parts) == [7, 8]  # 5+2 / 4+3+1 of 15
    assert len(shard(targets, 10)) == len(CODES)  # never more workers than municipalities


def test_workers_knob() -> None:
    assert workers_from_env({}) == 1
    assert workers_from_env({ENV_VAR: "auto"}) >= 1
    with pytest.raises(ScenarioError) as err:
        workers_from_env({ENV_VAR: "many"})
    assert str(err.value).startswith(f"{ENV_VAR} の指定が読めません") and "cannot read" in str(
        err.value
    )


async def test_a_signal_reaches_the_workers_and_nothing_new_is_sent(tmp_path) -> None:
    import signal

    from drills.core import interrupt

    reg = registry()
    journal = Journal(tmp_path / "journal.sqlite")
    # per worker: one send at a time, one every 0.5 s — the first delivery (30 ms) stops all
    pacing = Pacing(rate=2.0, burst=1, in_flight=1)
    with interrupt.catch_signals(grace_s=-1) as stop:
        async with Drill(reg, journal, workers=2, pacing=pacing) as drill:
            step = await drill.broadcast(
                "参集", timeout=10, watch=lambda d: stop.signal or stop.handle(signal.SIGTERM)
            )
            ledgers = [sim.ledger for sim in drill.sims.running.values()]
        status = drill.status
    rows = journal.deliveries()
    journal.close()
    received = [e for ledger in ledgers for e in ledger.entries()]
    # each worker sent at most the message it sent before the word reached it
    assert 1 <= len(received) <= 2
    assert Counter(d.token for d in rows) == Counter(e.token for e in received)
    assert len(step.deliveries) == len(rows)
    assert status == RunStatus.INTERRUPTED
