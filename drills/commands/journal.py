"""``tsunagari journal`` — upkeep of the journal: prune old runs, show its size.

    tsunagari journal stats                          # counts, span, size, schema version
    tsunagari journal stats --format json
    tsunagari journal prune --older-than 400d --dry-run
    tsunagari journal prune --older-than 400d        # delete, then give the space back

``prune`` deletes the runs started before the cutoff with their deliveries,
step events and digests, but always keeps the latest run of every scenario ×
vantage (and any run still in progress). Durations: ``400d``, ``12h``, ``90m``…

A journal written by a newer tsunagari is refused (exit 2) and left unchanged.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

from drills.core.i18n import Text

if TYPE_CHECKING:
    from drills.core.journal import Journal

FORMATS = ("table", "json")


def register(sub: Any, t: Text) -> None:
    from drills.cli import add_help, add_journal_option

    p = sub.add_parser(
        "journal",
        help=t(
            "記録（journal）を保守する（古い実行の削除・統計）",
            "keep the journal in shape (prune old runs, statistics)",
        ),
        add_help=False,
    )
    add_help(p, t)
    inner = p.add_subparsers(
        dest="journal_command", metavar=t("操作", "ACTION"), parser_class=type(p)
    )

    prune = inner.add_parser(
        "prune",
        help=t(
            "古い実行を削除（シナリオ×拠点ごとの最新の実行は残す）",
            "delete old runs (the latest run of each scenario × vantage is kept)",
        ),
        add_help=False,
    )
    add_help(prune, t)
    add_journal_option(prune, t)
    prune.add_argument(
        "--older-than",
        required=True,
        metavar=t("期間", "DURATION"),
        help=t(
            "これより前に始まった実行を削除（例: 400d, 12h）",
            "delete runs started longer ago than this (e.g. 400d, 12h)",
        ),
    )
    prune.add_argument(
        "--dry-run",
        action="store_true",
        help=t("削除せず、削除される件数だけ表示", "show what would be deleted; delete nothing"),
    )
    prune.add_argument(
        "--no-vacuum",
        action="store_true",
        help=t(
            "削除後にファイルを詰めない（VACUUM しない）",
            "do not compact the file after deleting (no VACUUM)",
        ),
    )
    prune.add_argument(
        "--format", choices=FORMATS, default="table", help=t("出力形式", "output format")
    )
    prune.set_defaults(func=run_prune)

    stats = inner.add_parser(
        "stats",
        help=t(
            "実行・配信・イベント・ダイジェストの件数、期間、ファイルサイズ",
            "counts of runs, deliveries, events and digests; span; file size",
        ),
        add_help=False,
    )
    add_help(stats, t)
    add_journal_option(stats, t)
    stats.add_argument(
        "--format", choices=FORMATS, default="table", help=t("出力形式", "output format")
    )
    stats.set_defaults(func=run_stats)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _when(ts: float | None) -> str:
    from zoneinfo import ZoneInfo

    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, ZoneInfo("Asia/Tokyo")).isoformat(timespec="seconds")


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _open(args: argparse.Namespace, t: Text) -> Journal | int:
    """The journal, or an exit code (2) after saying why it cannot be opened."""
    from drills.core.errors import JournalTooNew
    from drills.core.journal import Journal

    if not args.journal.is_file():
        print(
            t(f"記録がありません: {args.journal}", f"no journal at {args.journal}"),
            file=sys.stderr,
        )
        return 2
    try:
        return Journal(args.journal)
    except JournalTooNew as exc:
        print(exc.render(t.lang), file=sys.stderr)
        return 2


def _table(rows: list[tuple[str, str]]) -> str:
    width = max(len(label) for label, _ in rows)
    return "".join(f"{label:<{width}}  {value}\n" for label, value in rows)


def run_stats(args: argparse.Namespace) -> int:
    t = Text(args.lang)
    journal = _open(args, t)
    if isinstance(journal, int):
        return journal
    with journal:
        stats = journal.stats()
    if args.format == "json":
        sys.stdout.write(json.dumps(stats.to_data(), ensure_ascii=False, indent=2) + "\n")
        return 0
    by_status = ", ".join(f"{k} {v}" for k, v in stats.runs_by_status.items()) or "-"
    per_run = _size(stats.file_bytes // stats.runs) if stats.runs else "-"
    sys.stdout.write(
        _table(
            [
                (t("記録", "journal"), str(args.journal)),
                (t("スキーマ", "schema version"), f"v{stats.schema_version}"),
                (t("実行", "runs"), f"{stats.runs} ({by_status})"),
                (t("配信", "deliveries"), str(stats.deliveries)),
                (t("イベント", "events"), str(stats.events)),
                (t("ダイジェスト", "digests"), str(stats.digests)),
                (t("最古の実行", "oldest run"), _when(stats.oldest_run_at)),
                (t("最新の実行", "newest run"), _when(stats.newest_run_at)),
                (t("ファイルサイズ", "file size"), _size(stats.file_bytes)),
                (t("1 実行あたり", "per run"), per_run),
            ]
        )
    )
    return 0


def run_prune(args: argparse.Namespace) -> int:
    from probes.settings import parse_duration

    t = Text(args.lang)
    try:
        older_than = parse_duration(args.older_than)
    except ValueError as exc:
        print(
            t(f"期間を読めません: {exc}", f"cannot read the duration: {exc}"),
            file=sys.stderr,
        )
        return 2
    journal = _open(args, t)
    if isinstance(journal, int):
        return journal
    with journal:
        before = journal.stats().file_bytes
        result = journal.prune(older_than, dry_run=args.dry_run)
        if not args.dry_run and not args.no_vacuum and result.runs:
            journal.vacuum()
        after = journal.stats().file_bytes
    if args.format == "json":
        data = {**result.to_data(), "file_bytes_before": before, "file_bytes_after": after}
        sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")
        return 0
    verb = t("削除予定（--dry-run）", "would delete (--dry-run)") if args.dry_run else None
    verb = verb or t("削除", "deleted")
    sys.stdout.write(
        _table(
            [
                (
                    t("基準", "cutoff"),
                    t(f"{_when(result.cutoff)} より前", f"before {_when(result.cutoff)}"),
                ),
                (verb, t(f"実行 {result.runs} 件", f"{result.runs} runs")),
                (t("配信", "deliveries"), str(result.deliveries)),
                (t("イベント", "events"), str(result.events)),
                (t("ダイジェスト", "digests"), str(result.digests)),
                (
                    t("最新として保持", "kept as latest"),
                    t(
                        f"{result.kept_latest} 件（シナリオ×拠点ごとの最新）",
                        f"{result.kept_latest} (latest of their scenario × vantage)",
                    ),
                ),
                (t("ファイルサイズ", "file size"), f"{_size(before)} → {_size(after)}"),
            ]
        )
    )
    return 0
