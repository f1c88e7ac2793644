"""Run a drill under the oracle: keep every simulator's ledger, then compare the journal.

    with oracle_drill(plan, tmp_path) as run:
        run.drill.broadcast("…", timeout="1s", repeat=2)
    run.assert_agrees()

The drill is the operator's own API (:func:`drills.operator.scenario.open_drill`) over a
file journal; the simulators are taken from the drill's pool before it stops
them (their ledgers outlive them), and the deliveries are read back from the
journal file after the run is closed — what a user would read.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import io
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drills.core.delivery import Delivery, Outcome
from drills.core.journal import Journal
from drills.core.registry import Registry, Target, parse_registry
from drills.core.runner import Drill
from drills.core.truth import Disagreement, compare, in_outage
from drills.operator.scenario import ScenarioDrill, open_drill
from probes.sim.base import Simulator
from probes.sim.ledger import Entry, Ledger, Outage
from tests.oracle.generate import RegistryPlan

__all__ = ["DRILL_LIMIT_S", "OracleRun", "Watchdog", "mid_drill_outage", "oracle_drill"]

# No oracle drill takes more than a few seconds; past this one is stuck. The watchdog then
# cancels what runs on the drill's loop so the case fails (with the stacks) instead of
# hanging the test command.
DRILL_LIMIT_S = 30.0


class Watchdog:
    """Cancel every task on *loop* after *limit* seconds, keeping their stacks for the report."""

    def __init__(self, loop: asyncio.AbstractEventLoop, thread: threading.Thread, limit: float):
        self.loop, self.thread, self.limit = loop, thread, limit
        self.stacks: str | None = None
        self._timer = threading.Timer(limit, self._fire)
        self._timer.daemon = True

    def __enter__(self) -> Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    def _fire(self) -> None:
        out = io.StringIO()
        frame = sys._current_frames().get(self.thread.ident or -1)
        if frame is not None:
            out.write("loop thread:\n" + "".join(traceback.format_stack(frame)))

        def cancel_all() -> None:
            for task in asyncio.all_tasks(self.loop):
                out.write(f"\ntask {task.get_name()} {task.get_coro()!r}:\n")
                task.print_stack(limit=12, file=out)
                task.cancel()

        self.stacks = out.getvalue()
        done = threading.Event()
        self.loop.call_soon_threadsafe(lambda: (cancel_all(), done.set()))
        done.wait(5)
        self.stacks = out.getvalue()


@dataclass
class OracleRun:
    """One drill under the oracle: what the journal says, what the ledgers say."""

    plan: RegistryPlan
    registry: Registry
    drill: ScenarioDrill = field(init=False)
    run_id: str = ""
    simulators: list[Simulator] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    made_outages: list[Outage] = field(default_factory=list)  # what the drill itself did
    # Steps whose messages are answered (roll call, acknowledgement): the answers carry the
    # question's token, and the ledgers book the answers' refusals on the question's entry.
    answered_steps: set[str] = field(default_factory=set)
    wall_s: float = 0.0
    _disagreements: list[Disagreement] | None = None

    @property
    def runner(self) -> Drill:
        return self.drill.ctx.drill

    @property
    def ledgers(self) -> list[Ledger]:
        return [s.ledger for s in self.simulators]

    def entry(self, d: Delivery) -> Entry | None:
        for ledger in self.ledgers:
            e = ledger.entry(d.token, d.recipient)
            if e is not None:
                return e
        if d.recipient is not None:
            for ledger in self.ledgers:
                e = ledger.entry(d.token, None)
                if e is not None:
                    return e
        return None

    # ------------------------------------------------------------------ verdicts

    def disagreements(self) -> list[Disagreement]:
        """drills.core.truth's verdict, plus the oracle's own coverage rule (see :meth:`_coverage`)."""
        if self._disagreements is None:
            found = compare(self.deliveries, self.ledgers, outages=self.made_outages)
            self._disagreements = found + self._coverage()
        return self._disagreements

    def _coverage(self) -> list[Disagreement]:
        """The oracle's own rules, beside drills.core.truth's.

        ``ledger-missing``: a far end that took a message must have written it down: every
        record the provider accepted (``accepted_at``) has a ledger entry with
        ``received_at``. Without this, a simulator that keeps no ledger would make every
        comparison vacuously true.

        ``error-without-cause``: ``error`` says the drill could not look. On a simulated
        channel nothing stops the harness from looking except the far end being down
        (from the start, or taken down by the drill) while the record was watched; an
        ``error`` with no outage overlapping ``[sent, watched until]`` is the harness's
        own fault hiding the channel's real outcome.

        ``throttled-unreported``: a message the far end refused with "slow down" before it
        took it must say so (``throttled`` ≥ 1; issue 12, item 12). Not judged for answered
        steps: there the refusals may be the answers' (see ``answered_steps``).
        """
        out = []
        for d in self.deliveries:
            e = self.entry(d)
            if (
                e is not None
                and e.refusals
                and not d.throttled
                and e.received_at is not None
                and d.step not in self.answered_steps
            ):
                out.append(
                    Disagreement(
                        "throttled-unreported",
                        f"{d.municipality_code}/{d.channel_id}",
                        d.token,
                        d.recipient,
                        d.outcome.value,
                        f"the far end said 'slow down' {e.refusals}× "
                        f"({', '.join(e.refusal_codes)}) before taking it; the record says "
                        "throttled 0",
                    )
                )
            if d.outcome is Outcome.ERROR and "sent_mono" in d.extra:
                key = f"{d.municipality_code}/{d.channel_id}"
                start = float(d.extra["sent_mono"])
                end = float(d.extra.get("watched_until_mono", start))
                down = [o for ledger in self.ledgers for o in ledger.outages(key)]
                if not in_outage([*down, *self.made_outages], key, start, end):
                    out.append(
                        Disagreement(
                            "error-without-cause",
                            key,
                            d.token,
                            d.recipient,
                            d.outcome.value,
                            "the far end was up while the record was watched: " + d.reason[-160:],
                        )
                    )
            if d.accepted_at is None or d.outcome is Outcome.ERROR:
                continue
            e = self.entry(d)
            if e is None or e.received_at is None:
                fate = "no entry" if e is None else f"entry {e.fate.value}, no received_at"
                out.append(
                    Disagreement(
                        "ledger-missing",
                        f"{d.municipality_code}/{d.channel_id}",
                        d.token,
                        d.recipient,
                        d.outcome.value,
                        f"the provider accepted it but the {d.kind} ledger has {fate}",
                    )
                )
        return out

    def sent_mono(self, d: Delivery) -> float:
        if "sent_mono" in d.extra:
            return float(d.extra["sent_mono"])
        return d.sent_at - (time.time() - time.monotonic())

    def margins(self) -> dict[str, float]:
        """Per kind: the largest ``|sent + latency − visible| − error_bound_s`` over sightings."""
        out: dict[str, float] = {}
        for d in self.deliveries:
            e = self.entry(d)
            if not d.outcome.reached or d.latency_s is None or e is None or e.visible_at is None:
                continue
            gap = abs(self.sent_mono(d) + d.latency_s - e.visible_at) - (d.error_bound_s or 0.0)
            out[d.kind] = max(out.get(d.kind, float("-inf")), gap)
        return out

    def by_outcome(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for d in self.deliveries:
            out[d.outcome.value] = out.get(d.outcome.value, 0) + 1
        return out

    def explain(self, x: Disagreement) -> str:
        """One readable line: token, kind, outcome, measured vs truth, bound, reason."""
        d = next(
            (d for d in self.deliveries if d.token == x.token and d.recipient == x.recipient), None
        )
        if d is None:
            return str(x)
        e = self.entry(d)
        sent = self.sent_mono(d)
        measured = f"{d.latency_s:.4f}s" if d.latency_s is not None else "—"
        if e is None:
            truth = "no ledger entry"
        else:
            vis = f"{e.visible_at - sent:.4f}s" if e.visible_at is not None else "never"
            rec = f"{e.received_at - sent:.4f}s" if e.received_at is not None else "never"
            truth = f"{e.fate.value}, received {rec}, visible {vis}, refusals {e.refusals}"
            if e.detail:
                truth += f" ({e.detail})"
        bound = f"{d.error_bound_s:.4f}s" if d.error_bound_s is not None else "—"
        return (
            f"[{x.rule}] {x.channel} ({d.kind}) {x.token}"
            + (f" → {x.recipient}" if x.recipient else "")
            + f" step={d.step!r}\n      record: {d.outcome.value}, latency {measured}, "
            f"bound {bound}, throttled {d.throttled}, evidence {d.evidence}, reason {d.reason!r}"
            f"\n      truth:  {truth}\n      rule:   {x.detail}"
        )

    def report(self) -> str:
        found = self.disagreements()
        head = (
            f"oracle seed={self.plan.seed}: {len(found)} disagreement(s) in "
            f"{len(self.deliveries)} records {self.by_outcome()}\nregistry:\n{self.plan.describe()}"
        )
        return head + "\n" + "\n".join(self.explain(x) for x in found)

    def assert_agrees(self, *, at_least: int = 1) -> None:
        """Zero disagreements, and the drill really sent something to judge."""
        assert len(self.deliveries) >= at_least, f"only {len(self.deliveries)} records"
        found = self.disagreements()
        assert not found, self.report()


@contextlib.contextmanager
def oracle_drill(
    plan: RegistryPlan,
    tmp_path: Path,
    *,
    scenario: str = "oracle",
    limit: float = DRILL_LIMIT_S,
) -> Iterator[OracleRun]:
    """A drill (operator API) over *plan*'s registry whose ledgers and journal are kept."""
    registry = parse_registry(plan.yaml, f"oracle-{plan.seed}.yaml")
    run = OracleRun(plan, registry)
    path = tmp_path / f"journal-{plan.seed}.sqlite"
    started = time.monotonic()
    watchdog: Watchdog | None = None
    try:
        with open_drill(registry, str(path), scenario=scenario, seed=plan.seed) as drill:
            run.drill = drill
            run.run_id = drill.ctx.run_id
            background = drill.ctx.loop
            # Armed until the drill is closed too: stopping probes and simulators can hang.
            watchdog = Watchdog(background.loop, background._thread, limit).__enter__()
            try:
                yield run
            finally:
                # The pool forgets its simulators when the drill stops; their ledgers stay.
                runner = drill.ctx.drill
                run.simulators = list(runner.sims.running.values())
                made = getattr(runner, "outages", None)
                run.made_outages = list(
                    made() if callable(made) else getattr(runner, "drill_outages", [])
                )
    except (asyncio.CancelledError, concurrent.futures.CancelledError):
        if watchdog is None or watchdog.stacks is None:
            raise
        raise AssertionError(
            f"oracle seed={plan.seed}: the drill was still running after {limit:g} s "
            f"(every oracle drill takes a few seconds, closing included); its tasks were "
            f"cancelled:\n{watchdog.stacks}\nregistry:\n{plan.describe()}"
        ) from None
    finally:
        if watchdog is not None:
            watchdog.__exit__()
    if watchdog is not None and watchdog.stacks is not None:
        raise AssertionError(
            f"oracle seed={plan.seed}: the drill (or closing it) was still running after "
            f"{limit:g} s; its tasks were cancelled:\n{watchdog.stacks}"
            f"\nregistry:\n{plan.describe()}"
        )
    run.wall_s = time.monotonic() - started
    journal = Journal(path)
    try:
        run.deliveries = journal.deliveries(run.run_id)
    finally:
        journal.close()


def mid_drill_outage(
    run: OracleRun,
    text: str,
    targets: Sequence[Target],
    down: Sequence[Target],
    *,
    timeout: float,
    repeat: int = 1,
    interval: float = 0.0,
    down_after: float,
    down_for: float,
    step: str = "mid-drill-outage",
) -> Any:
    """Broadcast to *targets*; *down_after* s into it take *down* away for *down_for* s,
    while messages are in flight (the runner's own outage hooks)."""
    drill = run.runner

    async def go() -> Any:
        sending = asyncio.ensure_future(
            drill.broadcast(
                text, targets, timeout=timeout, repeat=repeat, interval=interval, step=step
            )
        )
        await asyncio.sleep(down_after)
        for t in down:
            await drill.take_down(t)
        await asyncio.sleep(down_for)
        for t in down:
            await drill.restore(t)
        return await sending

    return run.drill.ctx.loop.run(go())
