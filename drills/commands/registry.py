"""``tsunagari registry check FILE`` — validate a registry, print a summary or the errors.

A municipality whose channels are not filled in yet (``channels: []``, as
``registry init --prefecture 13`` writes all of Tokyo) is accepted with a warning on
stderr; ``tsunagari run`` refuses to drill it (:func:`drills.steps.selection.check_selection`).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from typing import TYPE_CHECKING, Any

from drills.core.i18n import Text

if TYPE_CHECKING:
    from drills.core.errors import RegistryError


def refused(exc: KeyError | RegistryError, lang: str) -> int:
    """Say why the registry, or the ``--municipality`` selection in it, cannot be used.

    One wording for every command that loads a registry (``registry check``, ``check``):
    an unknown selector (``KeyError``) or every problem of a ``RegistryError``. Exit 2.
    """
    t = Text(lang)
    if isinstance(exc, KeyError):
        print(
            t(
                f"--municipality {exc.args[0]!r} に当たる団体がありません",
                f"--municipality {exc.args[0]!r} matches no municipality",
            ),
            file=sys.stderr,
        )
        return 2
    print(
        t(
            f"レジストリに誤りがあります（{len(exc.problems)} 件）:",
            f"The registry has {len(exc.problems)} problem(s):",
        ),
        file=sys.stderr,
    )
    for line in exc.lines(lang):
        print("  " + line, file=sys.stderr)
    return 2


def register(sub: Any, t: Text) -> None:
    from drills.cli import add_help

    p = sub.add_parser(
        "registry",
        help=t(
            "レジストリ（団体とチャネルの登録簿）を扱う",
            "work with the registry of municipalities and channels",
        ),
        add_help=False,
    )
    add_help(p, t)
    inner = p.add_subparsers(
        dest="registry_command", metavar=t("操作", "ACTION"), parser_class=type(p)
    )
    check = inner.add_parser(
        "check",
        help=t(
            "レジストリを検証し、要約か誤りを表示",
            "validate a registry; print a summary or the errors",
        ),
        add_help=False,
    )
    add_help(check, t)
    check.add_argument("file", help=t("レジストリの YAML ファイル", "registry YAML file"))
    check.add_argument(
        "--no-secrets",
        action="store_true",
        help=t("秘密情報の参照先を確認しない", "do not check that secret references resolve"),
    )
    check.add_argument(
        "--municipality",
        action="append",
        default=[],
        metavar="SEL",
        help=t(
            "秘密情報はこの団体のものだけ確認する（コード・名前・タグ、複数可。構造は全体を検証）",
            "check secrets of these municipalities only (code, name or tag; repeatable; "
            "the structure is checked for all)",
        ),
    )
    check.set_defaults(func=run_check)
    _register_files(inner, t)  # schema, docs, init (drills/commands/registry_files.py)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run_check(args: argparse.Namespace) -> int:
    from drills.core.errors import RegistryError
    from drills.core.registry import load_registry
    from drills.core.sharing import check_sharing, said

    t = Text(args.lang)
    try:
        reg = load_registry(args.file, check_secrets=False)
        if not args.no_secrets:
            reg.check_secrets(reg.targets(args.municipality))
        # every channel's sharing (the structure of the whole file is checked)
        notes = [said(f, p, args.lang) for f, p in check_sharing(reg, reveal=not args.no_secrets)]
    except (KeyError, RegistryError) as exc:
        return refused(exc, args.lang)
    channels = [c for m in reg.municipalities for c in m.channels]
    kinds = Counter(c.kind for c in channels)
    simulated = sum(c.simulated for c in channels)
    print(t(f"{reg.path}: 問題なし", f"{reg.path}: OK"))
    print(
        t(
            f"  団体 {len(reg.municipalities)}、チャネル {len(channels)}（うちシミュレータ {simulated}）",
            f"  {len(reg.municipalities)} municipalities, {len(channels)} channels ({simulated} simulated)",
        )
    )
    if kinds:
        print("  " + ", ".join(f"{k}: {n}" for k, n in sorted(kinds.items())))
    for m in reg.municipalities:
        ids = ", ".join(f"{c.id}({c.kind}{', sim' if c.simulated else ''})" for c in m.channels)
        ids = ids or t("（チャネル未記入）", "(channels not filled in yet)")
        print(f"  {m.code} {m.name}: {ids}")
    if notes:
        print(t("共有しているもの:", "What channels share:"))
        for line in notes:
            print("  " + line)
    unfilled = reg.unfilled()
    if unfilled:
        print(
            t(
                f"警告: {len(unfilled)} 団体のチャネルが未記入です（channels: []）。"
                "記入するまで tsunagari run はこれらの団体を選ぶと拒否します。",
                f"warning: {len(unfilled)} municipalities have no channels filled in yet "
                "(channels: []); tsunagari run refuses a selection that includes them until "
                "they are filled in.",
            ),
            file=sys.stderr,
        )
    return 0


# --------------------------------------------------------------------------- generated files


def _register_files(inner: Any, t: Text) -> None:
    """Add ``schema``, ``docs`` and ``init`` to the ``registry`` subparsers *inner*."""
    from drills.cli import add_help

    for name, ja, en in (
        (
            "schema",
            "レジストリの JSON Schema を出力（エディタの補完・検査用）",
            "print the registry's JSON Schema (completion and checks in editors)",
        ),
        (
            "docs",
            "レジストリのリファレンス（Markdown）を出力",
            "print the registry reference (Markdown)",
        ),
    ):
        generated = inner.add_parser(name, help=t(ja, en), add_help=False)
        add_help(generated, t)
        _output(generated, t)
        generated.set_defaults(func=_run_file)

    init = inner.add_parser(
        "init",
        help=t(
            "説明付きのひな形レジストリを書く",
            "write a commented starter registry",
        ),
        add_help=False,
    )
    add_help(init, t)
    init.add_argument(
        "--kinds",
        metavar="KIND[,KIND…]",
        help=t(
            "チャネル種別（例: matrix,mail,twilio）: 団体 1 つと種別ごとのチャネルのひな形",
            "channel kinds (e.g. matrix,mail,twilio): one municipality, one channel of each kind",
        ),
    )
    init.add_argument(
        "--prefecture",
        metavar="NN",
        help=t(
            "都道府県番号（例: 13 = 東京都）: 全団体を載せた同梱のレジストリ"
            "（コード・名前・タグ入り、チャネルは未記入）。--kinds とどちらか一方",
            "prefecture number (e.g. 13 = Tokyo): the shipped registry of all its "
            "municipalities (codes, names, tags; channels to fill in). Instead of --kinds",
        ),
    )
    _output(init, t)
    init.add_argument(
        "--force",
        action="store_true",
        help=t("既存のファイルを上書きする", "overwrite an existing file"),
    )
    init.set_defaults(func=_run_file)


def _output(parser: argparse.ArgumentParser, t: Text) -> None:
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help=t("書き出すファイル（既定: 標準出力）", "file to write (default: standard output)"),
    )


def _run_file(args: argparse.Namespace) -> int:
    """``registry schema|docs|init``: imported only when one of them runs."""
    from drills.commands import registry_files

    run = {
        "schema": registry_files.run_schema,
        "docs": registry_files.run_docs,
        "init": registry_files.run_init,
    }[args.registry_command]
    return run(args)
