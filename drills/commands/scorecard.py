"""``tsunagari scorecard`` — the readiness scorecard of a run, from the journal.

    tsunagari scorecard                                # latest run, table on the terminal
    tsunagari scorecard --run 20261127T101500-3fa2c1 --format html --out scorecard.html
    tsunagari scorecard --since 2026-11-01 --until 2026-11-30 --format md
    tsunagari scorecard --format md --post 131211/chat --live   # also post the summary

With ``--since``/``--until`` (dates or times, Asia/Tokyo) the report is of the
latest run in that range, and the trend covers the runs of its scenario in
the range.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from drills.core.i18n import Text

FORMATS = ("table", "html", "md", "json", "csv")


def register(sub: Any, t: Text) -> None:
    from drills.cli import add_help, add_journal_option

    p = sub.add_parser(
        "scorecard",
        help=t(
            "即応性スコアカードを記録から作る（表・HTML・Markdown・JSON・CSV）",
            "make the readiness scorecard from the journal (table, HTML, Markdown, JSON, CSV)",
        ),
        add_help=False,
    )
    add_help(p, t)
    add_journal_option(p, t)
    p.add_argument(
        "--registry",
        type=Path,
        default=None,
        help=t("レジストリ（省略時は実行時のもの）", "registry (default: the one the run used)"),
    )
    p.add_argument(
        "--run",
        dest="run_id",
        default=None,
        help=t("実行 ID（省略時は最新）", "run id (default: latest)"),
    )
    p.add_argument(
        "--since",
        default=None,
        help=t("期間の開始（日付か時刻、日本時間）", "range start (date or time, Asia/Tokyo)"),
    )
    p.add_argument(
        "--until",
        default=None,
        help=t("期間の終了（日付はその日を含む）", "range end (a date includes that day)"),
    )
    p.add_argument(
        "--scenario", default=None, help=t("シナリオ名で絞り込む", "only runs of this scenario")
    )
    p.add_argument(
        "--format", choices=FORMATS, default="table", help=t("出力形式", "output format")
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help=t("出力ファイル（省略時は標準出力）", "output file (default: stdout)"),
    )
    p.add_argument(
        "--as-of",
        default=None,
        help=t(
            "鮮度を判断する時点（now か日時。省略時は実行の終了時刻）",
            "when freshness is judged (now or a time; default: the run's end)",
        ),
    )
    p.add_argument(
        "--post",
        metavar="CODE/CHANNEL",
        default=None,
        help=t(
            "Markdown の要約を訓練報告としてこのチャットに投稿",
            "post the Markdown summary to this chat channel as a drill report",
        ),
    )
    p.add_argument(
        "--live",
        action="store_true",
        help=t("実チャネルへの投稿を許可", "allow posting to a live channel"),
    )
    p.set_defaults(func=run)


def parse_when(text: str, end_of_day: bool = False) -> float:
    """Epoch seconds from ``now``, ``2026-11-27`` or ``2026-11-27T19:15`` (Asia/Tokyo if naive).

    A bare date with *end_of_day* means the end of that day (the range includes it).
    """
    from drills.reporting.scorecard import TOKYO

    if text == "now":
        return time.time()
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=TOKYO)
    if end_of_day and len(text) == 10:
        moment += timedelta(days=1)
    return moment.timestamp()


def _choose_run(
    journal: Any, args: argparse.Namespace
) -> tuple[dict[str, Any] | None, list[dict[str, Any]] | None]:
    """The run to report, and the trend runs (None = the default trend)."""
    if args.run_id:
        return journal.run(args.run_id), None
    if args.since or args.until:
        runs = journal.runs(
            scenario=args.scenario,
            since=parse_when(args.since) if args.since else None,
            until=parse_when(args.until, end_of_day=True) if args.until else None,
        )
        if not runs:
            return None, None
        chosen = runs[-1]
        same = [
            r
            for r in runs
            if r["scenario"] == chosen["scenario"] and r["vantage"] == chosen["vantage"]
        ]
        return chosen, same
    return journal.latest_run(args.scenario), None


def _registry(path: Path | None, run: dict[str, Any], t: Text) -> Any:
    from drills.core.errors import RegistryError
    from drills.core.registry import load_registry

    candidate = path or (Path(run["meta"]["registry"]) if run["meta"].get("registry") else None)
    if candidate is None:
        return None
    try:
        return load_registry(candidate, check_secrets=False)
    except RegistryError as exc:
        if path is not None:
            raise
        print(
            t(
                f"注意: 実行時のレジストリ {candidate} を読めないため、SLO は記録の値を使います",
                f"note: the run's registry {candidate} cannot be read; using SLOs from the journal",
            ),
            file=sys.stderr,
        )
        print(exc.render(t.lang), file=sys.stderr)
        return None


def render(card: dict[str, Any], fmt: str, lang: str, marker: str) -> str:
    """The card in *fmt* (any of :data:`FORMATS`) as text."""
    if fmt == "json":
        return json.dumps(card, ensure_ascii=False, indent=2) + "\n"
    if fmt == "csv":
        from drills.reporting.text import to_csv

        return to_csv(card)
    if fmt == "md":
        from drills.reporting.text import to_markdown

        return to_markdown(card, lang)
    if fmt == "html":
        from drills.reporting.html import render_html

        return render_html(card, lang, marker=marker)
    from drills.reporting.console import console_for, scorecard_renderable

    console = console_for()
    with console.capture() as captured:
        console.print(scorecard_renderable(card, lang))
    return captured.get()


def run(args: argparse.Namespace) -> int:
    from drills.cli import EXIT
    from drills.core.errors import RegistryError
    from drills.core.journal import local_path, open_journal
    from drills.reporting.scorecard import build_scorecard
    from probes.base import DEFAULT_MARKER

    t = Text(args.lang)
    missing = local_path(args.journal)
    if missing is not None and not missing.exists():
        print(
            t(f"記録がありません: {args.journal}", f"no journal at {args.journal}"), file=sys.stderr
        )
        return EXIT["usage"]
    try:
        as_of = parse_when(args.as_of) if args.as_of else None
        if args.since:
            parse_when(args.since)
        if args.until:
            parse_when(args.until)
    except ValueError as exc:
        print(
            t(f"日時を読めません: {exc}", f"cannot read the date or time: {exc}"), file=sys.stderr
        )
        return EXIT["usage"]
    # A reader: writes nothing, and sees the journal at one moment while runners write.
    with open_journal(args.journal, read_only=True) as journal, journal.snapshot():
        try:
            chosen, trend_runs = _choose_run(journal, args)
        except KeyError:
            print(
                t(
                    f"実行 {args.run_id} は記録にありません",
                    f"run {args.run_id} is not in the journal",
                ),
                file=sys.stderr,
            )
            return EXIT["usage"]
        if chosen is None:
            print(t("該当する実行がありません", "no run matches"), file=sys.stderr)
            return EXIT["usage"]
        try:
            registry = _registry(args.registry, chosen, t)
        except RegistryError as exc:
            print(exc.render(args.lang), file=sys.stderr)
            return EXIT["usage"]
        card = build_scorecard(
            journal, chosen["run_id"], registry, as_of=as_of, trend_runs=trend_runs
        )
    marker = registry.marker if registry is not None else DEFAULT_MARKER
    text = render(card, args.format, args.lang, marker)
    if args.out is None:
        sys.stdout.write(text)
    else:
        encoding = (
            "utf-8-sig" if args.format == "csv" else "utf-8"
        )  # a BOM lets Excel read Japanese
        args.out.write_text(text, encoding=encoding)
        print(t(f"出力: {args.out}", f"wrote {args.out}"), file=sys.stderr)
    if args.post:
        return _post(card, registry, args, t)
    return EXIT["ok"]


def _post(card: dict[str, Any], registry: Any, args: argparse.Namespace, t: Text) -> int:
    from drills.cli import EXIT
    from drills.core.errors import DrillSafetyError
    from drills.reporting.post import find_target, post_summary
    from probes.base import ChannelFault

    if registry is None:
        print(
            t(
                "投稿先を探すにはレジストリが必要です（--registry）",
                "posting needs a registry (--registry)",
            ),
            file=sys.stderr,
        )
        return EXIT["usage"]
    try:
        target = find_target(registry, args.post)
    except KeyError:
        print(
            t(
                f"投稿先 {args.post} はレジストリにありません",
                f"{args.post} is not in the registry",
            ),
            file=sys.stderr,
        )
        return EXIT["usage"]
    try:
        accepted = asyncio.run(post_summary(card, registry, target, lang=args.lang, live=args.live))
    except DrillSafetyError as exc:
        print(t.pick(str(exc)), file=sys.stderr)
        return EXIT["usage"]
    except ChannelFault as exc:
        print(
            t(
                f"投稿できませんでした: {t.pick(exc.reason)}",
                f"posting failed: {t.pick(exc.reason)}",
            ),
            file=sys.stderr,
        )
        return EXIT["missed"]
    print(
        t(
            f"訓練報告を {target.key} に投稿しました（事業者が受付）",
            f"posted the drill report to {target.key} (accepted)",
        )
        + (f" id={accepted.provider_id}" if accepted.provider_id else ""),
        file=sys.stderr,
    )
    return EXIT["ok"]
