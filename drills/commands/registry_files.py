"""``tsunagari registry schema|docs|init`` — the files generated from the registry's models.

(The parsers are in :mod:`drills.commands.registry`: this module is imported only
when one of these actions runs.)

- ``registry schema [-o FILE]`` — the JSON Schema (for editors: ``# yaml-language-server:
  $schema=registry.schema.json``)
- ``registry docs [-o FILE]`` — the reference, ``docs/registry.md``
- ``registry init --kinds matrix,mail [-o FILE]`` — a commented starter registry; with
  ``-o`` the schema is written beside it, so the editor line at its top resolves

Exit codes: 0 written · 2 unknown kind, or a file that cannot (or must not) be written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from drills.core.i18n import Text

__all__ = ["run_docs", "run_init", "run_schema"]


def _emit(text: str, output: Path | str | None, t: Text) -> int:
    if output is None:
        sys.stdout.write(text)
        return 0
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as exc:
        print(
            t(f"{output} に書けません: {exc.strerror}", f"cannot write {output}: {exc.strerror}"),
            file=sys.stderr,
        )
        return 2
    return 0


def run_schema(args: argparse.Namespace) -> int:
    from drills.core.schema import schema_text

    return _emit(schema_text(), args.output, Text(args.lang))


def run_docs(args: argparse.Namespace) -> int:
    from drills.core.reference import reference_text

    return _emit(reference_text(), args.output, Text(args.lang))


def run_init(args: argparse.Namespace) -> int:
    from drills.core.schema import schema_text
    from drills.core.starter import UnknownKinds, starter_registry

    t = Text(args.lang)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    try:
        text = starter_registry(kinds)
    except UnknownKinds as exc:
        known = ", ".join(exc.known)
        if exc.unknown:
            unknown = ", ".join(exc.unknown)
            print(
                t(
                    f"未知のチャネル種別: {unknown}（使える種別: {known}）",
                    f"unknown channel kind(s): {unknown} (known: {known})",
                ),
                file=sys.stderr,
            )
        else:
            print(
                t(
                    f"--kinds に種別を指定してください（{known}）",
                    f"--kinds names no kind ({known})",
                ),
                file=sys.stderr,
            )
        return 2
    output = Path(args.output) if args.output is not None else None
    if output is None:
        sys.stdout.write(text)
        return 0
    if output.exists() and not args.force:
        print(
            t(
                f"{output} は既にあります（上書きするなら --force）",
                f"{output} exists already (--force overwrites it)",
            ),
            file=sys.stderr,
        )
        return 2
    code = _emit(text, output, t) or _emit(schema_text(), output.parent / "registry.schema.json", t)
    if code == 0:
        print(
            t(
                f"{output} を書きました。<<…>> を埋め、env: の環境変数を設定し、"
                f"tsunagari registry check {output} で確かめてください。",
                f"wrote {output}. Fill in every <<…>>, set the env: variables, then run "
                f"tsunagari registry check {output}.",
            ),
            file=sys.stderr,
        )
    return code
