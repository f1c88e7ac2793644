"""``tsunagari demo``: a full drill against the bundled registry on local simulators.

Writes into the output folder (default ``./tsunagari-out``): ``journal.sqlite``
(appended run after run, so the next demo can say what got worse) and the run's
files (:func:`drills.operator.outputs.write_run_outputs`: ``scorecard.json``,
``scorecard.html``, ``metrics.prom``) — the same files ``tsunagari run --out``
writes for each run. While it drills it holds the folder's run lock (the lock
``tsunagari run`` takes for a journal there), so two demos, or a demo and a run,
never drill into one folder at once.

The simulators run in a child process of their own
(:class:`drills.core.simulators.ProcessSimulatorPool`), so what the demo measures is
the harness's work alone; the child is stopped when the drill ends (signals
included) and hands its ledgers back.

After the drill, every journal record of the run is checked against the
simulators' ground-truth ledgers (:func:`drills.core.truth.compare`) and one line
says how many agree: ``ground truth: N records agree / M disagree``; each
disagreement is listed below it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from drills.core import evloop, interrupt
from drills.core.delivery import Delivery
from drills.core.errors import HarnessError, LockBusy
from drills.core.i18n import Text
from drills.core.journal import Journal, JournalUnusable, RunStatus, database_errors, open_journal
from drills.core.journal.target import redact_target
from drills.core.lock import run_lock
from drills.core.registry import Registry, load_registry
from drills.core.runner import Drill
from drills.core.simulators import ProcessSimulatorPool
from drills.core.truth import Disagreement, compare, summary_line
from drills.operator.options import DEFAULT_OUT, journal_in
from drills.operator.outputs import write_run_outputs
from drills.reporting.console import console_for, readiness_table

__all__ = ["DEMO_SCENARIO", "DemoRun", "demo_registry_path", "plan_demo", "run_demo"]

DEMO_SCENARIO = "デモ訓練: 首都直下地震 初動参集"


@dataclass
class DemoRun:
    """The demo's run, and how its records compare with the simulators' ground truth."""

    run_id: str
    records: int = 0
    disagreements: list[Disagreement] = field(default_factory=list)
    begun: bool = True
    """Is the run in the journal (False when a signal stopped it before the first record)?"""
    status: str | None = None
    """How the run was recorded (``interrupted`` only when a signal cut it short)."""


def demo_registry_path() -> Path:
    return Path(str(files("drills") / "data" / "demo_registry.yaml"))


async def drill_demo(
    registry: Registry,
    journal: Journal,
    *,
    lang: str = "ja",
    repeat: int = 5,
    timeout: float = 8.0,
    seed: int | None = None,
    progress: Progress | None = None,
) -> DemoRun:
    """Run the demo scenario; check its records against the ground truth."""
    task = None
    t = Text(lang)

    def tick(_: Delivery) -> None:
        if progress is not None and task is not None:
            progress.advance(task)

    drill = Drill(registry, journal, scenario=DEMO_SCENARIO, lang=lang, seed=seed, on_delivery=tick)
    drill.sims = ProcessSimulatorPool(seed)  # the far ends' work is not the harness's
    try:
        async with drill:
            targets = drill.targets()
            probes = await asyncio.gather(*(drill.probe(x) for x in targets))
            total = sum(len(p.recipients()) for p in probes) * repeat
            if progress is not None:
                task = progress.add_task(
                    t("訓練メッセージ送信・着信確認中", "sending and confirming"), total=total
                )
            text, subject = _demo_text(t)
            await drill.broadcast(
                text,
                targets,
                timeout=timeout,
                repeat=repeat,
                interval=0.3,
                step="初動参集",
                subject=subject,
            )
    except (asyncio.CancelledError, interrupt.Interrupted):
        if not interrupt.stopping():
            raise
        # SIGTERM/SIGINT: the run is recorded ``interrupted``; its records are still judged
    assert drill.run_id is not None
    if not drill.begun:  # stopped before the first record: nothing is in the journal
        return DemoRun(drill.run_id, begun=False)
    # The simulators' process is stopped; their ledgers came back from it.
    records = journal.deliveries(drill.run_id)
    ledgers = [sim.ledger for sim in drill.sims.running.values()]
    found = compare(records, ledgers, outages=drill.outages())
    return DemoRun(drill.run_id, len(records), found, status=drill.status)


def _demo_text(t: Text) -> tuple[str, str]:
    """The demo broadcast's text and subject."""
    return (
        t(
            "首都直下地震発生。全職員は安否を報告し、参集してください。",
            "Major earthquake: report your status and assemble.",
        ),
        t("初動参集", "call-up"),
    )


def plan_demo(lang: str = "ja", repeat: int = 5) -> int:
    """``tsunagari demo --dry-run``: print what the demo would send; start, send and write
    nothing (:mod:`drills.operator.dryrun`). Exit code 0."""
    from drills.operator.dryrun import DryRunContext
    from drills.operator.dryrun_table import plan_summary, plan_table

    t = Text(lang)
    registry = load_registry(demo_registry_path())
    ctx = DryRunContext(registry, scenario=DEMO_SCENARIO, lang=lang)
    text, subject = _demo_text(t)
    for target in registry.targets():
        ctx.add("初動参集", "broadcast", target, text, subject=subject, repeat=repeat)
    console = console_for()
    console.print(plan_table(ctx.plan, lang))
    console.print(plan_summary(ctx.plan, lang), markup=False)
    return 0


class _Abort:
    """Cancels the demo's main task from a signal handler (thread-safe, after the loop ends
    a no-op)."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task[Any] | None = None

    def bind(self) -> None:
        self.loop, self.task = asyncio.get_running_loop(), asyncio.current_task()

    def __call__(self) -> None:
        if self.loop is not None and self.task is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                self.loop.call_soon_threadsafe(self.task.cancel)


def _notice(stop: interrupt.Stop) -> None:
    """At the first signal: what happens now, ``日本語 / English`` as two lines on stderr
    (safe inside a signal handler)."""
    for half in interrupt.waiting_text(stop).split(" / ", 1):
        interrupt.say(half)


def _error(message: str) -> None:
    """A bilingual error (``日本語 / English``) on stderr, one line each."""
    for half in message.split(" / ", 1):
        print(half, file=sys.stderr)


def run_demo(
    out_dir: Path = DEFAULT_OUT,
    lang: str = "ja",
    seed: int | None = None,
    repeat: int = 5,
    journal: Path | str | None = None,
) -> int:
    """Run the demo drill; write its journal and files into *out_dir* (the journal: into
    *journal* when given — a file or a ``postgresql://`` URL, locked per vantage there).

    Exit codes: 0 done; 3 the folder, journal or a file cannot be written (a full disk
    included: the journal keeps every record committed before, no output file is left
    half-written); 4 another drill holds the folder's run lock (the same lock as
    ``tsunagari run`` with its journal there); 130/143 stopped by SIGINT/SIGTERM
    (:mod:`drills.core.interrupt`: the run is recorded ``interrupted`` and its files are
    still written).
    """
    registry = load_registry(demo_registry_path())
    journal_path = journal if journal is not None else journal_in(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        lock = run_lock(journal_path).acquire()
    except LockBusy as exc:
        _error(str(exc))
        return 4
    except HarnessError as exc:
        _error(str(exc))
        return 3
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        _error(
            f"出力フォルダ {out_dir} を作れません（{why}） / cannot make the output folder "
            f"{out_dir} ({why})"
        )
        return 3
    abort = _Abort()
    try:
        with interrupt.catch_signals(abort=abort, notice=_notice) as stop:
            return _drill_and_write(
                registry, journal_path, out_dir, lang, seed, repeat, stop, abort
            )
    finally:
        lock.release()


def _drill_and_write(
    registry: Registry,
    journal_path: Path | str,
    out_dir: Path,
    lang: str,
    seed: int | None,
    repeat: int,
    stop: interrupt.Stop,
    abort: _Abort,
) -> int:
    t = Text(lang)
    console = console_for()
    try:
        journal = open_journal(journal_path)
        failures: tuple[type[BaseException], ...] = (*database_errors(), OSError)
    except JournalUnusable as exc:
        _error(str(exc))
        return 3
    console.print(
        t(
            f"繋がり デモ訓練: {len(registry.municipalities)} 団体 × チャット・メール・SMS（ローカルのシミュレータ）",
            f"Tsunagari demo drill: {len(registry.municipalities)} municipalities × chat, mail, SMS (local simulators)",
        )
    )
    progress = None
    if console.is_terminal:
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )

    async def main() -> DemoRun:
        abort.bind()
        return await drill_demo(
            registry, journal, lang=lang, seed=seed, progress=progress, repeat=repeat
        )

    try:
        with progress if progress is not None else contextlib.nullcontext():
            done = evloop.run(main())  # the drill's kind of loop (drills.core.evloop)
        stop.shield()  # from here on the files are written whatever comes
        if not done.begun:
            _error(
                f"{stop.signal} を受けたため、送信前に中断しました（記録・出力なし） / stopped by "
                f"{stop.signal} before anything was sent (nothing recorded or written)"
            )
            return interrupt.exit_status(stop) or 3
        try:
            outputs = write_run_outputs(journal, done.run_id, registry, out_dir, lang=lang)
        except OSError as exc:  # scorecard.json: the run's record for people
            why = exc.strerror or type(exc).__name__
            _error(
                f"出力フォルダ {out_dir} に書き込めません（{why}）。記録 {done.run_id} は残っています / "
                f"cannot write into the output folder {out_dir} ({why}); run {done.run_id} is "
                "in the journal"
            )
            return 3
    except JournalUnusable as exc:
        _error(str(exc))
        return 3
    except failures as exc:  # the disk filled up, the folder went read-only, the server went
        _error(str(JournalUnusable.from_error(redact_target(journal_path), exc)))
        return 3
    finally:
        with contextlib.suppress(*database_errors()):
            journal.close()
    console.print(readiness_table(outputs.scorecard, lang))
    console.print(summary_line(done.disagreements, done.records, lang), markup=False)
    for item in done.disagreements[:20]:
        console.print(f"  {item}", markup=False)
    console.print(t(f"出力: {out_dir}/", f"output: {out_dir}/"))
    for problem in outputs.problems:
        console.print(
            t(f"出力できませんでした: {problem}", f"not written: {problem}"), markup=False
        )
    # A signal after the drill had finished (while its files were written) stopped nothing.
    stopped = interrupt.exit_status(stop, cut_short=done.status == RunStatus.INTERRUPTED)
    if stop.signal is not None and stopped is None:
        _error(
            f"{stop.signal} を受けましたが、訓練 {done.run_id} は終わった後でした（記録は "
            f"{done.status} のまま） / {stop.signal} came after run {done.run_id} had finished "
            f"(it stays {done.status})"
        )
    if stopped is not None:
        _error(
            f"{stop.signal} を受けて訓練を中断しました。記録 {done.run_id} は interrupted（途中までの結果で、"
            f"完全な訓練ではありません） / stopped by {stop.signal}: run {done.run_id} is recorded as "
            "interrupted (partial results, not a complete drill)"
        )
        return stopped
    return 3 if outputs.problems else 0
