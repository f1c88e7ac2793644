"""Sharing errors refuse every drill, not only ``registry check`` (issue 19, item 3).

A drill that loads a registry — ``tsunagari run`` (the pytest session), the operator
API :func:`drills.operator.scenario.open_drill` — refuses it as ``registry check``
does: exit 2 / :class:`RegistryError`, naming file, line and field. Only the selected
municipalities' channels count (``--municipality`` still selects before secrets
are resolved); warnings are said once before the first message and fail nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from drills.core.errors import RegistryError
from drills.operator.scenario import open_drill
from drills.operator.session import DrillSession, DrillSettings
from tests.core.test_sharing import SID_B, line_of, mail, matrix, muni, registry_text, twilio

ROOT = Path(__file__).resolve().parents[2]
SECRETS = {name: f"value-of-{name}" for name in ("SHARE_BOT", "SHARE_WATCH", "SHARE_SMTP")}
SECRETS |= {"SHARE_TWILIO": "value-of-SHARE_TWILIO", "SHARE_IMAP": "value-of-SHARE_IMAP"}

# 131016 and 131211 log in to one IMAP account with two passwords (an error);
# 131130 shares 131016's account with another TLS mode (a warning: two connections).
MAILBOXES = registry_text(
    muni("131016", "千代田区", mail()),
    muni("131211", "足立区", mail(to="adachi@example.lg.jp", password="OTHER_IMAP")),
    muni("131130", "渋谷区", mail(to="shibuya@example.lg.jp", imap=", security: starttls")),
)
PASSWORD_LINE = line_of(MAILBOXES, "imap:", 2)
SECURITY_LINE = line_of(MAILBOXES, "imap:", 3)


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OTHER_IMAP", "another-password")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "registry.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- operator API

OBSERVER = registry_text(muni("131016", "千代田区", matrix(observer="@drill-bot:example.lg.jp")))
NUMBER = registry_text(
    muni("131016", "千代田区", twilio()),
    muni("131211", "足立区", twilio(sid=SID_B, to="+819011112222")),
)
ERRORS = {  # (registry, the line named, the field named)
    "one IMAP account, two passwords": (MAILBOXES, PASSWORD_LINE, "channels[0].imap.password"),
    "observer is the sender": (OBSERVER, line_of(OBSERVER, "observer:"), "observer.user"),
    "one number, two accounts": (NUMBER, line_of(NUMBER, "account_sid:", 2), "account_sid"),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_open_drill_refuses_what_registry_check_refuses(tmp_path: Path, case: str) -> None:
    text, line, field = ERRORS[case]
    path = write(tmp_path, text)
    with pytest.raises(RegistryError) as caught, open_drill(str(path)):
        pass
    rendered = caught.value.lines("ja")
    assert any(r.startswith(f"{path}:{line}: municipalities[") and field in r for r in rendered)
    assert any(f"{path}:{line}:" in r for r in caught.value.lines("en"))
    assert "another-password" not in str(caught.value)  # a secret is never printed


def test_open_drill_counts_only_the_selected_municipalities(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, MAILBOXES)
    with open_drill(str(path), select=["131016"], lang="en") as drill:
        assert drill is not None
    assert capsys.readouterr().err == ""  # 131016 alone shares nothing
    with open_drill(str(path), select=["131016", "131130"], lang="en"):
        pass
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"warning: {path}:{SECURITY_LINE}:"), err


# --------------------------------------------------------------------------- the pytest session


def test_the_session_refuses_once_and_says_warnings_once(tmp_path: Path) -> None:
    path = write(tmp_path, MAILBOXES)
    refused = DrillSession(DrillSettings(registry=path))
    for _ in range(2):  # every scenario file gets the same error
        with pytest.raises(RegistryError, match=f"{path}:{PASSWORD_LINE}: "):
            refused.registry()
    said: list[list[Any]] = []
    ok = DrillSession(DrillSettings(registry=path, select=("131016", "131130")))
    ok.on_sharing = said.append
    ok.registry()
    ok.registry()
    assert len(said) == 1 and [f.rule for f, _ in said[0]] == ["imap-security-differs"]


# --------------------------------------------------------------------------- tsunagari run

CLI = (sys.executable, "-m", "drills.cli", "--lang", "en")
SCENARIO = "def test_opens(drill):\n    assert drill is not None\n"


def tsunagari_run(
    tmp_path: Path, *extra: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_opens.py").write_text(SCENARIO, encoding="utf-8")
    return subprocess.run(
        [
            *CLI,
            "run",
            "test_opens.py",
            "--registry",
            "registry.yaml",
            "--journal",
            "j.sqlite",
            *extra,
        ],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_run_refuses_a_sharing_error_with_exit_2_naming_the_line(tmp_path: Path) -> None:
    write(tmp_path, MAILBOXES)
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    done = tsunagari_run(tmp_path, env=env)
    said = done.stdout + done.stderr
    assert done.returncode == 2, said
    assert f"registry.yaml:{PASSWORD_LINE}: municipalities[1].channels[0].imap.password" in said
    assert "one account has one password" in said
    assert "Traceback" not in said and "another-password" not in said


def test_run_of_selected_municipalities_says_their_warning_once_and_passes(
    tmp_path: Path,
) -> None:
    write(tmp_path, MAILBOXES)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "OTHER_IMAP")}
    done = tsunagari_run(
        tmp_path, "--municipality", "131016", "--municipality", "131130", env=env
    )  # 131211's secret is unset: not selected, not resolved, its sharing not judged
    assert done.returncode == 0, done.stdout + done.stderr
    records = [json.loads(line) for line in done.stderr.splitlines()]
    [warning] = [r for r in records if r["event"] == "registry_sharing"]
    assert warning["level"] == "warning" and warning["rule"] == "imap-security-differs"
    assert warning["where"] == f"{tmp_path / 'registry.yaml'}:{SECURITY_LINE}"
    assert warning["field"] == "municipalities[2].channels[0].imap.security"
    assert sorted(warning["channels"]) == ["131016/mail", "131130/mail"]
