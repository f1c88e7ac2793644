"""``tsunagari surge REGISTRY --channel CODE/ID …`` — load one channel, probing it meanwhile.

Headless. One machine by default (``--processes N`` for more Locust
processes); ``--master`` spreads the load over workers (``--local-workers N``
started here, and/or ``tsunagari surge --worker --master-host HOST …`` on
other machines); the master binds to 127.0.0.1 unless ``--bind`` says
otherwise. Ctrl-C / SIGTERM stops the load cleanly; what was measured is kept.

Exit codes: 0 the SLO held at every step · 1 it broke (or the surge was
stopped early) · 2 usage, registry error or surge refused · 3 harness failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from drills.cli import default_journal, journal_argument
from drills.core.i18n import Text

DEFAULT_SCENARIO = "サージ訓練"


# (group, flags, 日本語, English, argparse keywords) — the options, in help order.
_OPTIONS: list[tuple[str, str, str, str, dict[str, Any]]] = [
    ("", "registry", "レジストリの YAML ファイル", "registry YAML file", {"nargs": "?"}),
    ("", "--channel", "対象チャネル: 団体コード/チャネルID（例 131211/chat）", "target: CODE/CHANNEL (e.g. 131211/chat)", {}),
    ("ramp", "--rates", "各段の負荷（通/秒、カンマ区切り）例 10,50,100", "offered rate per step (msg/s, comma-separated), e.g. 10,50,100", {}),
    ("ramp", "--ramp", "開始:最大:段数 例 10:200:5", "START:PEAK:STEPS, e.g. 10:200:5", {}),
    ("ramp", "--step", "各段の長さ（既定 10s）", "duration of each step (default 10s)", {"default": "10s"}),
    ("ramp", "--rest", "最初の平常時の長さ（既定は --step と同じ、0 で省略）", "at-rest baseline before the ramp (default: as --step; 0 skips it)", {}),
    ("ramp", "--users", "負荷ユーザー数（既定は最大負荷から算出）", "load users (default: from the peak rate)", {"type": int}),
    ("measure", "--probes", "各段の計測メッセージ数（既定 3）", "probe messages per step (default 3)", {"type": int, "default": 3}),
    ("measure", "--timeout", "計測メッセージの待ち時間", "how long each probe may take", {}),
    ("measure", "--slo", "遅延 SLO の上書き（例 30s）", "override the latency SLO (e.g. 30s)", {}),
    ("where", "--processes", "このマシンの Locust プロセス数", "Locust processes on this machine", {"type": int, "default": 1}),
    ("where", "--master", "分散実行のマスターになる", "be the master of a distributed run", {"action": "store_true"}),
    ("where", "--local-workers", "マスターと同じマシンで起動するワーカー数", "workers to start on this machine (with --master)", {"type": int, "default": 0}),
    ("where", "--expect-workers", "待つワーカーの総数（既定 --local-workers）", "workers to wait for in all (default: --local-workers)", {"type": int}),
    ("where", "--bind", "マスターの待ち受けアドレス（既定 127.0.0.1）", "master bind address (default 127.0.0.1)", {"default": "127.0.0.1"}),
    ("where", "--port", "マスターのポート", "master port", {"type": int}),
    ("where", "--worker", "ワーカーとしてマスターに接続する", "run as a worker of a master", {"action": "store_true"}),
    ("where", "--master-host", "接続先マスター（--worker）", "master to connect to (with --worker)", {"default": "127.0.0.1"}),
    ("where", "--master-port", "マスターのポート（--worker）", "master port (with --worker)", {"type": int, "default": 5557}),
    ("", "--live", "実チャネルへの負荷を許可（レジストリのサージ許可も必要）", "allow load on live channels (also needs the registry's surge allowance)", {"action": "store_true"}),
    ("", "--journal", "記録: SQLite のファイルか postgresql:// の URL（既定: $TSUNAGARI_JOURNAL）", "journal: a SQLite file or a postgresql:// URL (default: $TSUNAGARI_JOURNAL)", {"type": journal_argument}),
    ("", "--scenario", "シナリオ名", "scenario name", {"default": DEFAULT_SCENARIO}),
    ("", "--seed", "シミュレータの乱数の種", "simulator random seed", {"type": int}),
    ("", "--json", "結果を JSON で出力", "print the result as JSON", {"action": "store_true"}),
]  # fmt: skip
_GROUPS = {
    "ramp": ("負荷の段階", "ramp"),
    "measure": ("計測", "measuring"),
    "where": ("実行場所", "where the load runs"),
}


def register(sub: Any, t: Text) -> None:
    from drills.cli import add_help

    p = sub.add_parser(
        "surge",
        help=t(
            "全員が一斉に使うときの負荷を 1 チャネルにかけ、負荷下の着信遅延と破綻点を測る",
            "put everybody-at-once load on one channel (Locust) and measure delivery under it",
        ),
        add_help=False,
    )
    add_help(p, t)
    groups = {key: p.add_argument_group(t(*names)) for key, names in _GROUPS.items()}
    for group, flag, ja, en, kw in _OPTIONS:
        (groups[group] if group else p).add_argument(flag, help=t(ja, en), **kw)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from drills.core.errors import DrillSafetyError, HarnessError, RegistryError, ScenarioError
    from drills.core.journal import RunStatus, open_journal
    from drills.core.registry import load_registry
    from drills.core.sharing import check_sharing, said
    from drills.surge.plan import SurgeRefused, check_surge_allowed

    t = Text(args.lang)
    if not args.registry or not args.channel:
        print(
            t("REGISTRY と --channel が必要です", "REGISTRY and --channel are required"),
            file=sys.stderr,
        )
        return 2
    try:
        # As run does: the structure of every municipality, then the chosen channel's
        # secrets only (another municipality's unset env: is none of this surge's business),
        # then what it shares (an error refuses as registry check does).
        registry = load_registry(args.registry, check_secrets=False)
        target = _target(registry, args.channel)
        registry.check_secrets([target])
        for finding, problem in check_sharing(registry, [target]):
            print(said(finding, problem, args.lang), file=sys.stderr)
    except RegistryError as exc:
        print(exc.render(args.lang), file=sys.stderr)
        return 2
    except ValueError as exc:
        print(t.pick(str(exc)), file=sys.stderr)
        return 2
    try:
        if args.worker:
            return _run_worker(args, registry, target, t)
        plan = _plan(args)
        topology = _topology(args)
        check_surge_allowed(target, plan, live=args.live)
    except SurgeRefused as exc:
        print(exc.render(args.lang), file=sys.stderr)
        return 2
    except (ScenarioError, DrillSafetyError, ValueError) as exc:
        print(t.pick(str(exc)), file=sys.stderr)
        return 2
    journal = open_journal(args.journal or default_journal())
    try:
        result, status = asyncio.run(_surge(args, registry, journal, target, plan, topology, t))
    except HarnessError as exc:
        print(t.pick(str(exc)), file=sys.stderr)
        return 3
    except (ScenarioError, DrillSafetyError) as exc:
        print(t.pick(str(exc)), file=sys.stderr)
        return 2
    finally:
        journal.close()
    from drills.reporting.console import console_for
    from drills.surge.report import curve_table, verdict

    if args.json:
        print(json.dumps(result.event, ensure_ascii=False))
    else:
        console = console_for()
        console.print(curve_table(result.event, args.lang))
        console.print(verdict(result.event, args.lang))
    return (
        0
        if status == RunStatus.FINISHED and result.breaking_point is None and not result.stopped
        else 1
    )


def _target(registry: Any, key: str) -> Any:
    muni, sep, channel = key.partition("/")
    if not sep or not muni or not channel:
        raise ValueError("--channel は 団体コード/チャネルID です / --channel must be CODE/CHANNEL")
    try:
        found = registry.targets([muni], channels=[channel])
    except KeyError:
        found = []
    if len(found) != 1:
        raise ValueError(
            f"チャネル {key} が見つかりません / channel {key} not found in the registry"
        )
    return found[0]


def _plan(args: argparse.Namespace) -> Any:
    from drills.surge.plan import SurgePlan
    from probes.settings import parse_duration

    step_s = parse_duration(args.step)
    rest_s = step_s if args.rest is None else parse_duration(args.rest)
    if bool(args.rates) == bool(args.ramp):
        raise ValueError(
            "--rates か --ramp のどちらか一方を指定してください / "
            "give exactly one of --rates or --ramp"
        )
    if args.rates:
        rates = [float(r) for r in args.rates.split(",") if r.strip()]
        return SurgePlan.of(rates, step_s, rest_s, args.users)
    start, peak, steps = args.ramp.split(":")
    return SurgePlan.ramp(float(start), float(peak), int(steps), step_s, rest_s, args.users)


def _topology(args: argparse.Namespace) -> Any:
    from drills.surge.process import Topology

    return Topology(
        processes=args.processes,
        master=args.master,
        local_workers=args.local_workers,
        expect_workers=args.expect_workers,
        bind_host=args.bind,
        port=args.port,
    )


async def _surge(
    args: argparse.Namespace,
    registry: Any,
    journal: Any,
    target: Any,
    plan: Any,
    topology: Any,
    t: Text,
) -> tuple[Any, str]:
    from drills.core.journal import RunStatus
    from drills.core.runner import Drill
    from drills.surge.report import progress_line
    from drills.surge.runner import run_surge
    from probes.settings import parse_duration

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def tell(ev: dict[str, Any]) -> None:
        line = progress_line(ev, len(plan.steps), args.lang)
        if line and not args.json:
            print(line, flush=True)

    drill = Drill(
        registry, journal, scenario=args.scenario, live=args.live, lang=args.lang, seed=args.seed
    )
    drill.start()
    status = RunStatus.FAILED
    try:
        result = await run_surge(
            drill,
            target,
            plan,
            topology=topology,
            probes_per_step=args.probes,
            timeout=parse_duration(args.timeout) if args.timeout else None,
            slo=parse_duration(args.slo) if args.slo else None,
            stop=stop,
            on_progress=tell,
        )
        status = RunStatus.INCOMPLETE if result.stopped else RunStatus.FINISHED
    finally:
        await drill.finish(status)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return result, status


def _run_worker(args: argparse.Namespace, registry: Any, target: Any, t: Text) -> int:
    """A Locust worker for a master elsewhere: the endpoint comes from *this* machine's registry."""
    import subprocess

    from drills.surge.config import SurgeConfig
    from drills.surge.endpoint import endpoint_for
    from drills.surge.plan import SurgePlan, SurgeRefused, allowance_problems
    from drills.surge.process import locust_env, worker_command
    from drills.surge.runner import LOAD_TEXT

    if target.channel.simulated:
        print(
            t(
                "シミュレータのチャネルはマスター側のワーカー（--local-workers）でのみ負荷をかけられます",
                "a simulated channel can only be loaded by the master's workers (--local-workers)",
            ),
            file=sys.stderr,
        )
        return 2
    # The master checks the plan against the allowance; a worker checks it has one at all.
    problems = allowance_problems(target, SurgePlan((), 1), live=args.live)
    if problems:
        print(SurgeRefused(problems).render(args.lang), file=sys.stderr)
        return 2
    endpoint = endpoint_for(target.channel.kind, target.channel.settings)
    workdir = Path(tempfile.mkdtemp(prefix="tsunagari-surge-worker-"))
    try:
        config = SurgeConfig(
            endpoint.load,
            endpoint.params,
            registry.marker,
            LOAD_TEXT,
            {"users": 1, "steps": []},
            os.devnull,
        )
        config.write(workdir / "config.json")
        cmd = worker_command(args.master_host, args.master_port, config.user_class)
        with contextlib.suppress(KeyboardInterrupt):
            return subprocess.call(cmd, env=locust_env(workdir / "config.json"), cwd=workdir)
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
