"""Fuzzing ``tsunagari``'s argument parsing in-process (``drills.cli``), no subprocesses.

Property: every argument list gives a Namespace with a command function, or a clean
argparse exit (2 for a usage error, 0 for ``--help``) with a message and no
traceback — never another exception. What ``main`` does before a command runs
(``detect_lang``, the light listing parser) is fuzzed the same way.
"""

from __future__ import annotations

import argparse
import contextlib
import io

from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from drills.cli import EXIT, SUBCOMMANDS, build_parser
from drills.core.i18n import LANGS, detect_lang

EXAMPLES = settings().max_examples  # 100 by default, 2,000 at night (conftest.py)
PARSERS = {lang: build_parser(lang) for lang in LANGS}  # every subcommand's full parser


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    found: set[str] = set()
    for action in parser._actions:
        found.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= _flags(sub)
    return found


def _choices(parser: argparse.ArgumentParser) -> set[str]:
    found: set[str] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.update(action.choices)
            for sub in action.choices.values():
                found |= _choices(sub)
        elif action.choices:
            found.update(str(c) for c in action.choices)
    return found


FLAGS = sorted(_flags(PARSERS["en"]))
WORDS = sorted(_choices(PARSERS["en"]))
_token = st.one_of(
    st.sampled_from(FLAGS),
    st.sampled_from(WORDS),
    st.sampled_from(["--", "-", "-h", "--help", "--lang", "ja", "en", "xx", "--lang=ja",
                     "--lang=", "registry.yaml", "/dev/null", "0", "-1", "1e400", "1" * 5000,
                     "nan", "60s", "131211", "\x00", "\ud800", "=", "--journal=", "--x=y"]),
    st.text(max_size=20),
)  # fmt: skip
_argv = st.lists(_token, max_size=8)


def parse(lang: str, argv: list[str]) -> tuple[argparse.Namespace | None, int | None, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            return PARSERS[lang].parse_args(argv), None, err.getvalue()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else EXIT["usage"]
            return None, code, err.getvalue()


COMMANDS = [name for name, *_ in SUBCOMMANDS]


@given(st.sampled_from(COMMANDS), _argv, st.sampled_from(LANGS))
@settings(max_examples=EXAMPLES * 4)
@example("registry", ["check"], "ja")
@example("run", ["--seed", "1" * 5000], "en")
@example("scorecard", ["--lang"], "en")
def test_subcommand_arguments_parse_or_exit_cleanly(cmd, rest, lang):
    args, code, err = parse(lang, [cmd, *rest])
    assert "Traceback" not in err
    if args is None:
        assert code in (0, EXIT["usage"]), code
        if code == EXIT["usage"]:
            assert err.strip(), "a usage error says why"
        event(f"{cmd}: exit {code}")
        return
    event(f"{cmd}: parsed")
    assert args.command == cmd


@given(_argv, st.sampled_from(LANGS))
@settings(max_examples=EXAMPLES * 2)
@example([], "en")
@example(["--lang"], "ja")
def test_any_arguments_parse_or_exit_cleanly(argv, lang):
    args, code, err = parse(lang, argv)
    assert "Traceback" not in err
    assert args is not None or code in (0, EXIT["usage"])


@given(_argv, st.dictionaries(st.sampled_from(["TSUNAGARI_LANG", "LANG", "LC_ALL"]), st.text()))
@settings(max_examples=EXAMPLES)
def test_what_main_does_first(argv, environ):
    lang = detect_lang(argv, environ)
    assert lang in LANGS
    listing = build_parser(lang, commands=())
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        try:
            listing.parse_known_args(argv)
        except SystemExit as exc:
            assert exc.code in (0, EXIT["usage"])
