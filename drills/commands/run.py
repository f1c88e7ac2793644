"""``tsunagari run [PATHS…]`` — run scenario files unattended (cron, systemd timers).

Wraps pytest with the drill plugin. Quiet on success (nothing on stdout or
stderr) unless ``-v``; on failure the pytest report goes to stdout and one
JSON record per problem to stderr. No colour or progress output when stdout
is not a terminal. Exit codes: 0 all requirements met, 1 a requirement
missed, 2 usage / registry / scenario error, 3 harness failure, 4 another run
holds the lock, 130/143 stopped by SIGINT/SIGTERM (:mod:`drills.core.interrupt`:
no new step or message starts, the messages in flight are watched for up to
10 s, the runs are recorded ``interrupted``, outputs and the ``run_finished``
record are still written; a second signal cuts the wait short). A signal that
comes after every drill had finished (while outputs are written) stops nothing:
the runs stay ``finished``, the exit code is the drills' own and a
``signal_after_drills`` warning says so.

The registry is refused as ``tsunagari registry check`` refuses it — structure,
the selected municipalities' secrets, and what their live channels share
(:func:`drills.core.sharing.check_sharing`: one IMAP account with two passwords,
an observer that is the sender, …) — exit 2, naming file and line. Its sharing
warnings are said once, before the first message, as ``registry_sharing`` records
(level ``warning``; its notes at level ``info``, with ``-v``); they do not fail the run.

``--dry-run`` runs the scenarios with steps that only record what they would
send (:mod:`drills.operator.dryrun`): the plan is printed as a table on stdout
and as one ``would_send`` JSON record per municipality × channel on stderr (a dry
run logs as ``-v`` does); nothing is sent, journalled or locked. Exit 0 when
the plan was made, 2 when the real run would be refused as a usage, registry
or scenario error (a live channel without ``--live`` included).

``--unannounced-window 09:00-17:00 --unannounced-seed REF [--weekdays]`` first
waits until a time drawn from the secret seed and the date inside the window
(Asia/Tokyo), then runs, recorded ``announced: false``
(:mod:`drills.operator.unannounced_wait`; a signal during the wait exits 143/130
and journals nothing). ``--unannounced WINDOW`` only records the run as
unannounced (the scheduler chose the time: systemd's ``RandomizedDelaySec``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time
from pathlib import Path
from typing import Any

from drills.core.i18n import Text
from drills.operator.options import OPTIONS

_EVENTS = {
    "missed": "requirement_missed",
    "mistake": "scenario_error",
    "harness": "harness_failure",
}


def register(sub: Any, t: Text) -> None:
    from drills.cli import add_help

    p = sub.add_parser(
        "run",
        help=t(
            "シナリオを実行する（cron・タイマー向け）", "run scenario files (for cron and timers)"
        ),
        description=t(
            "シナリオ（pytest 形式）を訓練として実行します。成功時は何も出力しません。",
            "Runs scenario files (pytest style) as drills. Prints nothing on success.",
        ),
        epilog=t(
            "終了コード: 0 全要件達成 / 1 要件未達 / 2 使い方・レジストリ・シナリオの誤り / 3 ハーネス障害 / 4 別の実行がロック中"
            " / 130・143 SIGINT・SIGTERM で中断",
            "exit codes: 0 all requirements met / 1 a requirement missed / 2 usage, registry or "
            "scenario error / 3 harness failure / 4 another run holds the lock / 130, 143 "
            "stopped by SIGINT, SIGTERM",
        ),
        add_help=False,
    )
    add_help(p, t)
    p.add_argument(
        "paths",
        nargs="*",
        metavar=t("パス", "PATH"),
        help=t(
            "シナリオのファイルかフォルダ（既定: ./scenarios）",
            "scenario files or folders (default: ./scenarios)",
        ),
    )
    for option in OPTIONS:  # the drill options, as the pytest plugin has them
        if not option.cli_global:
            p.add_argument(
                option.flag,
                dest=option.run_dest,
                help=t(option.ja, option.en),
                **option.argparse_kwargs(),
            )
    p.add_argument(
        "-k",
        dest="keyword",
        metavar="EXPR",
        help=t("実行するテストを絞る（pytest -k）", "select tests (pytest -k)"),
    )
    p.add_argument(
        "--pytest",
        dest="pytest_args",
        action="append",
        default=[],
        metavar="ARG",
        help=t("pytest にそのまま渡す引数", "extra argument passed to pytest"),
    )
    p.add_argument(
        "-v", "--verbose", action="count", default=0, help=t("詳しく表示", "verbose output")
    )
    from drills.operator.unannounced_wait import add_arguments

    add_arguments(p, t)  # --unannounced-window, --unannounced-seed, --weekdays
    p.set_defaults(func=run)


def pytest_args(args: argparse.Namespace, tty: bool) -> list[str]:
    """The pytest command line for *args* (pure; tested)."""
    out = [
        *args.paths,
        "--strict-markers",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:asyncio",  # scenarios are synchronous; the drill runs its own event loop
        "-p",
        "no:hypothesispytest",  # scenarios never fuzz; loading it costs a second a run
        # drills/ is imported before pytest starts: its (harmless) rewrite warning is noise
        "-W",
        "ignore:Module already imported so cannot be rewritten:pytest.PytestAssertRewriteWarning",
    ]
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        out += ["-p", "drills.operator.plugin"]
    for option in OPTIONS:
        out += option.to_args(getattr(args, option.run_dest, None))
    if args.keyword:
        out += ["-k", args.keyword]
    if not tty:
        out += ["--color=no", "-p", "no:terminalprogress", "-o", "console_output_style=classic"]
    out.append("-" + "v" * args.verbose if args.verbose else "-q")
    return out + list(args.pytest_args)


class Collector:
    """Watches the pytest session: failures by category, counts, the lock."""

    def __init__(self) -> None:
        self.categories: set[str] = set()
        self.failures: list[dict[str, Any]] = []
        self.collection_failed = False
        self.passed = 0
        self.failed = 0
        self.locked = ""
        self.broken = ""  # the harness could not start the drills (e.g. the lock's folder)
        self.run_ids: list[str] = []
        self.statuses: dict[str, str | None] = {}  # run id → how it was recorded
        self.cut_short = True  # did a signal stop anything (the session says; see run())
        self.tests_stopped = 0
        self.problems: list[str] = []
        self.plan: list[Any] = []  # --dry-run: drills.operator.dryrun.PlannedSend
        self.on_sharing: Any = None  # says the registry's sharing warnings and notes

    def pytest_sessionstart(self, session: Any) -> None:
        from drills.operator.plugin import SESSION

        drills = session.config.stash.get(SESSION, None)
        if drills is not None and self.on_sharing is not None:
            drills.on_sharing = self.on_sharing

    def pytest_collectreport(self, report: Any) -> None:
        if report.failed:
            self.collection_failed = True
            self.failures.append(
                {
                    "event": "scenario_error",
                    "where": report.nodeid or None,
                    "message": str(report.longrepr).strip().splitlines()[-1:],
                }
            )

    def pytest_runtest_logreport(self, report: Any) -> None:
        is_sub = hasattr(report, "context")
        if not report.failed:
            # a test a signal cut short is skipped: not passed
            self.passed += report.when == "call" and not is_sub and report.passed
            return
        self.failed += not is_sub
        props = dict(report.user_properties).get("tsunagari")
        if props is None:
            props = {
                "category": "missed" if report.when == "call" else "harness",
                "message": (report.longreprtext or "").strip().splitlines()[-1:],
            }
        self.categories.add(props["category"])
        if "municipalities" in props:  # a test's summary of its failed subtests: those are logged
            return
        self.failures.append(
            {
                "event": _EVENTS.get(props["category"], "harness_failure"),
                "test": report.nodeid,
                "subtest": report.context.msg if is_sub else None,
                **{k: v for k, v in props.items() if k != "category"},
            }
        )

    def pytest_unconfigure(self, config: Any) -> None:
        from drills.operator.plugin import BROKEN, LOCKED, SESSION

        self.locked = config.stash.get(LOCKED, "")
        self.broken = config.stash.get(BROKEN, "")
        session = config.stash.get(SESSION, None)
        if session is not None:
            self.run_ids = session.run_ids
            self.statuses = session.run_statuses
            self.cut_short = session.cut_short
            self.tests_stopped = session.tests_stopped
            self.problems = session.problems
            self.plan = session.plan


def run(args: argparse.Namespace) -> int:
    import pytest

    from drills.core import interrupt
    from drills.core.runlog import RunLog
    from drills.operator.exit_codes import exit_code

    t = Text(args.lang)
    log = RunLog(sys.stderr, verbose=bool(args.verbose or args.dry_run))
    if not args.paths:
        if not Path("scenarios").is_dir():
            log.error(
                "usage_error",
                message=t(
                    "シナリオのパスを指定してください（./scenarios がありません）",
                    "give the scenario paths (there is no ./scenarios)",
                ),
            )
            return 2
        args.paths = ["scenarios"]
    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        log.error(
            "usage_error",
            message=t(f"見つかりません: {', '.join(missing)}", f"not found: {', '.join(missing)}"),
        )
        return 2
    if args.unannounced_window or args.unannounced_seed or args.weekdays:
        from drills.operator.unannounced_wait import hold_until_drawn

        held = hold_until_drawn(args, log, t)  # waits for the drawn time (unannounced drill)
        if held is not None:
            return held
    tty = sys.stdout.isatty()
    argv = pytest_args(args, tty)
    collector = Collector()
    started = time.monotonic()
    log.info("run_started", paths=args.paths, vantage=args.vantage, registry=args.registry)
    out, err = io.StringIO(), io.StringIO()

    # pytest captures file descriptor 2 while tests run: the notice goes to the real one
    real_stderr = os.dup(2)

    def notice(stop: interrupt.Stop) -> None:  # at the first signal, before anything stops
        interrupt.say(
            log.line(
                "warning",
                "signal_received",
                signal=stop.signal,
                grace_s=stop.grace_s,
                message=t.pick(interrupt.waiting_text(stop)),
            ),
            fd=real_stderr,
        )

    def sharing(found: list[Any]) -> None:  # once, when the registry is loaded
        for finding, problem in found:
            level = "info" if finding.severity == "note" else "warning"
            if level == "warning" or log.verbose:
                record = log.line(
                    level,
                    "registry_sharing",
                    severity=finding.severity.value,
                    rule=finding.rule,
                    channels=list(finding.channels),
                    where=f"{problem.file}:{problem.line}" if problem.line else problem.file,
                    field=problem.field,
                    message=problem.why_ja if args.lang == "ja" else problem.why_en,
                )
                interrupt.say(record, fd=real_stderr)

    collector.on_sharing = sharing

    # SIGTERM/SIGINT: stop on purpose (exit 143/130)
    with interrupt.catch_signals(notice=notice) as stop:
        try:
            if args.verbose:
                status = int(pytest.main(argv, plugins=[collector]))
            else:
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                    status = int(pytest.main(argv, plugins=[collector]))
        except Exception as exc:  # the harness itself broke
            log.error("harness_failure", message=f"{type(exc).__name__}: {exc}")
            return 3
        finally:
            stop.shield()
            os.close(real_stderr)
    code = exit_code(
        status, collector.categories, collector.collection_failed, bool(collector.locked)
    )
    if collector.broken:
        code = 3
    # A signal after every drill had finished stopped nothing: the drills' own code.
    stopped = interrupt.exit_status(stop, cut_short=collector.cut_short)
    if stopped is not None:
        code = stopped
    if collector.locked:
        log.error("lock_busy", message=collector.locked)
    elif code != 0 and not args.verbose:
        sys.stdout.write(out.getvalue())
        sys.stdout.flush()
    if collector.broken:
        log.error("harness_failure", message=collector.broken)
    elif (
        not collector.locked
        and code in (2, 3)
        and not collector.failures
        and not collector.problems
        and stop.signal is None
    ):
        # pytest itself refused (bad option, no scenarios) or broke: say what it said
        lines = (err.getvalue() + out.getvalue()).splitlines()
        said = [ln for ln in lines if ln.startswith("ERROR")]
        # of pytest's own traceback, only its last line (the error), never the frames
        said += [
            ln.removeprefix("INTERNALERROR> ") for ln in lines if ln.startswith("INTERNALERROR")
        ][-1:]
        log.error(
            "usage_error" if code == 2 else "harness_failure",
            pytest_exit=status,
            message="\n".join(said) or out.getvalue().strip().splitlines()[-1:],
        )
    for failure in collector.failures:
        log.error(failure.pop("event"), **failure)
    for problem in collector.problems:
        log.error("harness_failure", message=problem)
    if stop.signal is not None:
        _say_signal(log, t, stop, collector, stopped is not None)
    if args.dry_run:  # pytest's own report (shown with -v or on failure) has the table already
        _print_plan(collector.plan, log, args.lang, table=code == 0 and not args.verbose)
    log.emit(
        "info" if code == 0 else "error",
        "run_finished",
        exit=code,
        passed=collector.passed,
        failed=collector.failed,
        runs=collector.run_ids,
        interrupted=stop.signal if stopped is not None else None,
        signal=stop.signal,
        duration_s=round(time.monotonic() - started, 3),
    )
    return code


def _say_signal(log: Any, t: Text, stop: Any, collector: Collector, cut_short: bool) -> None:
    """What the signal did, by what the journal says of each run (never more than that)."""
    by_status: dict[str, list[str]] = {}
    for run_id, status in collector.statuses.items():
        by_status.setdefault(str(status), []).append(run_id)
    interrupted = by_status.pop("interrupted", [])
    ended = [run_id for ids in by_status.values() for run_id in ids]  # finished or failed
    if not cut_short:
        log.emit(
            "warning",
            "signal_after_drills",
            signal=stop.signal,
            runs=collector.run_ids,
            statuses=collector.statuses,
            message=t(
                f"{stop.signal} を受けましたが、訓練はすべて終わった後でした。記録はそのまま"
                f"（{len(ended)} 件、中断なし）で、終了コードも訓練の結果どおりです",
                f"{stop.signal} came after every drill had finished: the {len(ended)} run(s) stay "
                "as recorded (nothing was interrupted) and the exit code is the drills' own",
            ),
        )
        return
    log.error(
        "run_interrupted",
        signal=stop.signal,
        aborted=stop.aborted,  # the grace ran out or a second signal came
        runs=collector.run_ids,
        interrupted=interrupted,
        ended=ended,  # finished (or failed) before the signal: recorded as such
        tests_stopped=collector.tests_stopped,
        message=t(
            f"{stop.signal} を受けて訓練を中断しました。interrupted として記録した訓練 "
            f"{len(interrupted)} 件（完全な訓練ではありません）、その前に終わっていた訓練 {len(ended)} 件",
            f"stopped by {stop.signal}: {len(interrupted)} run(s) recorded as interrupted (not a "
            f"complete drill); {len(ended)} had ended before the signal and stay as recorded",
        ),
    )


def _print_plan(plan: list[Any], log: Any, lang: str, *, table: bool) -> None:
    """--dry-run: the plan as a table on stdout and one ``would_send`` record each on stderr."""
    from drills.operator.dryrun_table import plan_summary, plan_table
    from drills.reporting.console import console_for

    if table:
        console = console_for(sys.stdout)
        if plan:
            console.print(plan_table(plan, lang))
        console.print(plan_summary(plan, lang), markup=False)
    for row in plan:
        log.info("would_send", **row.to_data())
