"""``tsunagari journal`` — upkeep of the journal: prune old runs, show its size.

    tsunagari journal stats                          # counts, span, size, schema version
    tsunagari journal stats --format json
    tsunagari journal prune --older-than 400d --dry-run
    tsunagari journal prune --older-than 400d        # delete, then give the space back
    tsunagari journal copy out/journal.sqlite postgresql://tsunagari@db/drills
    tsunagari journal copy postgresql://tsunagari@db/drills back.sqlite

``prune`` deletes the runs started before the cutoff with their deliveries,
step events and digests, but always keeps the latest run of every scenario ×
vantage (and any run still in progress). Durations: ``400d``, ``12h``, ``90m``…

``copy`` writes every row of one journal (a SQLite file or a PostgreSQL URL) into
another, in one transaction (:mod:`drills.core.journal.copy`); a destination that
already holds runs is refused (exit 2) unless ``--append``.

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
    from drills.core.journal.target import JournalTarget

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
    _register_copy(inner, t)
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
    from drills.core.journal import local_path, open_journal

    missing = local_path(args.journal)
    if missing is not None and not missing.is_file():
        print(
            t(f"記録がありません: {args.journal}", f"no journal at {args.journal}"),
            file=sys.stderr,
        )
        return 2
    try:
        return open_journal(args.journal)
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
                (t("記録", "journal"), journal.path),  # a URL without its password
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


# --------------------------------------------------------------------------- copy


def _register_copy(inner: Any, t: Text) -> None:
    from drills.cli import add_help

    copy = inner.add_parser(
        "copy",
        help=t(
            "記録を別の記録へ丸ごとコピー（SQLite ⇄ PostgreSQL）",
            "copy every row of a journal into another (SQLite ⇄ PostgreSQL)",
        ),
        add_help=False,
    )
    add_help(copy, t)
    copy.add_argument(
        "source", metavar=t("コピー元", "SRC"), help=t("ファイルか URL", "a file or a URL")
    )
    copy.add_argument(
        "destination", metavar=t("コピー先", "DST"), help=t("ファイルか URL", "a file or a URL")
    )
    copy.add_argument(
        "--append",
        action="store_true",
        help=t(
            "実行が既にあるコピー先にも追記する（同じ実行 ID は飛ばす）",
            "add to a destination that already holds runs (runs already there are skipped)",
        ),
    )
    copy.add_argument(
        "--format", choices=FORMATS, default="table", help=t("出力形式", "output format")
    )
    copy.set_defaults(func=run_copy)


def _same_place(target: JournalTarget) -> tuple[str, str]:
    """Where *target* is, comparable: a resolved file, or the database's address."""
    from pathlib import Path

    if target.is_postgres:
        keys = ("host", "hostaddr", "port", "dbname", "service")
        return target.backend, repr([target.conninfo.get(k) for k in keys])
    return target.backend, str(Path(target.path).resolve())


def run_copy(args: argparse.Namespace) -> int:
    """``journal copy SRC DST``: 0 copied; 2 no source, same journal twice, or a destination
    not empty; 3 a journal that cannot be used (JournalUnusable, through ``main``)."""
    from pathlib import Path

    from drills.core.journal import open_journal
    from drills.core.journal.copy import DestinationNotEmpty, copy_rows
    from drills.core.journal.target import parse_target

    t = Text(args.lang)
    source, destination = parse_target(args.source), parse_target(args.destination)
    if not source.is_postgres and not Path(source.path).is_file():
        print(t(f"記録がありません: {source}", f"no journal at {source}"), file=sys.stderr)
        return 2
    if _same_place(source) == _same_place(destination):
        print(
            t(
                f"コピー元とコピー先が同じ記録です: {source}",
                f"the source and the destination are the same journal: {source}",
            ),
            file=sys.stderr,
        )
        return 2
    with open_journal(args.source, read_only=True) as src, open_journal(args.destination) as dst:
        try:
            result = copy_rows(src, dst, append=args.append)
        except DestinationNotEmpty as exc:
            for half in str(exc).split(" / ", 1):
                print(half, file=sys.stderr)
            return 2
    if args.format == "json":
        data = {"source": str(source), "destination": str(destination), **result.to_data()}
        sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")
        return 0
    rows = [
        (t("コピー元", "source"), str(source)),
        (t("コピー先", "destination"), str(destination)),
        *((t(f"{table}（行）", f"{table} (rows)"), str(n)) for table, n in result.rows.items()),
    ]
    if args.append:
        rows.append((t("既にあった実行", "runs already there"), str(result.skipped_runs)))
    sys.stdout.write(_table(rows))
    return 0
