"""``tsunagari check REGISTRY`` — can every channel work? Checked without sending.

Each selected channel is checked the way :mod:`probes.preflight` describes
(DNS, connect, TLS, login, read access; certificates' expiry), concurrently,
each within ``--timeout``. Simulated channels (``sim:``) are checked against
their local simulators, started here as the demo does. A kind without a
preflight is listed as skipped, with the reason.

Exit codes: 0 every channel can work · 1 some cannot · 2 usage or registry error.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from drills.core.i18n import Text

if TYPE_CHECKING:
    from drills.core.preflight import Checked

__all__ = ["register", "rows", "run"]

CERT_WARN_DAYS = 14.0  # a certificate expiring sooner is shown as a warning


def register(sub: Any, t: Text) -> None:
    from drills.cli import add_help

    p = sub.add_parser(
        "check",
        help=t(
            "全チャネルが使えるかを送信せずに確かめる（接続・TLS・ログイン・読み取り）",
            "check every channel without sending (connect, TLS, login, read access)",
        ),
        epilog=t(
            "終了コード: 0 すべて使える / 1 使えないチャネルがある / 2 使い方・レジストリの誤り",
            "exit codes: 0 every channel can work / 1 some cannot / 2 usage or registry error",
        ),
        add_help=False,
    )
    add_help(p, t)
    p.add_argument("registry", help=t("レジストリの YAML ファイル", "registry YAML file"))
    p.add_argument(
        "--municipality",
        action="append",
        default=[],
        metavar="SEL",
        help=t(
            "確かめる団体（コード・名前・タグ、複数可。既定は全団体）",
            "municipalities to check (code, name or tag; repeatable; default: all)",
        ),
    )
    p.add_argument(
        "--format",
        choices=("table", "json"),
        default="table",
        help=t("出力形式（table|json）", "output format (table|json)"),
    )
    p.add_argument(
        "--timeout",
        default="10s",
        help=t("チャネルごとの制限時間（例: 10s）", "time limit per channel (e.g. 10s)"),
    )
    add_rate_limit(p, t)
    p.set_defaults(func=run)


def add_rate_limit(p: Any, t: Text) -> None:
    """``--rate-limit KIND=N/DURATION``: one definition for ``check`` and ``serve``."""
    p.add_argument(
        "--rate-limit",
        action="append",
        default=[],
        metavar="KIND=N/DURATION",
        help=t(
            "種類ごとのチェック回数の上限（例: lineworks=3/60s、slack=off。複数可。"
            "既定: lineworks 3/60s、slack・teams 20/60s、twilio 30/60s）",
            "checks per provider kind and window (e.g. lineworks=3/60s, slack=off; repeatable; "
            "default: lineworks 3/60s, slack and teams 20/60s, twilio 30/60s)",
        ),
    )


def run(args: argparse.Namespace) -> int:
    from drills.commands.registry import refused
    from drills.core.errors import RegistryError
    from drills.core.preflight import limits_with, parse_limit
    from drills.core.registry import load_registry
    from drills.core.requirements import ScenarioMistake, parse_seconds

    t = Text(args.lang)
    try:
        timeout = parse_seconds(args.timeout, "--timeout")
        limits = limits_with(parse_limit(text) for text in args.rate_limit)
        reg = load_registry(args.registry, check_secrets=False)
        targets = reg.targets(args.municipality)
        reg.check_secrets(targets)
    except ScenarioMistake as exc:
        print(exc.render(args.lang), file=sys.stderr)
        return 2
    except (KeyError, RegistryError) as exc:
        return refused(exc, args.lang)
    checked = _check(targets, timeout, limits)
    if args.format == "json":
        _print_json(checked)
    else:
        _print_table(checked, t)
    return 0 if all(c.report.ok for c in checked) else 1


def _check(targets: Sequence[Any], timeout: float, limits: Mapping[str, Any]) -> list[Checked]:
    from drills.core import evloop
    from drills.core.preflight import PreflightRunner

    async def main() -> list[Checked]:
        runner = PreflightRunner(min_interval_s=0.0, timeout_s=timeout, limits=limits)
        try:
            return await runner.check_all(targets)
        finally:
            await runner.aclose()

    return evloop.run(main())


def _print_json(checked: Sequence[Checked]) -> None:
    import json

    doc = {
        "ok": all(c.report.ok for c in checked),
        "targets": [c.to_dict() for c in checked],
    }
    print(json.dumps(doc, ensure_ascii=False, indent=2))


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def rows(checked: Sequence[Checked], lang: str, now: float | None = None) -> list[list[str]]:
    """The table's rows (pure): target, kind, state, phases with times, cert days, reason.

    >>> from probes.preflight import PhaseResult, PreflightReport
    >>> ok = PhaseResult("smtp.connect", "connect", True, 0.012)
    >>> r = PreflightReport("131211/mail", "mail", (ok,), elapsed_s=0.02)
    >>> from drills.core.preflight import Checked
    >>> rows([Checked(r, 0.0)], "en")
    [['131211/mail', 'mail', 'OK', 'smtp.connect 12 ms', '—', '']]
    """
    from probes.preflight import NO_OBSERVER

    t = Text(lang)
    out = []
    for c in checked:
        r = c.report
        if r.skipped is not None:
            state, reason = t("対象外", "skipped"), r.skipped.text(lang)
        elif r.ok:
            state, reason = "OK", ""
            if r.facts.get("observer_configured") == 0.0:
                reason = NO_OBSERVER.text(lang)
        else:
            state, reason = t("失敗", "FAIL"), (r.reason.text(lang) if r.reason else "")
        phases = " · ".join(f"{p.name} {_ms(p.seconds)}" + ("" if p.ok else " ✗") for p in r.phases)
        days = r.min_cert_days(now)
        cert = "—" if days is None else t(f"{days:.0f} 日", f"{days:.0f} d")
        if c.cached:
            reason = (reason + " " if reason else "") + t(
                f"（{c.age_s:.0f} 秒前の結果）", f"(result from {c.age_s:.0f} s ago)"
            )
        out.append([r.target, r.kind, state, phases, cert, reason])
    return out


def _print_table(checked: Sequence[Checked], t: Text) -> None:
    import datetime as dt
    from zoneinfo import ZoneInfo

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    now = time.time()
    when = dt.datetime.fromtimestamp(now, ZoneInfo("Asia/Tokyo")).strftime("%Y-%m-%d %H:%M:%S")
    failing = sum(not c.report.ok for c in checked)
    table = Table(
        title=t("事前確認（送信なし）", "Preflight (nothing sent)"),
        caption=t(
            f"{when} JST · {len(checked)} チャネル中 {failing} 件が使えません",
            f"{when} JST · {failing} of {len(checked)} channels cannot work",
        ),
    )
    for head in (
        t("チャネル", "channel"),
        t("種類", "kind"),
        t("結果", "result"),
        t("段階と所要時間", "phases and times"),
        t("証明書の残り", "cert left"),
        t("理由", "reason"),
    ):
        table.add_column(head, overflow="fold")
    for c, plain in zip(checked, rows(checked, t.lang, now), strict=True):
        row = [escape(cell) for cell in plain]  # a server's "[AUTH…]" is text, not markup
        days = c.report.min_cert_days(now)
        style = "red" if not c.report.ok else ("yellow" if c.report.skipped else "green")
        row[2] = f"[{style}]{row[2]}[/{style}]"
        if days is not None and days < CERT_WARN_DAYS:
            row[4] = f"[{'red' if days <= 0 else 'yellow'}]{row[4]}[/]"
        table.add_row(*row)
    Console(soft_wrap=False).print(table)
