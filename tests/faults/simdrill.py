"""One drill over simulated channels, for the chat and SMS rows of the fault matrix.

    with sim_drill(tmp_path, REGISTRY) as run:
        run.sim("chat").inject("131211/chat", Fault("send", "status", status=401))
        run.broadcast(timeout=2.0)
    d = run.one()                       # the record, read back from the journal file
    assert d.outcome is Outcome.REJECTED

The drill is the operator's own API (:func:`drills.operator.scenario.open_drill`) over
a file journal, as ``tests/oracle/harness.py`` drives it. On the way out the block
checks what every fault case must show besides its outcome: no traceback in any log
record or in stderr while the drill ran, the journal intact and the run ``finished``,
and every record agreeing with the simulators' ledgers (:func:`drills.core.truth.compare`).
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from drills.core.delivery import Delivery
from drills.core.journal import Journal
from drills.core.registry import Target, parse_registry
from drills.core.runner import Drill
from drills.core.truth import compare
from drills.operator.scenario import ScenarioDrill, open_drill
from probes.sim.base import Simulator
from probes.sim.ledger import Entry
from tests.faults.checks import assert_classified, assert_no_traceback, run_status

__all__ = ["SimDrill", "sim_drill"]

T = TypeVar("T")


class _Capture(logging.Handler):
    """Every log record of level WARNING and up, formatted with its traceback (if any)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@dataclass
class SimDrill:
    """A drill in progress (inside the ``with``), then its records and ledgers (after it)."""

    drill: ScenarioDrill
    path: Path
    run_id: str = ""
    deliveries: list[Delivery] = field(default_factory=list)
    simulators: list[Simulator] = field(default_factory=list)
    logs: str = ""

    @property
    def runner(self) -> Drill:
        return self.drill.ctx.drill

    def target(self, channel_id: str) -> Target:
        found = [t for t in self.runner.targets() if t.channel.id == channel_id]
        assert len(found) == 1, f"one channel {channel_id!r} expected, found {len(found)}"
        return found[0]

    def on_loop(self, fn: Callable[[], T]) -> T:
        """Run *fn* on the drill's event loop (simulators are touched only there)."""

        async def call() -> T:
            return fn()

        return self.drill.ctx.loop.run(call())

    def sim(self, channel_id: str) -> Any:
        """The (started) simulator serving *channel_id*; its settings are made now."""
        target = self.target(channel_id)
        self.drill.ctx.loop.run(self.runner.sims.settings_for(target))
        return self.runner.sims.simulator_of(target)

    def broadcast(self, timeout: float, step: str | None = None) -> list[Delivery]:
        return list(self.drill.broadcast("安否確認訓練", timeout=timeout, step=step).deliveries)

    # ------------------------------------------------------------------ after the drill

    def one(self, step: str | None = None) -> Delivery:
        found = [d for d in self.deliveries if step is None or d.step == step]
        assert len(found) == 1, f"one record expected, found {[d.outcome for d in found]}"
        return found[0]

    def entry(self, d: Delivery) -> Entry | None:
        for sim in self.simulators:
            e = sim.ledger.entry(d.token, d.recipient)
            if e is not None:
                return e
        return None


@contextlib.contextmanager
def sim_drill(tmp_path: Path, registry_yaml: str, *, seed: int = 1) -> Iterator[SimDrill]:
    """A drill over *registry_yaml* (``sim:`` channels only); checked on the way out."""
    registry = parse_registry(registry_yaml, "faults.yaml")
    path = tmp_path / "journal.sqlite"
    capture = _Capture()
    root = logging.getLogger()
    root.addHandler(capture)
    stderr = io.StringIO()
    run: SimDrill | None = None
    try:
        with contextlib.redirect_stderr(stderr):
            with open_drill(registry, str(path), scenario="faults", seed=seed) as drill:
                run = SimDrill(drill, path, drill.ctx.run_id)
                try:
                    yield run
                finally:
                    run.simulators = list(run.runner.sims.running.values())
    finally:
        root.removeHandler(capture)
    assert run is not None
    run.logs = "\n".join(capture.lines)
    assert_no_traceback(run.logs, "log records")
    assert_no_traceback(stderr.getvalue(), "stderr")
    assert run_status(path, run.run_id) == "finished"
    with Journal(path) as journal:
        run.deliveries = journal.deliveries(run.run_id)
    assert run.deliveries, "the drill recorded nothing"
    found = compare(run.deliveries, [s.ledger for s in run.simulators], outages=[])
    assert not found, "records disagree with the ledgers:\n" + "\n".join(map(str, found))
    assert_classified(run.deliveries)  # a stage and a cause for each failure (its reason code)
    # Every reason is bilingual: Japanese, " / ", English.
    for d in run.deliveries:
        if d.reason:
            ja, sep, en = d.reason.partition(" / ")
            japanese = any("\u3040" <= c <= "\u9fff" for c in ja)
            assert sep and japanese and en.strip(), f"reason not bilingual: {d.reason!r}"
