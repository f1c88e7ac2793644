"""Chat rooms, homeservers and webhooks: who may share them, and observer = sender."""

from __future__ import annotations

from typing import Any

from drills.core.sharing.findings import (
    Finding,
    Seat,
    Severity,
    about,
    groups,
    municipalities,
    names,
    names_en,
    origin,
    same_secret,
)

__all__ = ["chat_rules", "observer_is_sender", "webhook_rules"]


# Where each chat kind names the sender and the observer, and how the sender is shown.
_IDENTITIES: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {
    "matrix": (("sender", "user"), ("observer", "user"), ""),
    "slack": (("bot_token",), ("observer_token",), "bot_token "),
    "mattermost": (("token",), ("observer", "token"), "token "),
}


def observer_is_sender(seats: list[Seat], reveal: bool) -> list[Finding]:
    out = []
    for s in seats:
        if s.channel.kind not in _IDENTITIES:
            continue
        sending, where, shown = _IDENTITIES[s.channel.kind]
        sender, observer = s.get(*sending), s.get(*where)
        if sender is not None and observer is not None and same_secret(sender, observer, reveal):
            who = f"{shown}{sender}"
            out.append(
                about(
                    Severity.ERROR,
                    "observer-is-sender",
                    [s],
                    where,
                    f"観測アカウントが送信者と同じです（{who}）: 送信者には自分の投稿が必ず見える"
                    "ため着信を確認できません。職員相当の別アカウントを観測側に設定してください",
                    f"the observer is the sender itself ({who}): a sender always sees its own "
                    "message, so nothing could be confirmed — give the observer a separate "
                    "staff-like account",
                )
            )
    return out


def _room_key(s: Seat) -> Any:
    kind = s.channel.kind
    if kind == "matrix":
        return (kind, s.get("room"))
    if kind == "slack":
        return (kind, origin(s.get("base_url")), s.get("channel"))
    if kind == "mattermost":
        return (kind, origin(s.get("url")), s.get("channel_id"))
    if kind == "teams" and s.get("channel_id"):
        return (kind, s.get("team_id"), s.get("channel_id"))
    if kind == "lineworks":
        return (kind, origin(s.get("api_url")), s.get("channel_id"))
    return None


def chat_rules(seats: list[Seat]) -> list[Finding]:
    out = []
    matrix = [s for s in seats if s.channel.kind == "matrix"]
    for group in groups(matrix, lambda s: origin(s.get("homeserver"))):
        if municipalities(group) < 2:
            continue
        out.append(
            about(
                Severity.NOTE,
                "shared-homeserver",
                group,
                ("homeserver",),
                f"{municipalities(group)} 団体がホームサーバー {group[0].get('homeserver')} を"
                f"共有しています（{names(group)}）: その停止は全団体の「不達」として同時に現れ"
                "ますが、障害は一つです",
                f"{municipalities(group)} municipalities share the homeserver "
                f"{group[0].get('homeserver')} ({names_en(group)}): an outage of it shows as "
                "lost on all of them at once — read it as one fault",
            )
        )
    for group in groups(seats, _room_key):
        many = municipalities(group) > 1
        field = {"matrix": "room", "slack": "channel"}.get(group[0].channel.kind, "channel_id")
        ja_who = "複数の団体" if many else "同じ団体の複数のチャネル"
        en_who = "several municipalities" if many else "several channels of one municipality"
        out.append(
            about(
                Severity.NOTE,
                "shared-room",
                group,
                (field,),
                f"{ja_who}が同じルーム {group[0].get(field)} を使います（{names(group)}）: "
                "着信の確認はルームに届いたことを示し、どの団体の職員が読んだかは示しません"
                "（各メッセージはトークンで区別されます）",
                f"{en_who} use the same room {group[0].get(field)} ({names_en(group)}): a "
                "confirmation proves the message reached the room all of them read, not which "
                "municipality's staff read it (each message is still told apart by its token)",
            )
        )
    for group in groups(matrix, lambda s: (origin(s.get("homeserver")), s.get("sender", "user"))):
        out.append(
            about(
                Severity.NOTE,
                "shared-sender",
                group,
                ("sender", "user"),
                f"送信アカウント {group[0].get('sender', 'user')} を {names(group)} が共有して"
                "います: ホームサーバーのレート制限（M_LIMIT_EXCEEDED）は合算でかかります",
                f"{names_en(group)} share the sender account {group[0].get('sender', 'user')}: "
                "the homeserver rate limits its sends together (M_LIMIT_EXCEEDED)",
            )
        )
    return out


def webhook_rules(seats: list[Seat]) -> list[Finding]:
    def url(s: Seat) -> Any:
        if s.channel.kind == "webhook":
            return ("url", s.get("url"))
        if s.channel.kind == "teams" and s.get("workflow_url") is not None:
            return ("workflow_url", str(s.get("workflow_url")))
        return None

    out = []
    for group in groups(seats, url):
        field, value = url(group[0])
        out.append(
            about(
                Severity.NOTE,
                "shared-webhook",
                group,
                (field,),
                f"{names(group)} は同じ Webhook（{value}）に投稿します: 届く先は一つで、"
                "メッセージを区別するのはトークンだけです",
                f"{names_en(group)} post to the same webhook ({value}): they land in one place, "
                "and only the tokens tell their messages apart",
            )
        )
    return out
