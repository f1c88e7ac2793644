"""``tsunagari demo [--out DIR]``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from drills.core.i18n import Text


def register(sub: Any, t: Text) -> None:
    from drills.cli import add_help

    p = sub.add_parser(
        "demo",
        help=t(
            "ローカルのシミュレータで訓練を一通り実行する（外部には一切送信しません）",
            "run a full drill on local simulators (nothing leaves this machine)",
        ),
        add_help=False,
    )
    add_help(p, t)
    p.add_argument(
        "--out", default="tsunagari-out", type=Path, help=t("出力フォルダ", "output folder")
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from drills.operator.demo import run_demo

    return run_demo(args.out, lang=args.lang, seed=args.seed, repeat=args.repeat)
