"""pytest plugin for operator scenarios: the ``drill`` fixture, markers and options.

Registered through the ``pytest11`` entry point, so ``pytest scenarios/`` (or
``tsunagari run scenarios/``) finds it. Options come from one table,
:data:`drills.operator.options.OPTIONS` — each mirrored by an ini setting, the command
line wins (``pytest --help`` lists them under "tsunagari")::

    --registry FILE        tsunagari_registry        the registry (required to drill)
    --municipality SEL     tsunagari_municipalities  drill only these codes/names/tags (repeatable)
    --live                 tsunagari_live            allow live channels (default: simulators only)
    --dry-run              tsunagari_dry_run         list what would be sent; send nothing
    --journal FILE         tsunagari_journal         SQLite journal (default: OUT/journal.sqlite)
    --out DIR              tsunagari_out             scorecards, vantages.json, summary.json
    …

One journal run per scenario file; each test's ``expect`` reports every
municipality as a subtest (see README, "Scenarios").
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from drills.core import interrupt
from drills.core.errors import HarnessError, LockBusy
from drills.core.i18n import Text, detect_lang
from drills.operator.dryrun import DryRunContext, DryRunDrill, DryRunNoResults
from drills.operator.exit_codes import ItemState, SubtestReporter, classify, parent_failure, tag
from drills.operator.markers import MARKERS, read_deadline, read_meta
from drills.operator.options import OPTIONS, SettingsError
from drills.operator.scenario import DrillContext, ScenarioDrill
from drills.operator.session import DrillSession, DrillSettings, write_text_atomic

SESSION = pytest.StashKey[DrillSession]()
STATE = pytest.StashKey[ItemState]()
LOCKED = pytest.StashKey[str]()
BROKEN = pytest.StashKey[str]()  # the harness could not start the drills (exit 3)
GIVEN = pytest.StashKey[bool]()  # any tsunagari option or ini setting given (report header)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tsunagari", "Tsunagari drills / 繋がり訓練")
    for option in OPTIONS:
        help_text = option.help()
        group.addoption(option.flag, dest=option.dest, help=help_text, **option.argparse_kwargs())
        parser.addini(option.ini, help_text, **option.ini_kwargs())


def _raw_settings(config: pytest.Config) -> tuple[dict[str, Any], bool]:
    """Option values (command line first, then ini) and whether any was given at all.

    Relative paths from the command line are relative to the current folder; from the
    ini file, to the ini file's folder.
    """
    raw: dict[str, Any] = {}
    given = False
    ini_dir = config.inipath.parent if config.inipath else config.rootpath
    for option in OPTIONS:
        value = config.getoption(option.dest)
        if value is None:
            value = config.getini(option.ini)
            if option.kind == "path" and value and not Path(str(value)).expanduser().is_absolute():
                value = str(ini_dir / str(value))
        given |= value not in (None, "", [], False)
        raw[option.name] = value
    return raw, given


def pytest_configure(config: pytest.Config) -> None:
    for description in MARKERS.values():
        config.addinivalue_line("markers", description)
    raw, given = _raw_settings(config)
    raw["lang"] = raw["lang"] or detect_lang()
    try:
        settings = DrillSettings.build(raw, Path.cwd())
        settings.check_metrics()
    except SettingsError as exc:
        raise pytest.UsageError(
            Text(raw["lang"] if raw["lang"] in ("ja", "en") else "en").pick(str(exc))
        ) from None
    drills = DrillSession(settings)
    drills.on_sharing = lambda found: _say_sharing(config, found, settings.lang)
    config.stash[SESSION] = drills
    config.stash[LOCKED] = ""
    config.stash[GIVEN] = given


def _say_sharing(config: pytest.Config, found: list[Any], lang: str) -> None:
    """The registry's sharing warnings and notes, once, when it is loaded (``tsunagari run``
    says them as JSON records instead: its collector replaces this)."""
    from drills.core.sharing import said

    tr = config.pluginmanager.get_plugin("terminalreporter")
    for finding, problem in found:
        if tr is not None:
            tr.write_line(f"tsunagari: {said(finding, problem, lang)}")


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    if not config.stash.get(GIVEN, False):
        return None
    s = config.stash[SESSION].settings
    return [
        f"tsunagari: registry={s.registry} live={s.live} vantage={s.vantage} lang={s.lang}",
        f"tsunagari: municipalities={','.join(s.select) or 'all'} journal={s.journal_shown} out={s.out}",
    ] + (["tsunagari: dry run (--dry-run): nothing is sent"] if s.dry_run else [])


def _drills(item: pytest.Item) -> bool:
    return "drill" in getattr(item, "fixturenames", ())


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> Generator[None, object, object]:
    drills = session.config.stash[SESSION]
    if (
        any(_drills(item) for item in session.items)
        and not session.config.option.collectonly
        and not drills.settings.dry_run  # a dry run sends nothing and writes nothing
    ):
        try:
            drills.acquire_lock()
        except LockBusy as exc:
            message = Text(drills.settings.lang).pick(str(exc))
            session.config.stash[LOCKED] = message
            pytest.exit(message, returncode=4)
        except HarnessError as exc:  # e.g. the lock's folder cannot be written
            message = str(exc)  # "日本語 / English", both: it is read by whoever fixes it
            session.config.stash[BROKEN] = message
            pytest.exit(message, returncode=3)
    try:
        return (yield)
    finally:
        stop = interrupt.current()
        if stop is not None:  # outputs and the summary are written whatever comes now
            stop.shield()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item) -> bool | None:
    """After SIGTERM/SIGINT (:mod:`drills.core.interrupt`) no further test starts."""
    stop = interrupt.current()
    if stop is not None and stop.signal is not None:
        item.session.shouldstop = _stopped_by(stop.signal, item.config)
        item.config.stash[SESSION].tests_stopped += _drills(item)
        return True
    return None


def _stopped_by(signal_name: str, config: pytest.Config) -> str:
    return Text(config.stash[SESSION].settings.lang).pick(str(interrupt.Interrupted(signal_name)))


@pytest.fixture(scope="module")
def _tsunagari_context(
    request: pytest.FixtureRequest,
) -> Iterator[DrillContext | DryRunContext]:
    """One journal run per scenario file (with ``--dry-run``: one plan, nothing opened)."""
    session = request.config.stash[SESSION]
    module = request.module
    meta = read_meta(request.node, module.__doc__, Path(str(request.path)).stem)
    if session.settings.dry_run:
        yield session.open_dry_run(meta, str(request.path))
        return
    ctx = session.open_context(meta, str(request.path))
    yield ctx
    session.close_context(ctx)


@pytest.fixture
def drill(
    request: pytest.FixtureRequest, _tsunagari_context: DrillContext | DryRunContext
) -> ScenarioDrill | DryRunDrill:
    """The operator's drill: ``drill.broadcast(...)``, ``.fallback``, ``.outage``, ``.roll_call``,
    ``.acknowledge``; each result's ``expect(...)`` reports every municipality as a subtest."""
    if isinstance(_tsunagari_context, DryRunContext):  # --dry-run: the steps are recorded
        name = request.node.name.removeprefix("test_")
        return DryRunDrill(_tsunagari_context, deadline=read_deadline(request.node), name=name)
    state = ItemState()
    request.node.stash[STATE] = state
    subtests = request.getfixturevalue("subtests")  # built into pytest >= 9
    reporter = SubtestReporter(subtests, _tsunagari_context.lang, state)
    name = request.node.name.removeprefix("test_")
    return ScenarioDrill(
        _tsunagari_context, reporter=reporter, deadline=read_deadline(request.node), name=name
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, Any]:
    report = yield
    if not _drills(item):
        return report
    lang = item.config.stash[SESSION].settings.lang
    state = item.stash.get(STATE, None)
    stop = interrupt.current()
    if stop is not None and stop.signal is not None:
        item.session.shouldstop = _stopped_by(stop.signal, item.config)
        if call.excinfo is not None and call.excinfo.errisinstance(interrupt.Interrupted):
            # not judged: the steps after the signal were never run
            item.config.stash[SESSION].tests_stopped += 1
            report.outcome = "skipped"
            where = item.location[1] or 0
            report.longrepr = (str(item.path), where, _stopped_by(stop.signal, item.config))
            return report
    if call.excinfo is not None and call.excinfo.errisinstance(DryRunNoResults):
        # --dry-run: the scenario read a step's results; the steps before are planned
        report.outcome = "skipped"
        why = call.excinfo.value
        assert isinstance(why, DryRunNoResults)
        report.longrepr = (str(item.path), item.location[1] or 0, why.render(lang))
        return report
    if call.excinfo is not None and report.failed:
        c = classify(call.excinfo, item, lang)
        if c.text is not None:
            report.longrepr = c.text
        tag(report, c)
    elif (
        call.when == "call"
        and report.passed
        and state is not None
        and not state.in_subtest
        and state.bad
    ):
        c = parent_failure(state, lang)
        report.outcome = "failed"
        report.longrepr = c.text
        tag(report, c)
    return report


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    drills = config.stash.get(SESSION, None)
    if drills is not None and drills.settings.dry_run and drills.dry_runs:
        from drills.operator.dryrun_table import render_plan

        terminalreporter.write(render_plan(drills.plan, drills.settings.lang))
        return
    if drills is None or not drills.contexts:
        return
    ja = drills.settings.lang == "ja"
    terminalreporter.section("tsunagari" if not ja else "繋がり 訓練記録")
    for ctx in drills.contexts:
        terminalreporter.write_line(
            f"{ctx.run_id}  {ctx.scenario}  vantage={ctx.vantage}  journal={drills.settings.journal_shown}"
        )


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    drills = session.config.stash.get(SESSION, None)
    if drills is None:
        return
    run_ids = drills.run_ids
    problems = drills.finish()
    signal = getattr(interrupt.current(), "signal", None)
    out = drills.settings.out
    if out is not None and run_ids:
        summary = {
            "exitstatus": int(exitstatus),
            "runs": run_ids,
            "journal": drills.settings.journal_shown,
            "vantage": drills.settings.vantage,
            "problems": problems,
            # a signal after every drill had finished stopped nothing: not "interrupted"
            "interrupted": signal if drills.cut_short else None,
            "signal": signal,
        }
        try:
            write_text_atomic(
                out / "summary.json", json.dumps(summary, ensure_ascii=False, indent=2) + "\n"
            )
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            problems.append(
                f"summary.json: {out} に書き込めません（{why}） / cannot write into {out} ({why})"
            )
    if problems:
        tr = session.config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None:
            for problem in problems:
                tr.write_line(f"tsunagari: {problem}", red=True)
        if session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
