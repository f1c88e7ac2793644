"""``tsunagari serve`` — a Prometheus exporter of the journal's state, and ``/probe``
(the registry's channels checked without sending, blackbox_exporter style)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import Any

from drills.core import gcpolicy
from drills.core.i18n import Text


def register(sub: Any, t: Text) -> None:
    from drills.cli import add_help, add_journal_option
    from drills.commands.check import add_rate_limit
    from drills.metrics.exporter import DEFAULT_PORT

    p = sub.add_parser(
        "serve",
        help=t(
            "journal の最新の状態と /probe（送信しないチャネル確認）を Prometheus に公開する",
            "serve the journal's latest state and /probe (channel checks, nothing sent) to "
            "Prometheus",
        ),
        description=t(
            "/metrics: journal の最新の状態（訓練の結果）。/probe?target=131211/mail: "
            "レジストリのチャネル 1 つを送信せずに確認する（blackbox_exporter 形式、"
            "--registry が必要。journal がなくても使える。&module=tls なら TLS まで、"
            "ログインなし）。詳しくは docs/preflight.md",
            "/metrics: the journal's latest state (the drills' results). "
            "/probe?target=131211/mail: checks one registry channel without sending "
            "(blackbox_exporter style; needs --registry, works without a journal; "
            "&module=tls: up to TLS only, no login). See docs/preflight.md",
        ),
        add_help=False,
    )
    add_help(p, t)
    add_journal_option(p, t)
    p.add_argument(
        "--registry",
        default=None,
        help=t(
            "レジストリ（SLO と訓練間隔、/probe の対象）",
            "registry (SLOs and drill intervals; the targets of /probe)",
        ),
    )
    p.add_argument(
        "--host", default="127.0.0.1", help=t("待ち受けるアドレス", "address to listen on")
    )
    p.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=t("待ち受けるポート", "port to listen on")
    )
    p.add_argument(
        "--tls-cert", type=Path, default=None, help=t("TLS 証明書（PEM）", "TLS certificate (PEM)")
    )
    p.add_argument(
        "--tls-key", type=Path, default=None, help=t("TLS 秘密鍵（PEM）", "TLS private key (PEM)")
    )
    p.add_argument(
        "--basic-auth-user", default=None, help=t("Basic 認証のユーザー名", "basic auth user name")
    )
    p.add_argument(
        "--basic-auth-password",
        default=None,
        help=t(
            "Basic 認証のパスワードの参照（env:NAME か file:PATH）",
            "basic auth password reference (env:NAME or file:PATH)",
        ),
    )
    p.add_argument(
        "--check-interval",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help=t(
            "/probe: 同じ対象をチェックする最小間隔（その間は前回の結果を返す。既定 60 秒）",
            "/probe: minimum interval between two checks of a target; the previous result "
            "is served in between (default 60 s)",
        ),
    )
    p.add_argument(
        "--check-interval-for",
        action="append",
        default=[],
        metavar="KEY=DURATION",
        help=t(
            "/probe: 種類か対象ごとの最小間隔（例: lineworks=2m、131211/chat=300s。複数可）",
            "/probe: the minimum interval for a kind or one target (e.g. lineworks=2m, "
            "131211/chat=300s; repeatable)",
        ),
    )
    add_rate_limit(p, t)
    p.set_defaults(func=run)


def _fail(t: Text, ja: str, en: str) -> int:
    print(t(f"エラー: {ja}", f"error: {en}"), file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    from drills.core.errors import RegistryError
    from drills.core.journal import local_path, open_journal
    from drills.core.preflight import PreflightRunner
    from drills.core.registry import load_registry
    from drills.metrics.exporter import ExporterOptions, serve
    from probes.settings import SecretRef, SecretUnresolvable

    t = Text(args.lang)
    journal_path: Path | str = args.journal
    missing = local_path(args.journal)
    if missing is not None and not missing.is_file():
        if not args.registry:
            return _fail(
                t,
                f"journal がありません: {args.journal}（/probe だけなら --registry を指定）",
                f"no journal at {args.journal} (for /probe alone, give --registry)",
            )
        print(
            t(
                f"注意: journal がありません（{args.journal}）。/metrics には訓練の結果が出ません。"
                "/probe は使えます",
                f"note: no journal at {args.journal}: /metrics has no drill results; /probe works",
            ),
            file=sys.stderr,
        )
        journal_path = ":memory:"  # an empty journal: /metrics answers, with nothing drilled
    if (args.basic_auth_user is None) != (args.basic_auth_password is None):
        return _fail(
            t,
            "--basic-auth-user と --basic-auth-password は一緒に指定してください",
            "--basic-auth-user and --basic-auth-password go together",
        )
    if (args.tls_cert is None) != (args.tls_key is None):
        return _fail(
            t,
            "--tls-cert と --tls-key は一緒に指定してください",
            "--tls-cert and --tls-key go together",
        )
    password = None
    if args.basic_auth_password is not None:
        try:
            password = SecretRef.parse(args.basic_auth_password)
            password.check()
        except (ValueError, SecretUnresolvable) as exc:
            return _fail(
                t,
                f"パスワードの参照を解決できません: {exc}",
                f"cannot resolve the password reference: {exc}",
            )
    if not args.check_interval >= 0:  # also refuses nan
        return _fail(
            t,
            f"--check-interval は 0 以上の秒数にしてください: {args.check_interval}",
            f"--check-interval must be 0 or more seconds: {args.check_interval}",
        )
    from drills.core.preflight import limits_with, parse_interval, parse_limit
    from drills.core.requirements import ScenarioMistake

    try:
        intervals = dict(parse_interval(text) for text in args.check_interval_for)
        limits = limits_with(parse_limit(text) for text in args.rate_limit)
    except ScenarioMistake as exc:
        return _fail(t, exc.ja, exc.en)
    registry = None
    if args.registry:
        try:
            registry = load_registry(args.registry, check_secrets=False)
        except RegistryError as exc:
            print(exc.render(args.lang), file=sys.stderr)
            return 2
    options = ExporterOptions(
        args.host, args.port, args.tls_cert, args.tls_key, args.basic_auth_user, password
    )
    if options.exposed:
        print(
            t(
                "警告: ループバック以外で待ち受けます。TLS と Basic 認証を使ってください。",
                "warning: listening beyond loopback; use TLS and basic auth.",
            ),
            file=sys.stderr,
        )

    def started(url: str) -> None:
        print(t(f"公開中: {url}", f"serving {url}"), flush=True)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        # /probe's checks: one runner for the life of the server (its cache and rate limits)
        checker = (
            PreflightRunner(min_interval_s=args.check_interval, intervals=intervals, limits=limits)
            if registry
            else None
        )
        # What is loaded now (modules, the registry) lives as long as the server: out of
        # the garbage collector's sight, which would otherwise walk it again and again
        # (~10 % of the CPU of a /probe scrape with a registry of a thousand channels).
        # Thawed when the server ends, however it ends (drills.core.gcpolicy): a process
        # that goes on (a test calling main) must not keep everything alive now frozen —
        # garbage frozen with it would surface in some later, unrelated collection.
        gcpolicy.after_startup()
        try:
            with open_journal(journal_path, read_only=True) as journal:  # a reader: writes nothing
                await serve(journal, registry, options, started=started, stop=stop, checker=checker)
        finally:
            gcpolicy.release()
            if checker is not None:
                await checker.aclose()

    from drills.core import evloop

    try:
        evloop.run(main())
    except OSError as exc:
        return _fail(t, f"待ち受けできません: {exc}", f"cannot listen: {exc}")
    return 0
