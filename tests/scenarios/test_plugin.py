"""Scenario files written as an operator would, run by pytest with the plugin (pytester)."""

from __future__ import annotations

import sqlite3

import pytest

SCENARIO = '''\
"""地震 初動参集（試験用）"""
import pytest

pytestmark = [
    pytest.mark.scenario("初動参集テスト"),
    pytest.mark.disaster("地震"),
    pytest.mark.severity(5),
    pytest.mark.deadline("3s"),
]


def test_23区のチャット(drill):
    step = drill.broadcast("参集してください", channels="chat", to="23ku")
    step.expect(reached="100%", within="2s")


def test_全団体の全チャネル(drill):
    step = drill.broadcast("参集してください", channels=["chat", "mail"])
    step.expect(reached="100%", within="2s")
'''


def failure_text(reprec: pytest.HookRecorder, test: str) -> str:
    reports = [
        r
        for r in reprec.getreports("pytest_runtest_logreport")
        if r.failed and r.nodeid.endswith(test) and not hasattr(r, "context")
    ]
    assert reports, f"{test} did not fail"
    return reports[0].longreprtext


def test_requirements_reported_per_municipality(operator, helpers):
    operator.makepyfile(test_sanchi=SCENARIO)
    reprec = operator.inline_run("--registry", "registry.yaml", "--lang", "ja", "--seed", "1")
    passed, _skipped, failed = reprec.listoutcomes()
    assert [r.nodeid.split("::")[-1] for r in passed if not hasattr(r, "context")] == [
        "test_23区のチャット"
    ]
    assert helpers.failed_subtests(reprec) == {
        "test_全団体の全チャネル": ["千代田区 (131016)", "小笠原村 (134210)"]
    }
    subs = {r.context.msg: r.longreprtext for r in failed if hasattr(r, "context")}
    assert "test_sanchi.py:19: 千代田区 (131016): 要件未達" in subs["千代田区 (131016)"]
    assert "mail [webhook] 不達" in subs["千代田区 (131016)"]
    assert (
        "chat [webhook] 拒否 — HTTP 401: invalid_auth（Webhook の認証が拒否されました）"
        in subs["小笠原村 (134210)"]
    )
    summary = failure_text(reprec, "test_全団体の全チャネル")
    assert "要件を満たさない団体: 2" in summary and "千代田区" in summary and "小笠原村" in summary
    assert "Traceback" not in summary and "def " not in summary
    # the tags that `tsunagari run` turns into exit codes
    tags = [dict(r.user_properties)["tsunagari"]["category"] for r in failed]
    assert set(tags) == {"missed"}


def test_english_messages(operator):
    operator.makepyfile(test_sanchi=SCENARIO)
    result = operator.runpytest("--registry", "registry.yaml", "--lang", "en", "-k", "全団体")
    out = result.stdout.str()
    for expected in (
        "test_sanchi.py:19: Chiyoda City (131016): requirement missed — reached within 2 s: 1/2 (50%, needs ≥ 100%)",
        "    mail [webhook] lost — ",
        "test_sanchi.py:19: Ogasawara Village (134210): requirement missed",
        "    chat [webhook] rejected — HTTP 401: invalid_auth (the webhook refused our credentials)",
    ):
        assert expected in out
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "要件" not in out


def test_journal_run_per_scenario_file_with_metadata(operator):
    operator.makepyfile(test_sanchi=SCENARIO)
    operator.inline_run(
        "--registry", "registry.yaml", "--journal", "j.sqlite", "--vantage", "LGWAN"
    )
    db = sqlite3.connect(operator.path / "j.sqlite")
    runs = db.execute("SELECT scenario, vantage, status, meta FROM runs").fetchall()
    assert len(runs) == 1
    scenario, vantage, status, meta = runs[0]
    assert (scenario, vantage, status) == ("初動参集テスト", "LGWAN", "finished")
    assert '"disaster": "地震"' in meta and '"severity": 5' in meta and '"deadline_s": 3.0' in meta
    assert db.execute("SELECT DISTINCT vantage FROM deliveries").fetchall() == [("LGWAN",)]
    steps = {s for (s,) in db.execute("SELECT DISTINCT step FROM deliveries")}
    assert steps == {"23区のチャット", "全団体の全チャネル"}


MISTAKES = """\
def test_misspelt_channel(drill):
    drill.broadcast("x", channels=["chat", "mial"])


def test_unknown_municipality(drill):
    drill.broadcast("x", to="足立")


def test_step_with_no_channels(drill):
    drill.broadcast("x", channels=[])


def test_no_channel_for_the_addressed(drill):
    drill.broadcast("x", channels="mail", to="東京都")
"""


@pytest.mark.parametrize(
    ("test", "line", "expected"),
    [
        (
            "test_misspelt_channel",
            2,
            "unknown channel 'mial' (channel ids in this registry: chat, mail; kinds: webhook) (did you mean 'mail'?)",
        ),
        (
            "test_unknown_municipality",
            6,
            "unknown municipality '足立': no code, name or tag in the registry",
        ),
        (
            "test_step_with_no_channels",
            10,
            "channels= is empty: a step with no channels cannot run",
        ),
        (
            "test_no_channel_for_the_addressed",
            14,
            "this step has no channels to address (channels=mail, 1 municipalities)",
        ),
    ],
)
def test_operator_mistakes_name_file_and_line(operator, test, line, expected):
    operator.makepyfile(test_mistakes=MISTAKES)
    result = operator.runpytest("--registry", "registry.yaml", "--lang", "en", "-k", test)
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert f"test_mistakes.py:{line}: {expected}" in out
    assert "Traceback" not in out and "drills/" not in out and "raise " not in out


def test_mistake_in_japanese(operator):
    operator.makepyfile(test_mistakes=MISTAKES)
    result = operator.runpytest("--registry", "registry.yaml", "--lang", "ja", "-k", "misspelt")
    out = result.stdout.str()
    assert "test_mistakes.py:2: 未知のチャネル 'mial'" in out and "（もしかして 'mail'？）" in out


ONE_STEP = """\
def test_step(drill):
    drill.broadcast("x", channels="chat").expect()
"""


@pytest.mark.parametrize(
    ("args", "registry_text", "expected"),
    [
        (
            [],
            None,
            "test_one.py:1: no registry given: use --registry FILE or the ini setting tsunagari_registry",
        ),
        (
            ["--registry", "nope.yaml"],
            None,
            "nope.yaml: (file): cannot read registry: No such file or directory",
        ),
        (
            ["--registry", "typo.yaml"],
            'municipalities:\n  - code: "131211"\n    name: 足立区\n    channels:\n      - {id: chat, kind: webhok, sim: {}}\n',
            "typo.yaml:5: municipalities[0].channels[0].kind: unknown channel kind 'webhok'",
        ),
        (
            ["--registry", "live.yaml"],
            'municipalities:\n  - code: "131211"\n    name: 足立区\n    channels:\n      - {id: chat, kind: webhook, url: "http://127.0.0.1:9/hook"}\n',
            "test_one.py:2: live channels (without sim:) need --live: 131211/chat",
        ),
        (
            ["--registry", "registry.yaml", "--municipality", "足立"],
            None,
            "--municipality '足立' matches no municipality in the registry",
        ),
    ],
    ids=[
        "missing-registry",
        "registry-not-found",
        "misspelt-kind",
        "forgot-live",
        "unknown-selection",
    ],
)
def test_setup_mistakes(operator, args, registry_text, expected):
    if registry_text is not None:
        (operator.path / args[1]).write_text(registry_text, encoding="utf-8")
    operator.makepyfile(test_one=ONE_STEP)
    result = operator.runpytest(*args, "--lang", "en")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    out = result.stdout.str()
    assert expected in out
    assert "test_one.py:" in out  # every message names the scenario file
    assert "Traceback" not in out and "drills/" not in out


def test_markers_are_registered_and_strict(operator):
    result = operator.runpytest("--markers")
    result.stdout.fnmatch_lines(
        ["@pytest.mark.scenario(name)*", "@pytest.mark.deadline(duration)*"]
    )
    operator.makepyfile(
        test_typo="import pytest\n\n@pytest.mark.severty(3)\ndef test_x(drill):\n    pass\n"
    )
    result = operator.runpytest("--registry", "registry.yaml")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*'severty' not found in `markers` configuration option*"])


@pytest.mark.parametrize(
    ("marker", "expected"),
    [
        ("severity(9)", "severity must be an integer 1 to 5: 9"),
        ('disaster("隕石")', "unknown disaster kind '隕石' (known: earthquake, tsunami"),
        ('deadline("soon")', "cannot read the duration deadline='soon'"),
        ('scenario("a", "b")', "@pytest.mark.scenario(...) takes exactly one value"),
    ],
)
def test_marker_values_are_checked(operator, marker, expected):
    operator.makepyfile(
        test_meta=f"import pytest\n\npytestmark = pytest.mark.{marker}\n\n\ndef test_x(drill):\n    pass\n"
    )
    result = operator.runpytest("--registry", "registry.yaml", "--lang", "en")
    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    assert f"test_meta.py:6: {expected}" in out and "Traceback" not in out


def test_ini_settings_and_command_line_wins(operator):
    sub = operator.mkdir("drills_here")
    (sub / "pytest.ini").write_text(
        "[pytest]\naddopts = -p no:asyncio\n"
        "tsunagari_registry = ../registry.yaml\ntsunagari_journal = out/j.sqlite\n"
        "tsunagari_vantage = テレワーク\ntsunagari_lang = en\ntsunagari_municipalities = 23ku\n",
        encoding="utf-8",
    )
    (sub / "test_one.py").write_text(ONE_STEP, encoding="utf-8")
    result = operator.runpytest(
        str(sub / "test_one.py"), "--rootdir", str(sub), "-c", str(sub / "pytest.ini")
    )
    result.stdout.fnmatch_lines(
        ["tsunagari: registry=*registry.yaml live=False vantage=テレワーク lang=en"]
    )
    assert result.ret == 0
    db = sqlite3.connect(sub / "out" / "j.sqlite")
    assert db.execute("SELECT DISTINCT vantage FROM deliveries").fetchall() == [("テレワーク",)]
    codes = {c for (c,) in db.execute("SELECT municipality_code FROM deliveries")}
    assert codes == {"131211", "131016"}  # the 23ku tag from the ini
    result = operator.runpytest(
        str(sub / "test_one.py"),
        "-c",
        str(sub / "pytest.ini"),
        "--municipality",
        "islands",
        "--vantage",
        "LGWAN",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # 小笠原村: chat refused
    last = db.execute(
        "SELECT DISTINCT vantage, municipality_code FROM deliveries ORDER BY id DESC LIMIT 1"
    ).fetchall()
    assert last == [("LGWAN", "134210")]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--lang", "fr"], "--lang must be ja or en: 'fr'"),
        (["--vantage", "a/b"], "--vantage must be a name of at most 64 characters"),
        (["--push-gateway", "localhost:9091"], "--push-gateway must look like http(s)://host:port"),
        (["--seed", "x"], "--seed must be an integer"),
    ],
)
def test_bad_option_values_are_usage_errors(operator, args, expected):
    operator.makepyfile(test_one=ONE_STEP)
    result = operator.runpytest("--registry", "registry.yaml", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert expected in result.stderr.str()


def test_sessions_without_drills_stay_untouched(pytester):
    pytester.makeini("[pytest]\naddopts = -p no:asyncio\n")
    pytester.makepyfile(test_plain="def test_ok():\n    assert 1\n")
    result = pytester.runpytest()
    assert result.ret == 0
    assert "tsunagari:" not in result.stdout.str()
    assert not (pytester.path / "tsunagari-out").exists()


def test_steps_outside_the_selection_are_skipped(operator):
    operator.makepyfile(
        test_sel="""\
def test_islands(drill):
    drill.broadcast("x", to="islands").expect()


def test_roll_call(drill):
    drill.roll_call("x", room="東京都/chat", within="2s", simulated={"delay": "100ms"}).expect()


def test_23ku(drill):
    drill.broadcast("x", channels="chat", to="23ku").expect()
"""
    )
    result = operator.runpytest(
        "--registry=registry.yaml",
        "--municipality=metro",
        "--municipality=23ku",
        "-rs",
        "--lang=en",
    )
    result.assert_outcomes(passed=2, skipped=1)
    result.stdout.fnmatch_lines(
        ["SKIPPED*--municipality metro 23ku: *no selected municipality is addressed by this step"]
    )
    result = operator.runpytest(
        "--registry=registry.yaml", "--municipality=metro", "-rs", "--lang=en", "-k", "roll_call"
    )
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED*no selected municipality takes part in this roll call"])
