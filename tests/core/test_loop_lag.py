"""The event-loop lag monitor behind every delivery's error bound."""

from __future__ import annotations

import asyncio
import time

from drills.core.loop_lag import LagMonitor


def test_lag_reads_a_blocked_loop_and_an_idle_one():
    async def go() -> tuple[float, float]:
        monitor = LagMonitor(period=0.01)
        monitor.start()
        await asyncio.sleep(0.05)
        idle_at = time.monotonic()
        await monitor.settle(idle_at)
        idle = monitor.lag_at(idle_at)
        busy_at = time.monotonic()
        time.sleep(0.06)  # the loop is busy: nothing else runs meanwhile
        await monitor.settle(busy_at)
        busy = monitor.lag_at(busy_at)
        monitor.stop()
        return idle, busy

    idle, busy = asyncio.run(go())
    assert idle < 0.06 - 0.01  # whatever an idle loop reads, less than the block
    assert busy >= 0.06 - 0.01  # the block, less at most one period


def test_monitor_follows_the_drill_to_a_new_loop():
    monitor = LagMonitor(period=0.01)

    async def once() -> float:
        monitor.start()
        t = time.monotonic()
        await monitor.settle(t)  # would wait forever on a monitor left on a closed loop
        return monitor.lag_at(t)

    assert asyncio.run(once()) >= 0.0
    assert asyncio.run(once()) >= 0.0
    monitor.stop()
