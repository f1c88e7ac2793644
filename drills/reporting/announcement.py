"""Whether the drill was announced, as the scorecard (JSON, Markdown, HTML) says it.

The fact is the journal's ``runs.meta`` (:func:`drills.core.unannounced.is_announced`):
an unannounced run (抜き打ち訓練) has ``"announced": false`` and its window. Its
response times — the acknowledgement curve (25/50/75 % answered), the roll call
— were measured without notice, which is what they are worth; the card labels
them so. An announced run has ``{"announced": true}`` and no label.

    >>> card = {"announcement": announcement({"announced": False, "unannounced":
    ...     {"window": "09:00-17:00", "zone": "Asia/Tokyo", "drawn_by": "seed"}})}
    >>> announcement_markdown(card, "en")[0]
    '- **Unannounced drill** (no notice; started at a time drawn inside 09:00-17:00 Asia/Tokyo from a secret seed)'
    >>> announcement_markdown({"announcement": announcement({})}, "en")
    []
"""

from __future__ import annotations

from typing import Any

from drills.core.i18n import Text
from drills.core.unannounced import is_announced

__all__ = ["LABEL", "announcement", "announcement_markdown"]

LABEL = {"ja": "抜き打ち訓練", "en": "unannounced drill"}
_NOTE = {
    "ja": "安否確認・点呼の応答時間（25/50/75 % の回答時間と応答率の曲線）は予告なしに測った値です",
    "en": "acknowledgement and roll-call times (the 25/50/75 % answer times and the response "
    "curve) were measured without notice",
}
_HOW = {
    "seed": (
        "時刻は秘密の種から決定・種があれば後から再現可能",
        "from a secret seed",
    ),
    "timer": ("時刻はスケジューラ（systemd）が決定", "chosen by the scheduler (systemd)"),
}


def announcement(meta: dict[str, Any] | None) -> dict[str, Any]:
    """The card's ``announcement`` block from the run's journal meta."""
    if is_announced(meta):
        return {"announced": True}
    detail = (meta or {}).get("unannounced") or {}
    return {
        "announced": False,
        "window": detail.get("window"),
        "zone": detail.get("zone", "Asia/Tokyo"),
        "drawn_by": detail.get("drawn_by"),
        "label": dict(LABEL),
        "note": dict(_NOTE),
    }


def announcement_markdown(card: dict[str, Any], lang: str) -> list[str]:
    """The header lines that say the drill was unannounced (none for an announced one)."""
    a = card.get("announcement") or {}
    if a.get("announced", True) is not False:
        return []
    t = Text(lang)
    how = _HOW.get(a.get("drawn_by") or "", ("", ""))
    window = a.get("window") or "?"
    head = t(
        f"- **抜き打ち訓練**（予告なし・日本時間 {window} の中の時刻に開始"
        + (f"・{how[0]}" if how[0] else "")
        + "）",
        "- **Unannounced drill** (no notice; started at a time "
        + ("drawn " if a.get("drawn_by") == "seed" else "")
        + f"inside {window} Asia/Tokyo"
        + (f" {how[1]}" if how[1] else "")
        + ")",
    )
    return [head, f"  - {_NOTE[t.lang]}"]
