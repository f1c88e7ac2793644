"""``tsunagari`` — the command line.

Subcommands live in their own modules; each exposes ``register(subparsers, t)``
which adds its parser and sets ``func`` (``args -> exit code``). The top-level
help lists them from :data:`SUBCOMMANDS` and only the chosen subcommand's
module is imported, so ``tsunagari --help`` starts as fast as Python does. Help
and messages are Japanese or English (``--lang ja|en``; default from the locale).

Exit codes (shared by every subcommand; drills.operator.exit_codes):
  0 all requirements met · 1 a requirement missed · 2 usage or registry error
  3 harness failure (a journal, lock or folder that cannot be used included)
  4 another run holds the lock · 130/143 run or demo stopped by SIGINT/SIGTERM
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Collection, Sequence

from drills.core.errors import HarnessError, JournalTooNew
from drills.core.i18n import LANGS, Text, detect_lang
from drills.core.redaction import guarded_output

TYPE_CHECKING = False  # as typing.TYPE_CHECKING; typing and pathlib cost start-up
if TYPE_CHECKING:
    from pathlib import Path

    DEFAULT_JOURNAL: Path

__all__ = ["EXIT", "SUBCOMMANDS", "build_parser", "main"]

EXIT = {"ok": 0, "missed": 1, "usage": 2, "harness": 3, "locked": 4}


# A subcommand as the top-level help lists it, without importing its module:
# (name, module with ``register(subparsers, t)``, 日本語, English) — the one-line
# help, the same as the module passes to ``add_parser``. In help order;
# tests/core/test_cli.py checks each line against its module.
SUBCOMMANDS: tuple[tuple[str, str, str, str], ...] = (
    (
        "demo",
        "drills.commands.demo",
        "ローカルのシミュレータで訓練を一通り実行する（外部には一切送信しません）",
        "run a full drill on local simulators (nothing leaves this machine)",
    ),
    (
        "registry",
        "drills.commands.registry",
        "レジストリ（団体とチャネルの登録簿）を扱う",
        "work with the registry of municipalities and channels",
    ),
    (
        "check",
        "drills.commands.check",
        "全チャネルが使えるかを送信せずに確かめる（接続・TLS・ログイン・読み取り）",
        "check every channel without sending (connect, TLS, login, read access)",
    ),
    (
        "serve",
        "drills.commands.serve",
        "journal の最新の状態と /probe（送信しないチャネル確認）を Prometheus に公開する",
        "serve the journal's latest state and /probe (channel checks, nothing sent) to Prometheus",
    ),
    (
        "scorecard",
        "drills.commands.scorecard",
        "即応性スコアカードを記録から作る（表・HTML・Markdown・JSON・CSV）",
        "make the readiness scorecard from the journal (table, HTML, Markdown, JSON, CSV)",
    ),
    (
        "run",
        "drills.commands.run",
        "シナリオを実行する（cron・タイマー向け）",
        "run scenario files (for cron and timers)",
    ),
    (
        "cron",
        "drills.commands.cron",
        "定期実行の設定（crontab と systemd タイマー）を表示する",
        "print a crontab line and a systemd timer for scheduled drills",
    ),
    (
        "journal",
        "drills.commands.journal",
        "記録（journal）を保守する（古い実行の削除・統計）",
        "keep the journal in shape (prune old runs, statistics)",
    ),
    (
        "surge",
        "drills.commands.surge",
        "全員が一斉に使うときの負荷を 1 チャネルにかけ、負荷下の着信遅延と破綻点を測る",
        "put everybody-at-once load on one channel (Locust) and measure delivery under it",
    ),
)


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


def build_parser(lang: str, commands: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The parser, with the full parsers of *commands* (default: all of them).

    Any other subcommand is listed from :data:`SUBCOMMANDS` with an empty parser,
    and its module is not imported.
    """
    t = Text(lang)
    _Parser.t = t
    parser = _Parser(
        prog="tsunagari",
        description=t(
            "繋がり — 災害時の連絡手段（チャット・メール・SMS）が本当に届くかを訓練で確かめます。",
            "Tsunagari — drills that prove a municipality's chat, mail and SMS channels really deliver.",
        ),
        epilog=t(
            "終了コード: 0 要件達成 / 1 要件未達 / 2 使い方・レジストリの誤り / 3 ハーネス障害 / 4 他の実行が進行中"
            " / 130・143 SIGINT・SIGTERM で中断",
            "exit codes: 0 requirements met / 1 requirement missed / 2 usage or registry error / "
            "3 harness failure / 4 another run is in progress / 130, 143 stopped by SIGINT, SIGTERM",
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
    for name, module, ja, en in SUBCOMMANDS:
        if commands is None or name in commands:
            importlib.import_module(module).register(sub, t)
        else:
            sub.add_parser(name, help=t(ja, en), add_help=False)
    return parser


_DEFAULT_JOURNAL = "tsunagari-out/journal.sqlite"


if not TYPE_CHECKING:  # type checkers see DEFAULT_JOURNAL: Path above, and nothing else

    def __getattr__(name: str) -> Path:
        # DEFAULT_JOURNAL is made on first use: pathlib is a tenth of `tsunagari --help`.
        if name == "DEFAULT_JOURNAL":
            from pathlib import Path

            return Path(_DEFAULT_JOURNAL)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def journal_argument(text: str) -> Path | str:
    """A ``--journal`` value: a URL (``postgresql://…``, ``sqlite:///…``) as given, else a path
    (:mod:`drills.core.journal.target` reads both).

    >>> journal_argument("postgresql://db/drills"), journal_argument("out/j.sqlite")
    ('postgresql://db/drills', PosixPath('out/j.sqlite'))
    """
    from pathlib import Path

    return text if "://" in text else Path(text)


def default_journal() -> Path | str:
    """``$TSUNAGARI_JOURNAL`` if set, else ``tsunagari-out/journal.sqlite``."""
    import os

    from drills.operator.options import JOURNAL_ENV

    return journal_argument(os.environ.get(JOURNAL_ENV) or _DEFAULT_JOURNAL)


def add_journal_option(parser: argparse.ArgumentParser, t: Text) -> None:
    """``--journal PATH|URL`` (default: ``$TSUNAGARI_JOURNAL``, else the demo's output
    folder), shared by every command that reads or writes a journal."""
    parser.add_argument(
        "--journal",
        type=journal_argument,
        default=default_journal(),
        metavar=t("パスかURL", "PATH|URL"),
        help=t(
            f"記録: SQLite のファイルか postgresql:// の URL（既定: $TSUNAGARI_JOURNAL、なければ"
            f" {_DEFAULT_JOURNAL}）",
            f"journal: a SQLite file or a postgresql:// URL (default: $TSUNAGARI_JOURNAL, else"
            f" {_DEFAULT_JOURNAL})",
        ),
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
    # First find the subcommand with every parser empty (what --help needs), then
    # import only that subcommand's module: start-up stays free of pydantic, yaml and probes.
    listing = build_parser(lang, commands=())
    chosen, _ = listing.parse_known_args(args_list)
    if chosen.command is None:
        listing.print_help()
        return EXIT["usage"]
    parser = build_parser(lang, commands={chosen.command})
    args = parser.parse_args(args_list)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return EXIT["usage"]
    args.lang = getattr(args, "lang", lang)
    if os.environ.get("TSUNAGARI_PACE", "").strip() or os.environ.get("TSUNAGARI_WORKERS"):
        from drills.core.errors import ScenarioError
        from drills.core.pacing import Pacing
        from drills.core.shard import workers_from_env

        try:  # read before anything is sent
            Pacing.from_env()
            workers_from_env()
        except ScenarioError as exc:
            for half in str(exc).split(" / ", 1):
                print(half, file=sys.stderr)
            return EXIT["usage"]
    with guarded_output():  # no resolved secret is printed, whatever prints it
        try:
            return int(args.func(args))
        except JournalTooNew as exc:
            # A journal written by a newer tsunagari: the operator must upgrade (usage).
            print(exc.render(args.lang), file=sys.stderr)
            return EXIT["usage"]
        except HarnessError as exc:
            # e.g. a journal that is a folder, not SQLite, read-only or on a full disk:
            # "日本語 / English" as two lines, no traceback
            for half in str(exc).split(" / ", 1):
                print(half, file=sys.stderr)
            return EXIT["harness"]
        except KeyboardInterrupt:
            return EXIT["harness"]


if __name__ == "__main__":
    sys.exit(main())
