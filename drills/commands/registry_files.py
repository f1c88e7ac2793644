"""``tsunagari registry schema|docs|init`` — the files generated from the registry's models.

(The parsers are in :mod:`drills.commands.registry`: this module is imported only
when one of these actions runs.)

- ``registry schema [-o FILE]`` — the JSON Schema (for editors: ``# yaml-language-server:
  $schema=registry.schema.json``)
- ``registry docs [-o FILE]`` — the reference, ``docs/registry.md``
- ``registry init --kinds matrix,mail [-o FILE]`` — a commented starter registry; with
  ``-o`` the schema is written beside it, so the editor line at its top resolves
- ``registry init --prefecture 13 [-o FILE]`` — the shipped registry of a whole
  prefecture (:mod:`drills.core.prefectures`: all of Tokyo, channels to fill in)

Exit codes: 0 written · 2 unknown kind or prefecture, neither or both of ``--kinds``
and ``--prefecture``, or a file that cannot (or must not) be written.
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


def _prefecture_text(asked: str, t: Text) -> str | None:
    """The shipped registry of prefecture *asked*, or None (said on stderr)."""
    from drills.core.prefectures import UnknownPrefecture, prefecture_registry

    try:
        return prefecture_registry(asked)
    except UnknownPrefecture as exc:
        shown = ", ".join(f"{n} {name}" for n, name in exc.available.items())
        print(
            t(
                f"都道府県番号 {asked!r} のレジストリは同梱されていません（同梱: {shown}）",
                f"no registry is shipped for prefecture {asked!r} (shipped: {shown})",
            ),
            file=sys.stderr,
        )
        return None


def _starter_text(kinds_arg: str, t: Text) -> str | None:
    """The starter of the kinds in *kinds_arg*, or None (said on stderr)."""
    from drills.core.starter import UnknownKinds, starter_registry

    kinds = [k.strip() for k in kinds_arg.split(",") if k.strip()]
    try:
        return starter_registry(kinds)
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
        return None


def run_init(args: argparse.Namespace) -> int:
    from drills.core.schema import schema_text

    t = Text(args.lang)
    if (args.kinds is None) == (args.prefecture is None):
        print(
            t(
                "--kinds（種別ごとのひな形）か --prefecture（都道府県の全団体）の"
                "どちらか一方を指定してください",
                "give either --kinds (a starter with those channel kinds) or --prefecture "
                "(every municipality of a prefecture), not both",
            ),
            file=sys.stderr,
        )
        return 2
    if args.prefecture is not None:
        text = _prefecture_text(args.prefecture, t)
    else:
        text = _starter_text(args.kinds, t)
    if text is None:
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
    if code == 0 and args.prefecture is not None:
        print(
            t(
                f"{output} を書きました。各団体の channels: [] を記入し（ファイル先頭の説明）、"
                f"tsunagari registry check {output} で確かめてください。",
                f"wrote {output}. Fill in each municipality's channels: [] (see the file's "
                f"header), then run tsunagari registry check {output}.",
            ),
            file=sys.stderr,
        )
    elif code == 0:
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
