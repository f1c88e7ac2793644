"""The command line: help in both languages for every subcommand, meaningful exit codes."""

from __future__ import annotations

import argparse
import re

import pytest

from drills.cli import SUBCOMMANDS, build_parser, main

JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")


def subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def subcommands(lang: str) -> list[str]:
    return sorted(subparsers(build_parser(lang)).choices)


def one_line_helps(parser: argparse.ArgumentParser) -> dict[str, str]:
    return {a.dest: a.help for a in subparsers(parser)._choices_actions}


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_help_of_every_subcommand(lang, capsys):
    names = subcommands(lang)
    assert {"demo", "registry"} <= set(names)
    for argv in ([], *([n] for n in names)):
        with pytest.raises(SystemExit) as info:
            main(["--lang", lang, *argv, "--help"])
        assert info.value.code == 0
        out = capsys.readouterr().out
        assert out.strip()
        if lang == "ja":
            assert JAPANESE.search(out), argv
            assert "使い方" in out
        else:
            assert not JAPANESE.search(out.replace("【訓練】", "")), (argv, out)
            assert "usage:" in out


def test_language_follows_locale(monkeypatch, capsys):
    monkeypatch.delenv("TSUNAGARI_LANG", raising=False)
    monkeypatch.setenv("LC_ALL", "ja_JP.UTF-8")
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "使い方" in capsys.readouterr().out
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "usage:" in capsys.readouterr().out


def test_registry_check_exit_codes(tmp_path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text(
        'municipalities:\n  - code: "131016"\n    name: 千代田区\n    channels:\n      - {id: c, kind: webhook, sim: {}}\n'
    )
    assert main(["--lang", "en", "registry", "check", str(good)]) == 0
    assert "1 municipalities, 1 channels (1 simulated)" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text().replace("webhook", "webhok"))
    assert main(["--lang", "ja", "registry", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:5: municipalities[0].channels[0].kind: 未知のチャネル種別 'webhok'" in err
    assert "Traceback" not in err


def test_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--lang", "en", "no-such-command"])
    assert info.value.code == 2


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_the_lazy_table_says_what_each_module_says(lang):
    """The top-level help comes from SUBCOMMANDS; each line is the module's own."""
    listed = one_line_helps(build_parser(lang, commands=()))
    registered = one_line_helps(build_parser(lang))
    assert list(listed) == [name for name, *_ in SUBCOMMANDS] == list(registered)
    assert listed == registered
    assert "journal" in listed


def test_only_the_chosen_subcommand_gets_its_full_parser():
    parser = build_parser("en", commands={"cron"})
    choices = subparsers(parser).choices
    assert choices["cron"]._actions and choices["cron"].get_default("func") is not None
    assert choices["demo"]._actions == [] and choices["demo"].get_default("func") is None
    args = parser.parse_args(["cron", "--schedule", "@daily"])
    assert args.schedule == "@daily"


@pytest.mark.parametrize(
    "argv",
    [
        ["cron", "--schedule", "@daily"],
        ["--lang", "en", "cron", "--schedule", "@daily"],
        ["--lang=en", "cron", "--schedule", "@daily", "--", "--registry", "r.yaml"],
        ["cron", "--lang", "en", "--schedule", "@daily"],
    ],
)
def test_the_subcommand_is_found_wherever_the_options_are(argv, capsys):
    assert main(argv) == 0
    assert "OnCalendar=" in capsys.readouterr().out


def test_no_command_prints_the_help_and_exits_2(capsys):
    assert main(["--lang", "en"]) == 2
    out = " ".join(capsys.readouterr().out.split())  # help lines wrap with the terminal
    assert "usage:" in out
    for name, _module, _ja, en in SUBCOMMANDS:
        assert name in out and en in out
