"""Twilio numbers, accounts, status-callback listeners and phones."""

from __future__ import annotations

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

__all__ = ["twilio_rules"]


def twilio_rules(seats: list[Seat], reveal: bool) -> list[Finding]:
    sms = [s for s in seats if s.channel.kind == "twilio"]
    out: list[Finding] = []
    for group in groups(sms, lambda s: s.get("from_")):
        number = group[0].get("from_")
        accounts = {str(s.get("account_sid")) for s in group}
        if len(accounts) > 1:
            out.append(
                about(
                    Severity.ERROR,
                    "number-accounts",
                    group,
                    ("account_sid",),
                    f"送信元番号 {number} が別々のアカウント（{', '.join(sorted(accounts))}）で"
                    f"登録されています（{names(group)}）: 番号は一つのアカウントのものです",
                    f"the number {number} is registered under different accounts "
                    f"({', '.join(sorted(accounts))}) in {names_en(group)}: a number belongs to "
                    "one account",
                    at=1,
                )
            )
        out.append(
            about(
                Severity.NOTE,
                "shared-number",
                group,
                ("from",),
                f"送信元番号 {number} を {names(group)} が共有しています: Twilio はその番号の"
                "メッセージを送信速度に従って順に送るため、各チャネルの遅延には他のチャネルの送信"
                "待ちが含まれます",
                f"{names_en(group)} share the number {number}: Twilio sends a number's messages "
                "one after another at its rate, so each channel's latency includes the others' "
                "sends",
            )
        )
    for group in groups(sms, lambda s: str(s.get("account_sid"))):
        for other, first, same in unlike_secrets(group, "auth_token", reveal=reveal):
            if same is False:
                out.append(
                    about(
                        Severity.WARNING,
                        "account-token-differs",
                        [other, first],
                        ("auth_token",),
                        f"アカウント {other.get('account_sid')} の auth_token が {first.key} と"
                        "違います: 正と副の二つのトークンでなければ、一方は誤りです",
                        f"account {other.get('account_sid')} has another auth_token than in "
                        f"{first.key}: unless these are its primary and secondary tokens, one is "
                        "wrong",
                    )
                )
        out.append(
            about(
                Severity.NOTE,
                "shared-account",
                group,
                ("account_sid",),
                f"Twilio アカウント {group[0].get('account_sid')} を {names(group)} が共有して"
                "います: caps はチャネルごとで、アカウントの支出はその合計です",
                f"{names_en(group)} share the Twilio account {group[0].get('account_sid')}: caps "
                "apply per channel; the account's spend is their sum",
            )
        )

    def listener(s: Seat) -> Any:
        cb = s.get("status_callback")
        return (cb.listen_host, cb.listen_port) if cb is not None else None

    for group in groups(sms, listener):
        urls = {s.get("status_callback").url for s in group}
        if len(urls) > 1:
            host, port = listener(group[0])
            out.append(
                about(
                    Severity.ERROR,
                    "callback-url-differs",
                    group,
                    ("status_callback", "public_url"),
                    f"受信口 {host}:{port} は一つの public_url にしか答えられませんが、"
                    f"{names(group)} で違います（{', '.join(sorted(urls))}）: そろえるか、"
                    "listen_port を分けてください",
                    f"the listener {host}:{port} answers at one public_url, but {names_en(group)} "
                    f"give different ones ({', '.join(sorted(urls))}): make them agree or give "
                    "each its own listen_port",
                    at=1,
                )
            )
    for number, group in recipients(sms):
        out.append(
            about(
                Severity.NOTE,
                "shared-phone",
                group,
                ("to",),
                f"宛先番号 {number} を複数の団体が使います（{names(group)}）: 一台の電話が"
                "それらの団体の着信を代表します",
                f"the phone {number} is used by several municipalities ({names_en(group)}): "
                "one phone answers for all of them",
            )
        )
    return out
