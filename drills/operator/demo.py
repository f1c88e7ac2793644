"""``tsunagari demo``: a full drill against the bundled registry on local simulators.

Writes into the output folder (default ``./tsunagari-out``): ``journal.sqlite``
(appended run after run, so the next demo can say what got worse) and the run's
files (:func:`drills.operator.outputs.write_run_outputs`: ``scorecard.json``,
``scorecard.html``, ``metrics.prom``) — the same files ``tsunagari run --out``
writes for each run.

After the drill, every journal record of the run is checked against the
simulators' ground-truth ledgers (:func:`drills.core.truth.compare`) and one line
says how many agree: ``ground truth: N records agree / M disagree``; each
disagreement is listed below it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from drills.core.delivery import Delivery
from drills.core.i18n import Text
from drills.core.journal import Journal
from drills.core.registry import Registry, load_registry
from drills.core.runner import Drill
from drills.core.truth import Disagreement, compare, summary_line
from drills.operator.options import DEFAULT_OUT, journal_in
from drills.operator.outputs import write_run_outputs
from drills.reporting.console import console_for, readiness_table

__all__ = ["DEMO_SCENARIO", "DemoRun", "demo_registry_path", "run_demo"]

DEMO_SCENARIO = "デモ訓練: 首都直下地震 初動参集"


@dataclass
class DemoRun:
    """The demo's run, and how its records compare with the simulators' ground truth."""

    run_id: str
    records: int = 0
    disagreements: list[Disagreement] = field(default_factory=list)


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

    async with Drill(
        registry, journal, scenario=DEMO_SCENARIO, lang=lang, seed=seed, on_delivery=tick
    ) as drill:
        targets = drill.targets()
        probes = await asyncio.gather(*(drill.probe(x) for x in targets))
        total = sum(len(p.recipients()) for p in probes) * repeat
        if progress is not None:
            task = progress.add_task(
                t("訓練メッセージ送信・着信確認中", "sending and confirming"), total=total
            )
        await drill.broadcast(
            t(
                "首都直下地震発生。全職員は安否を報告し、参集してください。",
                "Major earthquake: report your status and assemble.",
            ),
            targets,
            timeout=timeout,
            repeat=repeat,
            interval=0.3,
            step="初動参集",
            subject=t("初動参集", "call-up"),
        )
    assert drill.run_id is not None
    # The simulators are stopped; their ledgers stay readable.
    records = journal.deliveries(drill.run_id)
    ledgers = [sim.ledger for sim in drill.sims.running.values()]
    found = compare(records, ledgers, outages=drill.outages())
    return DemoRun(drill.run_id, len(records), found)


def run_demo(
    out_dir: Path = DEFAULT_OUT, lang: str = "ja", seed: int | None = None, repeat: int = 5
) -> int:
    """Run the demo drill; write its journal and files into *out_dir*. Exit code: 0, or 3
    when a file could not be written."""
    t = Text(lang)
    console = console_for()
    out_dir.mkdir(parents=True, exist_ok=True)
    registry = load_registry(demo_registry_path())
    journal = Journal(journal_in(out_dir))
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
    try:
        if progress is not None:
            with progress:
                done = asyncio.run(
                    drill_demo(
                        registry, journal, lang=lang, seed=seed, progress=progress, repeat=repeat
                    )
                )
        else:
            done = asyncio.run(drill_demo(registry, journal, lang=lang, seed=seed, repeat=repeat))
        outputs = write_run_outputs(journal, done.run_id, registry, out_dir, lang=lang)
    finally:
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
    return 3 if outputs.problems else 0
