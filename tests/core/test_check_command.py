"""``tsunagari check``: a table or JSON of every channel's preflight, and its exit codes."""

from __future__ import annotations

import json

import pytest

from drills.cli import main

HEALTHY = """\
municipalities:
  - code: "131211"
    name: 足立区
    tags: [23ku]
    channels:
      - {id: chat, kind: webhook, sim: {}}
      - {id: mail, kind: mail, to: drill@adachi.example.lg.jp, sim: {}}
  - code: "131016"
    name: 千代田区
    tags: [23ku]
    channels:
      - {id: chat, kind: webhook, sim: {outage: true}}
"""

SECRET = """\
municipalities:
  - code: "131211"
    name: 足立区
    channels:
      - id: mail
        kind: mail
        smtp: {host: 127.0.0.1, user: drill, password: env:TSUNAGARI_TEST_UNSET_PW}
        from: a@example.lg.jp
        to: b@example.lg.jp
"""


@pytest.fixture
def registry(tmp_path):
    path = tmp_path / "registry.yaml"
    path.write_text(HEALTHY, encoding="utf-8")
    return path


def test_table_of_healthy_channels_exits_0(registry, capsys):
    code = main(["--lang", "ja", "check", str(registry), "--municipality", "足立区"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "事前確認（送信なし）" in out and "JST" in out
    assert "131211/chat" in out and "131211/mail" in out and "131016" not in out
    assert "observer.read" in out and "smtp.auth" in out  # each phase with its time
    assert "失敗" not in out


def test_json_names_the_failing_phase_and_exits_1(registry, capsys):
    code = main(["--lang", "en", "check", str(registry), "--format", "json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 1
    assert doc["ok"] is False
    by_target = {t["target"]: t for t in doc["targets"]}
    assert set(by_target) == {"131211/chat", "131211/mail", "131016/chat"}
    down = by_target["131016/chat"]
    assert down["ok"] is False and down["cached"] is False
    assert down["reason"]["en"].startswith("observer.connect: ")
    assert down["reason"]["ja"].startswith("observer.connect: ")
    failed = [p for p in down["phases"] if not p["ok"]]
    assert [(p["name"], p["phase"]) for p in failed] == [("observer.connect", "connect")]
    mail = by_target["131211/mail"]
    assert mail["ok"] and all(p["seconds"] >= 0 for p in mail["phases"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--municipality", "大阪市"], "matches no municipality"),
        (["--timeout", "soon"], "timeout"),
        (["--rate-limit", "linework=3/60s"], "no kind 'linework'"),
        (["--rate-limit", "webhook=0/60s"], "cannot read --rate-limit"),
        (["--rate-limit", "webhook=3/soon"], "cannot read --rate-limit"),
    ],
)
def test_usage_errors_exit_2(registry, capsys, argv, message):
    assert main(["--lang", "en", "check", str(registry), *argv]) == 2
    assert message in capsys.readouterr().err


def test_registry_errors_exit_2_naming_the_file(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TSUNAGARI_TEST_UNSET_PW", raising=False)
    path = tmp_path / "r.yaml"
    path.write_text(SECRET, encoding="utf-8")
    assert main(["--lang", "en", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "r.yaml" in err and "TSUNAGARI_TEST_UNSET_PW" in err
    assert main(["--lang", "en", "check", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err


def test_rate_limit_option_holds_back_checks_of_a_kind(registry, capsys):
    """``--rate-limit webhook=1/60s``: of the two webhook channels one is checked, the other
    is skipped naming the limit (not failed: exit 0 with 足立区's mail fine)."""
    argv = ["--lang", "en", "check", str(registry), "--format", "json", "--timeout", "2s"]
    code = main([*argv, "--rate-limit", "webhook=1/60s"])
    doc = json.loads(capsys.readouterr().out)
    webhooks = [t for t in doc["targets"] if t["kind"] == "webhook"]
    skipped = [t for t in webhooks if t["skipped"]]
    assert len(webhooks) == 2 and len(skipped) == 1
    assert "at most 1 times per 60 s" in skipped[0]["skipped"]["en"]
    checked = next(t for t in webhooks if not t["skipped"])
    assert code == (0 if checked["ok"] else 1)  # the skipped one never counts against it
    assert main([*argv, "--rate-limit", "webhook=off"]) == 1  # both checked: 千代田区 is down
    assert not any(t["skipped"] for t in json.loads(capsys.readouterr().out)["targets"])


def test_a_channel_without_observer_is_said_in_its_row():
    from drills.commands.check import rows
    from drills.core.preflight import Checked
    from probes.preflight import NO_OBSERVER, PhaseResult, PreflightReport

    ok = PhaseResult("sender.auth", "auth", True, 0.01)
    blind = PreflightReport("131211/chat", "slack", (ok,), facts={"observer_configured": 0.0})
    seen = PreflightReport("131211/mail", "mail", (ok,), facts={"observer_configured": 1.0})
    [blind_row, seen_row] = rows([Checked(blind, 0.0), Checked(seen, 0.0)], "en")
    assert blind_row[2] == "OK" and blind_row[5] == NO_OBSERVER.en
    assert seen_row[5] == ""
    assert rows([Checked(blind, 0.0)], "ja")[0][5] == NO_OBSERVER.ja
