"""``tsunagari registry init``: a commented starter that passes ``registry check`` once filled."""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from drills.cli import main
from drills.core.registry import known_kinds
from drills.core.schema import registry_schema
from drills.core.starter import MODELINE, PLACEHOLDER_RE, starter_registry

KINDS = sorted(known_kinds())
VALIDATOR = jsonschema.Draft202012Validator(registry_schema())

# What an operator would type for each placeholder (by its path).
FILL = {
    "municipality.code": "131211",
    "municipality.name": "足立区",
    "matrix.homeserver": "https://chat.example.lg.jp",
    "matrix.sender.user": "@drill-bot:example.lg.jp",
    "matrix.observer.user": "@drill-watch:example.lg.jp",
    "matrix.room": "!abc:example.lg.jp",
    "mail.smtp.host": "smtp.example.lg.jp",
    "mail.from": "drill@example.lg.jp",
    "mail.to": "bousai-drill@example.lg.jp",
    "mail.imap.host": "imap.example.lg.jp",
    "mail.imap.user": "bousai-drill",
    "twilio.from": "+815012345678",
    "twilio.to": "+819012345678",
    "webhook.url": "https://chat.example.lg.jp/hooks/abc",
    "webhook.observer.url": "https://chat.example.lg.jp/rooms/abc/messages",
    "slack.channel": "C0123456789",
    "mattermost.url": "https://mm.example.lg.jp",
    "mattermost.channel_id": "4xp9fdt4pbgd9b4x5yfzq8sdgw",
    "teams.team_id": "5b2c6e1a-0000-4000-8000-000000000000",
    "teams.channel_id": "19:abc@thread.tacv2",
    "teams.observer.tenant": "contoso.onmicrosoft.com",
    "teams.observer.client_id": "6731de76-0000-4000-8000-000000000000",
    "lineworks.app.client_id": "0a1b2c",
    "lineworks.app.service_account": "abcde.serviceaccount@example.lg.jp",
    "lineworks.bot_id": "2000001",
    "lineworks.channel_id": "753449a5-7716-39e4-3de9-770a97f1a5f5",
}


def fill(text: str) -> str:
    missing = sorted(set(PLACEHOLDER_RE.findall(text)) - set(FILL))
    assert not missing, f"no test value for the placeholders {missing}"
    return PLACEHOLDER_RE.sub(lambda m: FILL[m.group(1)], text)


def secrets_of(text: str) -> list[str]:
    return sorted(set(re.findall(r"\benv:([A-Z0-9_]+)", text)))


@pytest.mark.parametrize("kind", KINDS)
def test_a_filled_starter_passes_registry_check(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "registry.yaml"
    assert main(["--lang", "en", "registry", "init", "--kinds", kind, "-o", str(path)]) == 0
    text = path.read_text(encoding="utf-8")
    assert text.startswith(MODELINE + "\n")
    assert (tmp_path / "registry.schema.json").is_file()  # what the modeline points at
    # Unfilled, the file is refused, every blank named with its line.
    assert main(["--lang", "en", "registry", "check", str(path)]) == 2
    err = capsys.readouterr().err
    line = text.splitlines().index('  - code: "<<municipality.code>>"') + 1
    assert (
        f"{path}:{line}: municipalities[0].code: <<municipality.code>> from the starter "
        "is not filled in" in err
    )
    assert err.count("is not filled in") == len(PLACEHOLDER_RE.findall(text))
    path.write_text(fill(text), encoding="utf-8")
    for name in secrets_of(text):
        monkeypatch.setenv(name, "s3cret-" + name.lower())
    assert main(["--lang", "en", "registry", "check", str(path)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert f"{kind}: 1" in out and "s3cret" not in out
    assert not list(VALIDATOR.iter_errors(yaml.safe_load(path.read_text(encoding="utf-8"))))


def test_every_required_key_is_written_with_its_explanation() -> None:
    text = starter_registry(["matrix", "mail", "twilio"])
    data = yaml.safe_load(fill(text))
    channels = {c["kind"]: c for c in data["municipalities"][0]["channels"]}
    defs = registry_schema()["$defs"]
    for kind, channel in channels.items():
        for key in defs[f"channel.{kind}.live"]["required"]:
            assert key in channel, f"{kind}: {key}"
    assert {"host", "user", "password"} <= set(channels["mail"]["imap"])  # the observer
    assert {"user", "token"} <= set(channels["matrix"]["observer"])
    lines = text.splitlines()
    at = lines.index('          host: "<<mail.smtp.host>>"')
    assert lines[at - 2 : at] == [
        "          # 中継サーバのホスト名",
        "          # the relay's host name",
    ]
    # The optional keys are there too, commented, with their defaults: security, for one.
    assert any(line.strip().startswith('# security: "starttls"') for line in lines)
    assert any(line.strip().startswith('# security: "tls"') for line in lines)


def test_the_starter_fails_the_schema_until_filled() -> None:
    text = starter_registry(["matrix"])
    errors = list(VALIDATOR.iter_errors(yaml.safe_load(text)))
    assert {e.absolute_path[-1] for e in errors} >= {"code", "homeserver", "room", "user"}


def test_unknown_kinds_exit_2_with_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--lang", "en", "registry", "init", "--kinds", "matrix,smoke-signal"]) == 2
    err = capsys.readouterr().err
    assert "smoke-signal" in err and ", ".join(KINDS) in err
    assert main(["--lang", "ja", "registry", "init", "--kinds", ","]) == 2
    assert "種別" in capsys.readouterr().err


def test_init_prints_to_stdout_and_never_overwrites(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["registry", "init", "--kinds", "mail"]) == 0
    assert capsys.readouterr().out == starter_registry(["mail"])
    path = tmp_path / "registry.yaml"
    path.write_text("mine\n", encoding="utf-8")
    assert main(["--lang", "en", "registry", "init", "--kinds", "mail", "-o", str(path)]) == 2
    assert "--force" in capsys.readouterr().err and path.read_text(encoding="utf-8") == "mine\n"
    assert main(["registry", "init", "--kinds", "mail", "-o", str(path), "--force"]) == 0
    assert path.read_text(encoding="utf-8") == starter_registry(["mail"])


def test_one_blank_left_is_refused_even_where_any_text_would_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``from`` takes any string: only the placeholder check stops a mail from <<mail.from>>."""
    text = fill(starter_registry(["mail"]).replace('"<<mail.from>>"', '"@@KEEP@@"'))
    path = tmp_path / "registry.yaml"
    path.write_text(text.replace("@@KEEP@@", "<<mail.from>>"), encoding="utf-8")
    assert main(["--lang", "ja", "registry", "check", "--no-secrets", str(path)]) == 2
    err = capsys.readouterr().err
    assert "municipalities[0].channels[0].from: ひな形の <<mail.from>> が未記入です" in err
    assert err.count("未記入") == 1
