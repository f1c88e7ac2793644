"""``tsunagari`` — the command line.

Subcommands live in their own modules; each exposes ``register(subparsers, t)``
which adds its parser and sets ``func`` (``args -> exit code``). Help and
messages are Japanese or English (``--lang ja|en``; default from the locale).

Exit codes (shared by every subcommand):
  0 all requirements met · 1 a requirement missed · 2 usage or registry error
  3 harness failure · 4 another run holds the lock
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

from drills.i18n import LANGS, Text, detect_lang

__all__ = ["EXIT", "build_parser", "main"]

EXIT = {"ok": 0, "missed": 1, "usage": 2, "harness": 3, "locked": 4}

# Modules that add subcommands, in help order.
SUBCOMMAND_MODULES = [
    "drills.commands.demo",
    "drills.commands.registry",
    "drills.commands.serve",
    "drills.commands.scorecard",
    "drills.commands.run",
    "drills.commands.cron",
    "drills.commands.surge",
]


class _Formatter(argparse.HelpFormatter):
    def add_usage(self, usage, actions, groups, prefix=None):  # type: ignore[no-untyped-def]
        if prefix is None:
            prefix = _Parser.t("使い方: ", "usage: ")
        return super().add_usage(usage, actions, groups, prefix)


class _Parser(argparse.ArgumentParser):
    """argparse with translated headings and error prefix; usage errors exit 2."""

    t = Text("en")

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)
        self._optionals.title = self.t("オプション", "options")
        self._positionals.title = self.t("引数", "positional arguments")

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT["usage"], f"{self.prog}: {self.t('エラー', 'error')}: {message}\n")


def build_parser(lang: str) -> argparse.ArgumentParser:
    t = Text(lang)
    _Parser.t = t
    parser = _Parser(
        prog="tsunagari",
        description=t(
            "繋がり — 災害時の連絡手段（チャット・メール・SMS）が本当に届くかを訓練で確かめます。",
            "Tsunagari — drills that prove a municipality's chat, mail and SMS channels really deliver.",
        ),
        epilog=t(
            "終了コード: 0 要件達成 / 1 要件未達 / 2 使い方・レジストリの誤り / 3 ハーネス障害 / 4 他の実行が進行中",
            "exit codes: 0 requirements met / 1 requirement missed / 2 usage or registry error / "
            "3 harness failure / 4 another run is in progress",
        ),
        add_help=False,
    )
    parser.add_argument("-h", "--help", action="help", help=t("このヘルプを表示", "show this help"))
    parser.add_argument(
        "--lang", choices=LANGS, default=lang, help=t("表示言語 (ja|en)", "language (ja|en)")
    )
    sub = parser.add_subparsers(
        dest="command",
        metavar=t("コマンド", "COMMAND"),
        title=t("コマンド", "commands"),
        parser_class=_Parser,
    )
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(sub, t)
    return parser


DEFAULT_JOURNAL = Path("tsunagari-out/journal.sqlite")


def add_journal_option(parser: argparse.ArgumentParser, t: Text) -> None:
    """``--journal PATH`` (default: the demo's output folder), shared by the reading commands."""
    parser.add_argument(
        "--journal",
        type=Path,
        default=DEFAULT_JOURNAL,
        help=t("記録（SQLite）のパス", "journal (SQLite) path"),
    )


def add_help(parser: argparse.ArgumentParser, t: Text) -> None:
    """Translated -h/--help for a subcommand parser (created with add_help=False)."""
    parser.add_argument("-h", "--help", action="help", help=t("このヘルプを表示", "show this help"))
    parser.add_argument(
        "--lang", choices=LANGS, default=argparse.SUPPRESS, help=t("表示言語", "language")
    )


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    lang = detect_lang(args_list)
    parser = build_parser(lang)
    args = parser.parse_args(args_list)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return EXIT["usage"]
    args.lang = getattr(args, "lang", lang)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return EXIT["harness"]


if __name__ == "__main__":
    sys.exit(main())
