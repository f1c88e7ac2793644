"""Mailboxes and mail accounts: one login per agreeing mailbox, one password per account."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drills.core.sharing.findings import (
    Finding,
    Seat,
    Severity,
    about,
    groups,
    names,
    names_en,
    recipients,
    unlike_secrets,
)

__all__ = ["mail_rules"]

# Connection settings of an IMAP observer besides the account; a difference splits the
# connection. The first four are about security (warning), the rest about timing (note).
_IMAP_SECURITY = ("security", "port", "ca_file", "verify")
_IMAP_TIMING = ("strategy", "poll_interval", "fast_interval", "window", "timeout")


def _imap_value(imap: Any, name: str) -> Any:
    return imap.effective_port if name == "port" else getattr(imap, name)


def _split_account(group: list[Seat]) -> Finding | None:
    """One IMAP account read with different security settings: one connection each."""
    first = group[0].get("imap")
    differ = [
        name
        for name in _IMAP_SECURITY
        if any(_imap_value(s.get("imap"), name) != _imap_value(first, name) for s in group[1:])
    ]
    if not differ:
        return None
    at = next(
        i
        for i, s in enumerate(group)
        if i and any(_imap_value(s.get("imap"), n) != _imap_value(first, n) for n in differ)
    )
    listed = ", ".join(differ)
    values = "; ".join(
        f"{s.key}: " + ", ".join(f"{n}={_imap_value(s.get('imap'), n)}" for n in differ)
        for s in group
    )
    where = f"{first.user}@{first.host}"
    return about(
        Severity.WARNING,
        "imap-security-differs",
        group,
        ("imap", differ[0]),
        f"IMAP アカウント {where} を読む設定（{listed}）がチャネルで違うため、チャネルごとに別の"
        f"接続を使います（{values}）。サーバーが一方の方式しか受け付けなければ、もう一方の観測は"
        "失敗します: そろえてください",
        f"the IMAP account {where} is read with different {listed} ({values}), so each channel "
        "gets its own connection: if the server accepts only one of them, the other's observer "
        "will fail — make them agree",
        at=at,
    )


def _password_findings(
    group: list[Seat], block: str, what_ja: str, what_en: str, reveal: bool
) -> list[Finding]:
    """Channels logging in to one account must give one password (compared to the first)."""
    out = []
    for other, first, same in unlike_secrets(group, block, "password", reveal=reveal):
        user, host = other.get(block, "user"), other.get(block, "host")
        if same is False:
            line = first.channel.line
            severity, rule = Severity.ERROR, "differs"
            ja = (
                f"{what_ja}アカウント {user}@{host} を {first.key}（{line} 行目のチャネル）も"
                "使っていますが、パスワードが違います: 一つのアカウントのパスワードは一つです。"
                "正しい方にそろえてください"
            )
            en = (
                f"{what_en} account {user}@{host} is also used by {first.key} (channel on line "
                f"{line}) with another password: one account has one password — make them agree"
            )
        else:
            severity, rule = Severity.WARNING, "unknown"
            ja = (
                f"{what_ja}アカウント {user}@{host} を {first.key} も使っていますが、パスワードの"
                f"参照先が違い（{first.get(block, 'password')} と "
                f"{other.get(block, 'password')}）、値を比べられません: 同じ値であることを確認"
                "してください"
            )
            en = (
                f"{what_en} account {user}@{host} is also used by {first.key} through another "
                f"reference ({first.get(block, 'password')} vs "
                f"{other.get(block, 'password')}) that cannot be read now: make sure they hold "
                "the same password"
            )
        where = (block, "password")
        out.append(about(severity, f"{block}-password-{rule}", [other, first], where, ja, en))
    return out


def mail_rules(seats: list[Seat], reveal: bool) -> list[Finding]:
    mail = [s for s in seats if s.channel.kind == "mail"]
    out: list[Finding] = []

    def account(block: str) -> Callable[[Seat], Any]:
        def key(s: Seat) -> Any:
            if s.get(block) is None or s.get(block, "user") is None:
                return None
            return (str(s.get(block, "host")).lower(), s.get(block, "user"))

        return key

    for group in groups(mail, account("imap")):
        out += _password_findings(group, "imap", "IMAP ", "IMAP", reveal)
        split = _split_account(group)
        if split is not None:
            out.append(split)
    for group in groups(mail, account("smtp")):
        out += _password_findings(group, "smtp", "SMTP ", "SMTP", reveal)

    def mailbox(s: Seat) -> Any:
        if s.get("imap") is not None:
            return (
                "imap",
                str(s.get("imap", "host")).lower(),
                s.get("imap", "user"),
                s.get("imap", "mailbox"),
            )
        return ("maildir", s.get("maildir")) if s.get("maildir") else None

    for group in groups(mail, mailbox):
        finding = _mailbox_finding(group)
        if finding is not None:
            out.append(finding)
    for address, group in recipients(mail, str.lower):
        out.append(
            about(
                Severity.NOTE,
                "shared-address",
                group,
                ("to",),
                f"宛先 {address} を複数の団体が使います（{names(group)}）: 一つのメールボックスが"
                "それらの団体の着信を代表します",
                f"the address {address} is used by several municipalities "
                f"({names_en(group)}): one mailbox answers for all of them",
            )
        )
    return out


def _mailbox_finding(group: list[Seat]) -> Finding | None:
    first = group[0]
    if first.get("imap") is None:
        where = f"Maildir {first.get('maildir')}"
        return about(
            Severity.NOTE,
            "shared-mailbox",
            group,
            ("maildir",),
            f"{names(group)} は同じ {where} に届きます: 監視は一つで、着信の確認はこのメール"
            "ボックスに届いたことを示します（各メールはトークンで区別されます）",
            f"{names_en(group)} deliver into the same {where}: one observer watches it, and a "
            "confirmation says the mail reached this mailbox (each mail is told apart by its token)",
        )
    imap = first.get("imap")
    where = f"{imap.user}@{imap.host}/{imap.mailbox}"
    differ: list[str] = []
    for s in group[1:]:
        for name in (*_IMAP_SECURITY, *_IMAP_TIMING):
            if _imap_value(s.get("imap"), name) != _imap_value(imap, name) and name not in differ:
                differ.append(name)
        if s.get("cleanup") != first.get("cleanup") and "cleanup" not in differ:
            differ.append("cleanup")
    if any(name in _IMAP_SECURITY for name in differ):
        return None  # the account's own warning says so (imap-security-differs)
    # What really decides sharing at run time: the mail probe's own connection key.
    connections = {(s.get("imap").connection_key(), s.get("cleanup")) for s in group}
    if len(connections) > 1 and not differ:
        return None  # only the password differs: its own finding says so
    if len(connections) == 1:
        return about(
            Severity.NOTE,
            "shared-mailbox",
            group,
            ("imap", "mailbox"),
            f"{names(group)} は同じメールボックス {where} に届きます: IMAP 接続（ログイン）は一つを"
            "共有し、それが切れると全チャネルが「確認できず」になります。着信の確認はこのメール"
            "ボックスに届いたことを示します（各メールはトークンで区別されます）",
            f"{names_en(group)} deliver into the same mailbox {where}: they share one IMAP "
            "connection (one login) — if it fails, all of them show 'could not look' — and a "
            "confirmation says the mail reached this mailbox (each mail is told apart by its token)",
        )
    listed = ", ".join(differ)
    return about(
        Severity.NOTE,
        "split-mailbox",
        group,
        ("imap", "mailbox"),
        f"{names(group)} は同じメールボックス {where} を読みますが、設定（{listed}）が違うため"
        "チャネルごとに別の IMAP 接続を使います（動作に問題はありません）",
        f"{names_en(group)} read the same mailbox {where} but their settings differ ({listed}), "
        "so each channel gets its own IMAP connection (harmless)",
        at=1,
    )
