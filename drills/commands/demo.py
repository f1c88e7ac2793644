"""``tsunagari demo [--out DIR]`` (exit codes: :func:`drills.operator.demo.run_demo`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from drills.core.i18n import Text


def register(sub: Any, t: Text) -> None:
    from drills.cli import add_help, journal_argument

    p = sub.add_parser(
        "demo",
        help=t(
            "ローカルのシミュレータで訓練を一通り実行する（外部には一切送信しません）",
            "run a full drill on local simulators (nothing leaves this machine)",
        ),
        epilog=t(
            "終了コード: 0 完了 / 3 出力フォルダ・記録に書き込めない / 4 同じフォルダで別の訓練が実行中"
            " / 130・143 SIGINT・SIGTERM で中断（途中までの結果を interrupted として記録・出力）",
            "exit codes: 0 done / 3 the output folder or journal cannot be written / 4 another "
            "drill holds the folder's lock / 130, 143 stopped by SIGINT, SIGTERM (the partial "
            "run is recorded as interrupted and its files written)",
        ),
        add_help=False,
    )
    add_help(p, t)
    p.add_argument(
        "--out", default="tsunagari-out", type=Path, help=t("出力フォルダ", "output folder")
    )
    p.add_argument(
        "--journal",
        type=journal_argument,
        default=None,
        metavar=t("パスかURL", "PATH|URL"),
        help=t(
            "記録: SQLite のファイルか postgresql:// の URL（既定: 出力フォルダの journal.sqlite）",
            "journal: a SQLite file or a postgresql:// URL (default: OUT/journal.sqlite)",
        ),
    )
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help=t("乱数の種（再現用）", "random seed (for reproducible runs)"),
    )
    p.add_argument(
        "--repeat", type=int, default=5, help=t("チャネルあたりの送信数", "messages per channel")
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help=t(
            "送信予定（宛先・マーカー・費用見積）を表示するだけで何も送信・記録しない",
            "show what would be sent (recipients, marker, cost estimate); send and write nothing",
        ),
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from drills.operator.demo import run_demo

    if args.dry_run:
        from drills.operator.demo import plan_demo

        return plan_demo(lang=args.lang, repeat=args.repeat)
    return run_demo(
        args.out, lang=args.lang, seed=args.seed, repeat=args.repeat, journal=args.journal
    )
