"""Sharing rules (issue 19, item 3): what channels share, what must agree, and `registry check`.

The analysis is pure (``drills.core.sharing.analyse`` over a parsed registry); the
command tests run ``tsunagari registry check`` on files and read what the operator reads.
Where the analysis says a mailbox connection is shared or split, the mail probe's own
connection key (what really decides it at run time) is checked to agree.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from drills.cli import main
from drills.core.registry import Registry, parse_registry
from drills.core.sharing import Finding, Severity, analyse

MATRIX = """\
      - id: chat
        kind: matrix
        homeserver: https://matrix.example.lg.jp
        room: "{room}"
        sender: {{user: "@drill-bot:example.lg.jp", token: env:SHARE_BOT}}
        observer: {{user: "{observer}", token: env:SHARE_WATCH}}
"""

MAIL = """\
      - id: mail
        kind: mail
        smtp: {{host: smtp.example.lg.jp, user: drill, password: env:SHARE_SMTP}}
        from: drill@example.lg.jp
        to: [{to}]
        imap: {{host: imap.example.lg.jp, user: bousai, password: env:{password}{imap}}}
"""

TWILIO = """\
      - id: sms
        kind: twilio
        account_sid: {sid}
        auth_token: env:SHARE_TWILIO
        from: "+819012345678"
        to: ["{to}"]
        status_callback: {{public_url: "{url}", listen_port: 8931}}
"""

SID_A = "AC" + "a" * 32
SID_B = "AC" + "b" * 32


def muni(code: str, name: str, *channels: str) -> str:
    return f'  - code: "{code}"\n    name: {name}\n    channels:\n' + "".join(channels)


def registry_text(*municipalities: str) -> str:
    return "municipalities:\n" + "".join(municipalities)


def matrix(room: str = "!drill:example.lg.jp", observer: str = "@drill-watch:example.lg.jp") -> str:
    return MATRIX.format(room=room, observer=observer)


def mail(to: str = "bousai@example.lg.jp", password: str = "SHARE_IMAP", imap: str = "") -> str:
    return MAIL.format(to=to, password=password, imap=imap)


def twilio(
    sid: str = SID_A, to: str = "+819087654321", url: str = "https://cb.example.lg.jp"
) -> str:
    return TWILIO.format(sid=sid, to=to, url=url)


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SHARE_BOT", "SHARE_WATCH", "SHARE_SMTP", "SHARE_TWILIO", "SHARE_IMAP"):
        monkeypatch.setenv(name, f"value-of-{name}")


def load(text: str) -> Registry:
    return parse_registry(text, "r.yaml")


def rules(findings: list[Finding], severity: Severity | None = None) -> list[str]:
    return [f.rule for f in findings if severity is None or f.severity is severity]


def check(tmp_path: Path, text: str, lang: str, *extra: str) -> tuple[int, str]:
    path = tmp_path / "registry.yaml"
    path.write_text(text, encoding="utf-8")
    return main(["--lang", lang, "registry", "check", str(path), *extra]), str(path)


def line_of(text: str, needle: str, nth: int = 1) -> int:
    lines = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    return lines[nth - 1]


# --------------------------------------------------------------------------- observer = sender


def test_a_matrix_observer_that_is_the_sender_fails_registry_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = registry_text(muni("131016", "千代田区", matrix(observer="@drill-bot:example.lg.jp")))
    for lang, words in (("ja", "送信者と同じ"), ("en", "the observer is the sender itself")):
        code, path = check(tmp_path, text, lang)
        err = capsys.readouterr().err
        where = f"{path}:{line_of(text, 'observer:')}: municipalities[0].channels[0].observer.user"
        assert code == 2 and where in err and words in err, err
        assert "@drill-bot:example.lg.jp" in err


@pytest.mark.parametrize(
    ("channel", "field"),
    [
        (
            "      - {id: chat, kind: slack, channel: C0123456, bot_token: env:SHARE_BOT,"
            " observer_token: env:SHARE_BOT}\n",
            "observer_token",
        ),
        (
            "      - {id: chat, kind: mattermost, url: https://mm.example.lg.jp,"
            " channel_id: abcdefghijklmnopqrstuvwxyz, token: env:SHARE_BOT,"
            " observer: {token: env:SAME_VALUE}}\n",
            "observer.token",
        ),
    ],
)
def test_a_token_observer_that_is_the_sender_is_an_error(
    channel: str, field: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slack and Mattermost name identities by token: the same reference, or the same value."""
    monkeypatch.setenv("SAME_VALUE", "value-of-SHARE_BOT")
    reg = load(registry_text(muni("131016", "千代田区", channel)))
    (finding,) = analyse(reg)
    assert finding.severity is Severity.ERROR and finding.rule == "observer-is-sender"
    assert ".".join(str(p) for p in finding.path[4:]) == field
    assert "SHARE_BOT" in finding.why_en and "value-of" not in finding.why_en + finding.why_ja


def test_different_observer_tokens_are_not_refused() -> None:
    channel = (
        "      - {id: chat, kind: slack, channel: C0123456, bot_token: env:SHARE_BOT,"
        " observer_token: env:SHARE_WATCH}\n"
    )
    assert analyse(load(registry_text(muni("131016", "千代田区", channel)))) == []


# --------------------------------------------------------------------------- mailboxes


def test_one_imap_account_with_two_passwords_is_an_error_naming_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTHER_IMAP", "another-password")
    text = registry_text(
        muni("131016", "千代田区", mail()),
        muni("131211", "足立区", mail(to="adachi@example.lg.jp", password="OTHER_IMAP")),
    )
    code, path = check(tmp_path, text, "en")
    err = capsys.readouterr().err
    where = f"{path}:{line_of(text, 'imap:', 2)}: municipalities[1].channels[0].imap.password"
    assert code == 2 and where in err and "one account has one password" in err, err
    assert "another-password" not in err and "value-of" not in err  # secrets never printed


def test_two_references_to_one_password_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAME_IMAP", "value-of-SHARE_IMAP")
    reg = load(
        registry_text(
            muni("131016", "千代田区", mail()),
            muni("131211", "足立区", mail(to="adachi@example.lg.jp", password="SAME_IMAP")),
        )
    )
    assert "imap-password-differs" not in rules(analyse(reg))
    # Without reading secrets (--no-secrets) nobody can tell: a warning, not an error.
    assert rules(analyse(reg, reveal=False), Severity.WARNING) == ["imap-password-unknown"]


def test_one_mailbox_agreeing_shares_one_connection() -> None:
    reg = load(
        registry_text(
            muni("131016", "千代田区", mail()),
            muni("131211", "足立区", mail(to="adachi@example.lg.jp")),
        )
    )
    findings = analyse(reg)
    assert rules(findings) == ["shared-mailbox"]
    assert "one IMAP connection" in findings[0].why_en
    assert connection_keys(reg) == 1  # what the mail probe really does at run time


def test_one_account_with_two_tls_modes_gets_two_connections_and_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = registry_text(
        muni("131016", "千代田区", mail()),
        muni("131211", "足立区", mail(to="adachi@example.lg.jp", imap=", security: starttls")),
    )
    findings = analyse(load(text))
    assert rules(findings) == ["imap-security-differs"]
    assert "security=tls" in findings[0].why_en and "security=starttls" in findings[0].why_en
    assert connection_keys(load(text)) == 2
    code, path = check(tmp_path, text, "ja")
    out = capsys.readouterr().out
    assert (
        code == 0
        and f"警告: {path}:" in out
        and "municipalities[1].channels[0].imap.security" in out
    )


def test_timing_differences_split_the_connection_harmlessly() -> None:
    reg = load(
        registry_text(
            muni("131016", "千代田区", mail()),
            muni("131211", "足立区", mail(to="adachi@example.lg.jp", imap=", poll_interval: 5s")),
        )
    )
    findings = analyse(reg)
    assert [(f.rule, f.severity) for f in findings] == [("split-mailbox", Severity.NOTE)]
    assert "poll_interval" in findings[0].why_en and connection_keys(reg) == 2


def connection_keys(reg: Registry) -> int:
    """Distinct IMAP connections the mail probe would open (its own key, probes/mail/probe.py)."""
    return len(
        {
            (*c.settings.imap.connection_key(), c.settings.cleanup)  # type: ignore[attr-defined]
            for m in reg.municipalities
            for c in m.channels
            if c.kind == "mail"
        }
    )


def test_one_address_for_two_municipalities_is_explained() -> None:
    reg = load(registry_text(muni("131016", "千代田区", mail()), muni("131211", "足立区", mail())))
    assert "shared-address" in rules(analyse(reg), Severity.NOTE)


# --------------------------------------------------------------------------- twilio


def test_one_number_under_two_accounts_is_an_error() -> None:
    reg = load(
        registry_text(
            muni("131016", "千代田区", twilio()),
            muni("131211", "足立区", twilio(sid=SID_B, to="+819011112222")),
        )
    )
    findings = analyse(reg)
    assert rules(findings, Severity.ERROR) == ["number-accounts"]
    assert findings[0].path == ("municipalities", 1, "channels", 0, "account_sid")
    assert {"shared-number"} <= set(rules(findings, Severity.NOTE))


def test_one_callback_listener_with_two_public_urls_is_an_error() -> None:
    reg = load(
        registry_text(
            muni("131016", "千代田区", twilio()),
            muni("131211", "足立区", twilio(to="+819011112222", url="https://other.example.lg.jp")),
        )
    )
    findings = analyse(reg)
    assert rules(findings, Severity.ERROR) == ["callback-url-differs"]
    assert "listen_port" in findings[0].why_en
    notes = set(rules(findings, Severity.NOTE))
    assert {"shared-number", "shared-account"} <= notes


# --------------------------------------------------------------------------- chat rooms


def test_a_shared_homeserver_and_room_are_explained_and_simulated_channels_ignored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = "      - {id: chat-sim, kind: webhook, sim: {}}\n"
    text = registry_text(
        muni("131016", "千代田区", matrix(), sim),
        muni("131211", "足立区", matrix(), sim),
        muni("131041", "新宿区", matrix(room="!shinjuku:example.lg.jp")),
    )
    findings = analyse(load(text))
    assert sorted(rules(findings)) == ["shared-homeserver", "shared-room", "shared-sender"]
    room = next(f for f in findings if f.rule == "shared-room")
    assert room.channels == ("131016/chat", "131211/chat")
    assert "not which municipality's staff read it" in room.why_en
    homeserver = next(f for f in findings if f.rule == "shared-homeserver")
    assert homeserver.why_en.startswith("3 municipalities") and "one fault" in homeserver.why_en
    code, _ = check(tmp_path, text, "en")
    out = capsys.readouterr().out
    assert code == 0 and out.count("note: ") == 3 and "What channels share:" in out


def test_a_shared_webhook_url_is_explained() -> None:
    hook = "      - {id: hook, kind: webhook, url: https://hooks.example.lg.jp/x}\n"
    reg = load(registry_text(muni("131016", "千代田区", hook), muni("131211", "足立区", hook)))
    assert rules(analyse(reg)) == ["shared-webhook"]


def test_nothing_shared_prints_nothing_extra(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = registry_text(muni("131016", "千代田区", matrix()))
    code, _ = check(tmp_path, text, "en")
    out = capsys.readouterr().out
    assert code == 0 and "What channels share" not in out and "note" not in out
