"""The drills of one pytest session: settings, registry, journal, loop, lock, outputs.

Built by the pytest plugin from its options (each mirrored by an ini setting,
command line first). Nothing is loaded until a test asks for ``drill``: a
session that never drills opens no journal, starts no thread, takes no lock.

After the session, with ``--out DIR``::

    DIR/runs/<run_id>/scorecard.json    one folder per scenario file run, with what
                      scorecard.html    :func:`drills.operator.outputs.write_run_outputs` writes
                      metrics.prom      (the same files as ``tsunagari demo``)
    DIR/vantages.json                   every (scenario, vantage) of the journal side by side
    DIR/summary.json                    the session's outcome (written by the plugin)
"""

from __future__ import annotations

import importlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drills.core.background import BackgroundLoop
from drills.core.journal import Journal, RunStatus, open_journal
from drills.core.lock import PgRunLock, RunLock, run_lock
from drills.core.problem import Problem
from drills.core.registry import Registry, load_registry
from drills.core.requirements import ScenarioMistake
from drills.core.sharing import Finding, check_sharing
from drills.core.unannounced import unannounced_meta
from drills.operator.dryrun import DryRunContext, PlannedSend
from drills.operator.markers import ScenarioMeta
from drills.operator.options import (
    DEFAULT_JOURNAL,
    DEFAULT_OUT,
    JOURNAL_ENV,
    OPTIONS,
    OPTIONS_BY_NAME,
    SettingsError,
    journal_in,
)
from drills.operator.scenario import DrillContext
from drills.steps.selection import check_selection

__all__ = ["METRICS_EXPORTS", "DrillSession", "DrillSettings", "SettingsError", "textfile_paths"]

# The metrics exporters: option → (module, function).
METRICS_EXPORTS = {
    "push_gateway": ("drills.metrics.push", "push_run"),
    "textfile": ("drills.metrics.push", "write_textfile"),
}


@dataclass(frozen=True)
class DrillSettings:
    """The effective drill settings: one field per row of :data:`drills.operator.options.OPTIONS`."""

    registry: Path | None = None
    select: tuple[str, ...] = ()
    live: bool = False
    dry_run: bool = False
    journal: Path | str = DEFAULT_JOURNAL  # a file, or a URL (postgresql://…)
    out: Path | None = None
    push_gateway: str | None = None
    textfile: Path | None = None
    lang: str = "ja"
    vantage: str = "default"
    lock: Path | None = None
    seed: int | None = None
    unannounced: str | None = None  # drills.core.unannounced.parse_marker

    @property
    def lock_path(self) -> Path:
        return self.lock or Path(str(self.journal) + ".lock")

    @property
    def journal_shown(self) -> str:
        """The journal as messages show it (a URL's password masked)."""
        from drills.core.journal.target import redact_target

        return redact_target(self.journal)

    @classmethod
    def build(cls, raw: dict[str, Any], base: Path) -> DrillSettings:
        """Validate raw values (strings from the command line or ini); paths relative to *base*.

        Raises :class:`~drills.operator.options.SettingsError` for a bad value.
        """
        values = {option.name: option.parse(raw.get(option.name), base) for option in OPTIONS}
        if values["journal"] is None and os.environ.get(JOURNAL_ENV):
            values["journal"] = OPTIONS_BY_NAME["journal"].parse(os.environ[JOURNAL_ENV], base)
        if values["journal"] is None:  # kept beside the other outputs
            values["journal"] = journal_in(values["out"] or base / DEFAULT_OUT)
        return cls(**values)

    def check_metrics(self) -> None:
        """Metrics options need the metrics exporters; say plainly when they are not there."""
        for option, (module_name, fn) in METRICS_EXPORTS.items():
            if getattr(self, option) is None:
                continue
            flag = "--" + option.replace("_", "-")
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                module = None
            if module is None or not callable(getattr(module, fn, None)):
                raise SettingsError(
                    f"{flag}: メトリクスの出力はまだ使えません（{module_name}.{fn} がありません）"
                    f" / {flag} is not available yet ({module_name}.{fn} is missing)"
                )


def textfile_paths(target: Path, runs: list[tuple[str, str, str]]) -> dict[str, Path]:
    """Where each run's metrics go: one ``.prom`` file per scenario file and vantage.

    *target* is a ``.prom`` file (one run) or node_exporter's textfile folder;
    *runs* are ``(run_id, scenario file, vantage)``.

    >>> textfile_paths(Path("/m/drill.prom"), [("r1", "/s/test_a.py", "LAN")])
    {'r1': PosixPath('/m/drill.prom')}
    >>> sorted(textfile_paths(Path("/m"), [("r1", "/s/test_a.py", "LAN"), ("r2", "/s/test_b.py", "LAN")]).values())
    [PosixPath('/m/tsunagari-test_a-LAN.prom'), PosixPath('/m/tsunagari-test_b-LAN.prom')]
    """
    if target.suffix == ".prom" and len(runs) == 1:
        return {runs[0][0]: target}
    folder, prefix = (
        (target.parent, target.stem) if target.suffix == ".prom" else (target, "tsunagari")
    )
    out = {}
    for run_id, file, vantage in runs:
        slug = re.sub(r"[^\w.-]+", "_", f"{Path(file).stem}-{vantage}")
        out[run_id] = folder / f"{prefix}-{slug}.prom"
    return out


def _os_problem(folder: Path, exc: OSError) -> str:
    why = exc.strerror or type(exc).__name__
    return f"{folder} に書き込めません（{why}） / cannot write into {folder} ({why})"


def write_text_atomic(path: Path, text: str) -> None:
    """Write *path* whole or not at all (a temporary file renamed; removed on failure)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class DrillSession:
    """Lazily built resources shared by every scenario file of a pytest session."""

    def __init__(self, settings: DrillSettings) -> None:
        self.settings = settings
        self.loop: BackgroundLoop | None = None
        self.journal: Journal | None = None
        self.lock: RunLock | PgRunLock | None = None
        self.contexts: list[DrillContext] = []
        self.dry_runs: list[DryRunContext] = []  # --dry-run: planned, never sent
        self._registry: Registry | None = None
        self._registry_error: Exception | None = None
        self.problems: list[str] = []  # output or export failures after the run
        self.tests_stopped = 0  # tests a signal kept from running or cut short (the plugin counts)
        self.sharing: list[tuple[Finding, Problem]] = []  # the registry's warnings and notes
        self.on_sharing: Callable[[list[tuple[Finding, Problem]]], None] | None = None
        """Says :attr:`sharing` once, when the registry is loaded (before the first send)."""

    # ------------------------------------------------------------------ resources

    def registry(self) -> Registry:
        """The validated registry (loaded once; the same error for every scenario if broken)."""
        if self._registry is not None:
            return self._registry
        if self._registry_error is not None:
            raise self._registry_error
        try:
            if self.settings.registry is None:
                raise ScenarioMistake(
                    "レジストリが指定されていません: --registry ファイル か ini の tsunagari_registry で指定してください",
                    "no registry given: use --registry FILE or the ini setting tsunagari_registry",
                )
            # Secrets of the selected municipalities only (issue 19): others may be unset here.
            reg = load_registry(self.settings.registry, check_secrets=False)
            check_selection(reg, self.settings.select)
            targets = reg.targets(self.settings.select)
            reg.check_secrets(targets)
            # what the drilled channels share: errors refuse the drill as registry check does
            self.sharing = check_sharing(reg, targets)
        except Exception as exc:
            self._registry_error = exc
            raise
        self._registry = reg
        if self.sharing and self.on_sharing is not None:
            self.on_sharing(self.sharing)
        return reg

    def _journal(self) -> tuple[BackgroundLoop, Journal]:
        if self.loop is None:
            self.loop = BackgroundLoop()
        if self.journal is None:
            self.journal = self.loop.call(open_journal, self.settings.journal)
        return self.loop, self.journal

    def acquire_lock(self) -> None:
        if self.lock is None:
            s = self.settings
            self.lock = run_lock(s.journal, s.vantage, s.lock).acquire()

    def open_context(self, meta: ScenarioMeta, file: str) -> DrillContext:
        """Start the journal run of one scenario file."""
        registry = self.registry()
        loop, journal = self._journal()
        s = self.settings
        ctx = DrillContext(
            loop,
            registry,
            journal,
            scenario=meta.name,
            vantage=s.vantage,
            live=s.live,
            lang=s.lang,
            seed=s.seed,
            selection=s.select,
            meta={
                "file": file,
                **meta.journal_meta(),
                "select": list(s.select),
                **unannounced_meta(s.unannounced),  # announced: false (absent = announced)
            },
        )
        self.contexts.append(ctx)
        return ctx

    def close_context(self, ctx: DrillContext) -> None:
        ctx.close()

    def open_dry_run(self, meta: ScenarioMeta, file: str) -> DryRunContext:
        """A scenario file's dry run (``--dry-run``): no journal, loop, lock or probe is opened."""
        s = self.settings
        ctx = DryRunContext(
            self.registry(),
            scenario=meta.name,
            live=s.live,
            lang=s.lang,
            selection=s.select,
            vantage=s.vantage,
            meta={"file": file, **meta.journal_meta()},
        )
        self.dry_runs.append(ctx)
        return ctx

    @property
    def plan(self) -> list[PlannedSend]:
        """Every send the dry run planned, in order."""
        return [row for ctx in self.dry_runs for row in ctx.plan]

    # ------------------------------------------------------------------ the end

    @property
    def run_ids(self) -> list[str]:
        return [c.run_id for c in self.contexts if c.begun]  # a refused run is not in the journal

    @property
    def run_statuses(self) -> dict[str, str | None]:
        """Each journal run and how it was recorded when its scenario file closed."""
        return {c.run_id: c.status for c in self.contexts if c.begun}

    @property
    def cut_short(self) -> bool:
        """Did a signal stop anything: a run recorded ``interrupted``, a test kept from running?

        False when the signal came after every drill had finished (exit code and summary
        then say what the drills did: :func:`drills.core.interrupt.exit_status`).
        """
        statuses = self.run_statuses.values()
        return self.tests_stopped > 0 or any(s == RunStatus.INTERRUPTED for s in statuses)

    def finish(self) -> list[str]:
        """Write outputs and export metrics; close the journal, loop and lock. Problems → list."""
        problems: list[str] = []
        try:
            if self.loop is not None and self.journal is not None and self.contexts:
                if self.settings.out is not None:
                    problems += self.loop.call(self._write_outputs)
                problems += self.loop.call(self._export_metrics)
        finally:
            if self.loop is not None:
                if self.journal is not None:
                    self.loop.call(self.journal.close)
                self.loop.close()
            if self.lock is not None:
                self.lock.release()
        self.problems = problems
        return problems

    def _write_outputs(self) -> list[str]:
        from drills.operator.outputs import write_run_outputs
        from drills.reporting.vantage import vantage_view

        assert self.journal is not None and self.settings.out is not None
        out, problems = self.settings.out, []
        for run_id in self.run_ids:
            try:
                done = write_run_outputs(
                    self.journal,
                    run_id,
                    self._registry,
                    out / "runs" / run_id,
                    lang=self.settings.lang,
                )
            except OSError as exc:  # the folder cannot be written: say so, do not crash
                problems.append(f"output {run_id}: {_os_problem(out, exc)}")
                continue
            problems += [f"output {run_id}: {problem}" for problem in done.problems]
        try:
            write_text_atomic(
                out / "vantages.json",
                json.dumps(vantage_view([self.journal]), ensure_ascii=False, indent=2) + "\n",
            )
        except OSError as exc:
            problems.append(f"vantages.json: {_os_problem(out, exc)}")
        return problems

    def _export_metrics(self) -> list[str]:
        s = self.settings
        problems: list[str] = []
        if s.push_gateway is None and s.textfile is None:
            return problems
        push: Any = importlib.import_module("drills.metrics.push")
        files = {}
        if s.textfile is not None:
            runs = [
                (c.run_id, str(c.meta.get("file", c.scenario)), c.vantage)
                for c in self.contexts
                if c.begun
            ]
            files = textfile_paths(s.textfile, runs)
        for ctx in self.contexts:
            if not ctx.begun:  # refused before anything was sent: nothing to export
                continue
            try:
                if s.push_gateway is not None:
                    push.push_run(self.journal, ctx.run_id, s.push_gateway, registry=self._registry)
                if ctx.run_id in files:
                    push.write_textfile(
                        self.journal, ctx.run_id, files[ctx.run_id], registry=self._registry
                    )
            except Exception as exc:  # the drill happened; reporting it failed
                problems.append(f"metrics ({ctx.scenario}): {type(exc).__name__}: {exc}")
        return problems
