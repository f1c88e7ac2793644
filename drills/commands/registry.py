"""``tsunagari registry check FILE`` — validate a registry, print a summary or the errors."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from typing import Any

from drills.core.i18n import Text


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
    check.set_defaults(func=run_check)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run_check(args: argparse.Namespace) -> int:
    from drills.core.errors import RegistryError
    from drills.core.registry import load_registry

    t = Text(args.lang)
    try:
        reg = load_registry(args.file, check_secrets=not args.no_secrets)
    except RegistryError as exc:
        print(
            t(
                f"レジストリに誤りがあります（{len(exc.problems)} 件）:",
                f"The registry has {len(exc.problems)} problem(s):",
            ),
            file=sys.stderr,
        )
        for problem in exc.problems:
            print("  " + problem.render(args.lang), file=sys.stderr)
        return 2
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
    print("  " + ", ".join(f"{k}: {n}" for k, n in sorted(kinds.items())))
    for m in reg.municipalities:
        ids = ", ".join(f"{c.id}({c.kind}{', sim' if c.simulated else ''})" for c in m.channels)
        print(f"  {m.code} {m.name}: {ids}")
    return 0
