"""The simulators a drill runs against: one per channel kind, started on first use.

After :meth:`SimulatorPool.stop` the pool's ``running`` simulators (and each
one's ground-truth ``.ledger``) stay readable, for :mod:`drills.core.truth`.

:class:`ProcessSimulatorPool` is the same pool with the simulators in a child
process of their own (:mod:`drills.core.sim_host`), so their CPU and event-loop
time are not the harness's: ``tsunagari demo`` uses it. Its ``running`` entries
are :class:`RemoteSimulator` stand-ins (``kind``, ``knobs``, ``set_outage``); each
one's ``.ledger`` is the child's ledger, fetched when the pool stops.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from drills.core.errors import ScenarioError
from drills.core.registry import Target
from drills.core.sim_host import SimHost, sim_name
from probes.sim.base import SimKnobs, Simulator
from probes.sim.ledger import Ledger

__all__ = ["ProcessSimulatorPool", "RemoteSimulator", "SimulatorPool"]


class SimulatorPool:
    """One running simulator per channel kind, started on first use."""

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self.running: dict[str, Simulator] = {}
        self.settings: dict[str, dict[str, Any]] = {}
        self._by_target: dict[str, Simulator] = {}
        self._lock = asyncio.Lock()

    async def settings_for(self, target: Target) -> dict[str, Any]:
        """The settings of ``target``'s channel in its simulator (added on first use)."""
        if target.key in self.settings:
            return self.settings[target.key]
        sim_cls, knobs = _simulator_class(target)
        async with self._lock:  # concurrent first uses share one simulator and one add
            if target.key not in self.settings:
                raw_settings = dict(target.channel.raw_settings)
                sim, settings = await self._add_channel(sim_cls, target.key, knobs, raw_settings)
                self.settings[target.key] = settings
                self._by_target[target.key] = sim
        return self.settings[target.key]

    async def _add_channel(
        self, sim_cls: type[Simulator], channel_key: str, knobs: SimKnobs, raw: dict[str, Any]
    ) -> tuple[Simulator, dict[str, Any]]:
        """Add a channel to the running simulator of ``sim_cls`` (started on first use)."""
        name = sim_name(sim_cls)
        sim = self.running.get(name)
        if sim is None:
            sim = sim_cls(seed=self.seed)
            await sim.start()
            self.running[name] = sim
        return sim, sim.add_channel(channel_key, knobs, raw)

    def simulator_of(self, target: Target) -> Simulator:
        return self._by_target[target.key]

    async def stop(self) -> None:
        """Stop every simulator; ``running`` (and each ``.ledger``) stays readable."""
        for sim in self.running.values():
            with contextlib.suppress(Exception):
                await sim.stop()


class RemoteSimulator(Simulator):
    """A simulator running in the pool's child process, as the drill sees it.

    ``knobs`` mirrors the child's; ``ledger`` is empty until the pool stops, then
    the child's ground truth.
    """

    def __init__(self, host: SimHost, cls: type[Simulator], seed: int | None = None) -> None:
        super().__init__(seed)
        self.host = host
        self.cls = cls
        self.ledger = Ledger(getattr(cls, "kind", cls.__name__))

    @staticmethod
    def placeholder_settings() -> dict[str, Any]:
        return {}

    async def start(self) -> None:
        """The child starts the real simulator on its first channel."""

    async def stop(self) -> None:
        """The pool stops the child (:meth:`ProcessSimulatorPool.stop`)."""

    def add_channel(
        self, channel_key: str, knobs: SimKnobs, raw_settings: dict[str, Any]
    ) -> dict[str, Any]:
        """Add a channel in the child (one blocking round trip; the pool uses :meth:`aadd`)."""
        settings = self.host.add(self.cls, channel_key, knobs, raw_settings)
        self.knobs[channel_key] = knobs
        return settings

    async def aadd(
        self, channel_key: str, knobs: SimKnobs, raw_settings: dict[str, Any]
    ) -> dict[str, Any]:
        """:meth:`add_channel` without blocking the event loop."""
        settings = await asyncio.to_thread(
            self.host.add, self.cls, channel_key, knobs, raw_settings
        )
        self.knobs[channel_key] = knobs
        return settings

    def set_outage(self, channel_key: str, down: bool) -> None:
        """Take a channel away (or give it back) in the child (one round trip)."""
        self.host.outage(channel_key, down)
        self.knobs[channel_key] = self.knobs[channel_key].model_copy(update={"outage": down})


class ProcessSimulatorPool(SimulatorPool):
    """:class:`SimulatorPool` with every simulator in one child process (started on first use)."""

    def __init__(self, seed: int | None = None) -> None:
        super().__init__(seed)
        self.host: SimHost | None = None
        self._remote: dict[str, RemoteSimulator] = {}

    async def _add_channel(
        self, sim_cls: type[Simulator], channel_key: str, knobs: SimKnobs, raw: dict[str, Any]
    ) -> tuple[Simulator, dict[str, Any]]:
        """Add a channel in the child (started on first use), one stand-in per kind."""
        if self.host is None:
            self.host = await asyncio.to_thread(SimHost(self.seed).start)
        name = sim_name(sim_cls)
        sim = self._remote.get(name)
        if sim is None:
            sim = self._remote[name] = RemoteSimulator(self.host, sim_cls, self.seed)
            self.running[name] = sim
        return sim, await sim.aadd(channel_key, knobs, raw)

    async def stop(self) -> None:
        """Stop the child; each ``running`` entry's ``.ledger`` is then the child's."""
        host, self.host = self.host, None
        if host is None:
            return
        # Blocking on purpose: the drill is over, and a cancelled task (a second
        # signal) must still get the ground truth back and the child stopped.
        ledgers = host.stop()
        for name, sim in self._remote.items():
            if name in ledgers:
                sim.ledger = ledgers[name]


def _simulator_class(target: Target) -> tuple[type[Simulator], SimKnobs]:
    """The simulator class and knobs of ``target``'s channel; a :class:`ScenarioError` if none."""
    channel = target.channel
    sim_cls = channel.probe_class().simulator()
    if sim_cls is None or channel.sim is None:
        raise ScenarioError(f"channel {target.key} has no simulator")
    return sim_cls, channel.sim
