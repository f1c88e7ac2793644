"""The simulators a drill runs against: one per channel kind, started on first use.

After :meth:`SimulatorPool.stop` the pool's ``running`` simulators (and each
one's ground-truth ``.ledger``) stay readable, for :mod:`drills.core.truth`.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from drills.core.errors import ScenarioError
from drills.core.registry import Target
from probes.sim.base import Simulator

__all__ = ["SimulatorPool"]


class SimulatorPool:
    """One running simulator per channel kind, started on first use."""

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self.running: dict[str, Simulator] = {}
        self.settings: dict[str, dict[str, Any]] = {}
        self._by_target: dict[str, Simulator] = {}
        self._lock = asyncio.Lock()

    async def settings_for(self, target: Target) -> dict[str, Any]:
        if target.key in self.settings:
            return self.settings[target.key]
        channel = target.channel
        sim_cls = channel.probe_class().simulator()
        if sim_cls is None or channel.sim is None:
            raise ScenarioError(f"channel {target.key} has no simulator")
        name = sim_cls.__module__ + "." + sim_cls.__qualname__
        async with self._lock:  # concurrent first uses must share one simulator
            sim = self.running.get(name)
            if sim is None:
                sim = sim_cls(seed=self.seed)
                await sim.start()
                self.running[name] = sim
        if target.key in self.settings:
            return self.settings[target.key]
        settings = sim.add_channel(target.key, channel.sim, dict(channel.raw_settings))
        self.settings[target.key] = settings
        self._by_target[target.key] = sim
        return settings

    def simulator_of(self, target: Target) -> Simulator:
        return self._by_target[target.key]

    async def stop(self) -> None:
        """Stop every simulator; ``running`` (and each ``.ledger``) stays readable."""
        for sim in self.running.values():
            with contextlib.suppress(Exception):
                await sim.stop()
