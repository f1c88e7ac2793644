"""One of each (issue 13): one options table, one live check, one run-outputs writer,
one journal default, and probe capabilities declared as protocols."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest

import drills.reporting.html
from drills.cli import build_parser
from drills.commands.run import pytest_args
from drills.core.errors import DrillSafetyError
from drills.core.journal import Journal
from drills.core.registry import Registry, Target, load_registry, parse_registry
from drills.core.requirements import ScenarioMistake
from drills.core.runner import Drill, check_live, live_channels
from drills.operator.demo import demo_registry_path
from drills.operator.options import DEFAULT_JOURNAL, DEFAULT_OUT, OPTIONS, Option, journal_in
from drills.operator.outputs import RUN_FILES, write_run_outputs
from drills.operator.plugin import SESSION
from drills.operator.scenario import open_drill
from drills.operator.session import DrillSettings
from drills.steps.answers import reply_book
from probes.base import CollectsReplies, ExplainsTimeout, Priced, Probe, ProbeEnv

# --------------------------------------------------------------------------- options

# Each option as an operator gives it, and the setting it becomes (a path is relative to
# the folder it was given in). A new row in OPTIONS needs a value here, and then every
# test below checks it on the pytest command line, in the ini file and in `tsunagari run`.
GIVEN: dict[str, tuple[Any, Any]] = {
    "registry": ("r.yaml", Path("r.yaml")),
    "select": (["23ku", "metro"], ("23ku", "metro")),
    "live": (True, True),
    "dry_run": (True, True),
    "journal": ("j/journal.sqlite", Path("j/journal.sqlite")),
    "out": ("o", Path("o")),
    "push_gateway": ("http://127.0.0.1:9091", "http://127.0.0.1:9091"),
    "textfile": ("m/drill.prom", Path("m/drill.prom")),
    "lang": ("en", "en"),
    "vantage": ("LGWAN", "LGWAN"),
    "lock": ("l/run.lock", Path("l/run.lock")),
    "seed": ("7", 7),
    "unannounced": ("09:00-17:00", "09:00-17:00"),
}


def expected(option: Option, base: Path) -> Any:
    value = GIVEN[option.name][1]
    return base / value if isinstance(value, Path) else value


def by_name(option: Option) -> str:
    return option.name


def test_every_option_has_a_value_to_test_with() -> None:
    assert [o.name for o in OPTIONS] == list(GIVEN)


def test_the_settings_have_one_field_per_option() -> None:
    assert [f.name for f in dataclasses.fields(DrillSettings)] == [o.name for o in OPTIONS]


@pytest.mark.parametrize("option", OPTIONS, ids=by_name)
def test_every_option_is_a_pytest_option_an_ini_setting_and_a_run_flag(
    pytester: pytest.Pytester, option: Option
) -> None:
    config = pytester.parseconfig("-p", "no:asyncio")
    assert config.getoption(option.dest) is None  # ValueError if pytest has no such option
    config.getini(option.ini)  # ValueError if there is no such ini setting
    given = GIVEN[option.name][0]
    args = build_parser("en").parse_args(["run", *option.to_args(given)])
    assert getattr(args, option.run_dest) == given


@pytest.mark.parametrize("option", OPTIONS, ids=by_name)
def test_a_value_given_to_tsunagari_run_reaches_the_drill_settings(
    pytester: pytest.Pytester, option: Option
) -> None:
    args = build_parser("en").parse_args(["run", *option.to_args(GIVEN[option.name][0])])
    args.lang = getattr(args, "lang", "ja")
    config = pytester.parseconfigure(*pytest_args(args, tty=False))
    settings = config.stash[SESSION].settings
    assert getattr(settings, option.name) == expected(option, Path.cwd())


@pytest.mark.parametrize("option", OPTIONS, ids=by_name)
def test_the_same_value_in_the_ini_file_gives_the_same_setting(
    pytester: pytest.Pytester, option: Option
) -> None:
    given = GIVEN[option.name][0]
    text = " ".join(given) if isinstance(given, list) else str(given)
    pytester.makeini(f"[pytest]\n{option.ini} = {text}\n")
    config = pytester.parseconfigure("-p", "no:asyncio")
    settings = config.stash[SESSION].settings
    assert getattr(settings, option.name) == expected(option, pytester.path)


def test_the_journal_default_is_one_constant(tmp_path: Path) -> None:
    assert DrillSettings().journal == DEFAULT_JOURNAL == journal_in(DEFAULT_OUT)
    assert DrillSettings.build({}, tmp_path).journal == tmp_path / DEFAULT_JOURNAL
    assert DrillSettings.build({"out": "o"}, tmp_path).journal == journal_in(tmp_path / "o")


# --------------------------------------------------------------------------- the live check

LIVE = """\
municipalities:
  - code: "131211"
    name: 足立区
    channels:
      - {id: chat, kind: webhook, url: "http://127.0.0.1:9/hook"}
      - {id: sim, kind: webhook, sim: {latency: 10ms}}
"""


def test_the_runner_and_the_scenario_refuse_a_live_channel_with_one_message(
    tmp_path: Path,
) -> None:
    registry = parse_registry(LIVE, "live.yaml")

    async def runner_step() -> None:
        with Journal(tmp_path / "runner.sqlite") as journal:
            async with Drill(registry, journal) as drill:
                await drill.broadcast("x", timeout=1)

    with pytest.raises(DrillSafetyError) as by_runner:
        asyncio.run(runner_step())
    with open_drill(registry, str(tmp_path / "scenario.sqlite")) as drill:
        with pytest.raises(DrillSafetyError) as by_scenario:
            drill.broadcast("x", timeout="1s")
    message = str(by_runner.value)
    assert message == str(by_scenario.value)
    assert isinstance(by_scenario.value, ScenarioMistake)  # reported as the operator's mistake
    assert message == (
        "実チャネル（sim: のないチャネル）への送信には --live が必要です: 131211/chat"
        " / live channels (without sim:) need --live: 131211/chat"
    )
    check_live(registry.targets(), live=True)  # --live: nothing to refuse


TWILIO = """\
municipalities:
  - code: "131211"
    name: 足立区
    channels:
      - {{id: sms, kind: twilio, account_sid: AC00000000000000000000000000000000,
          auth_token: "env:TSG_NO_SUCH_TOKEN", from: "+815012345678", to: ["+819012345678"]{extra}}}
"""


def test_the_probe_says_whether_a_channel_without_sim_is_live() -> None:
    real = parse_registry(TWILIO.format(extra=""), "r.yaml", check_secrets=False)
    local = parse_registry(
        TWILIO.format(extra=', api_base: "http://127.0.0.1:9"'), "r.yaml", check_secrets=False
    )
    assert live_channels(real.targets()) == ["131211/sms"]  # api.twilio.com
    assert live_channels(local.targets()) == []  # Probe.is_live(): a Twilio on loopback
    check_live(local.targets(), live=False)
    assert live_channels(parse_registry(LIVE, "l.yaml").targets(kinds=["webhook"])) == [
        "131211/chat"
    ]


# --------------------------------------------------------------------------- capabilities


def demo_probes() -> dict[str, tuple[Target, Probe]]:
    """One probe of each kind of the demo registry, built (not opened) from its settings."""
    registry: Registry = load_registry(demo_registry_path())
    out: dict[str, tuple[Target, Probe]] = {}
    for target in registry.targets():
        channel = target.channel
        if channel.kind not in out:
            probe = channel.probe_class()(target.key, channel.settings, ProbeEnv())
            out[channel.kind] = (target, probe)
    return out


def test_probe_capabilities_are_protocols_checked_with_isinstance() -> None:
    probes = demo_probes()
    assert set(probes) == {"webhook", "mail", "twilio"}
    has = {
        kind: {
            name
            for name, protocol in (
                ("priced", Priced),
                ("explains_timeout", ExplainsTimeout),
                ("collects_replies", CollectsReplies),
            )
            if isinstance(probe, protocol)
        }
        for kind, (_, probe) in probes.items()
    }
    assert has == {
        "webhook": {"collects_replies", "explains_timeout"},
        "mail": set(),
        "twilio": {"priced", "explains_timeout"},
    }
    target, webhook = probes["webhook"]
    assert isinstance(webhook, CollectsReplies)
    assert reply_book(webhook, target) is webhook.replies
    target, mail = probes["mail"]
    with pytest.raises(ScenarioMistake, match="cannot collect answers"):
        reply_book(mail, target)


# --------------------------------------------------------------------------- run outputs

SMALL = """\
municipalities:
  - code: "131211"
    name: 足立区
    channels: [{id: chat, kind: webhook, sim: {latency: 10ms}}]
"""


def one_run(journal: Journal, registry: Registry) -> str:
    async def go() -> str:
        async with Drill(registry, journal, scenario="outputs") as drill:
            await drill.broadcast("x", timeout=2)
        assert drill.run_id is not None
        return drill.run_id

    return asyncio.run(go())


def test_run_outputs_are_written_once_and_a_broken_file_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = parse_registry(SMALL, "small.yaml")
    with Journal(tmp_path / "journal.sqlite") as journal:
        run_id = one_run(journal, registry)
        done = write_run_outputs(journal, run_id, registry, tmp_path / "all", lang="en")
        assert done.problems == []
        assert [p.name for p in done.written] == list(RUN_FILES)
        assert [m["code"] for m in done.scorecard["municipalities"]] == ["131211"]

        def broken(*args: object, **kw: object) -> None:
            raise OSError("disk full")

        monkeypatch.setattr(drills.reporting.html, "write_html", broken)
        done = write_run_outputs(journal, run_id, registry, tmp_path / "some", lang="en")
    assert done.problems == ["scorecard.html: OSError: disk full"]
    assert sorted(p.name for p in (tmp_path / "some").iterdir()) == [
        "metrics.prom",
        "scorecard.json",
    ]


def test_a_session_writes_the_same_run_outputs_as_the_demo(operator: pytest.Pytester) -> None:
    operator.makepyfile(
        test_one="def test_all(drill):\n    drill.broadcast('x', channels=['chat'], timeout='1s')\n"
    )
    result = operator.runpytest("--registry=registry.yaml", "--out=out", "--lang=en")
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED), result.stdout.str()
    (run_dir,) = (operator.path / "out" / "runs").iterdir()
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(RUN_FILES)
