"""Where the chain broke, J-ALERT style: the card's ``failures`` block and how it is shown.

The Fire and Disaster Management Agency reports each municipality that a J-ALERT
test could not reach by where the chain broke and by cause. The scorecard does
the same, right after "what got worse" (Markdown, HTML, terminal):

- the municipalities that *could not be reached at all* — no message delivered
  or late on any channel, and at least one channel not reached (``down``; a
  channel only accepted does not prove it on its own) — as the map and the metric
  ``tsunagari_channel_reachable`` see them (:func:`drills.reporting.map.unreachable`),
  grouped by their main stage and cause (the stage × cause with most of their
  records; a tie goes to the earlier stage of the chain), each with what happened
  per channel;
- municipalities whose drill could not be judged (every channel untested: only
  errors — the drill could not look — or the drill's own outages);
- counts per stage and cause of every record that was not delivered (late ones
  included, as 遅延), with the channel kinds they were on;
- apart, the records not judged — 判定不能（ハーネス障害/中断）: the harness failed or
  a signal cut the drill (:class:`~drills.core.taxonomy.NotJudged`) — in no stage or
  cause count: nothing is known of the channel (scoring does not count them either).

Stages and causes are :mod:`drills.core.taxonomy`'s; per channel, the card
carries ``failures`` (set from the run's digest). :func:`failure_summary` builds
the card's top-level block; the rest lays it out.

    >>> card = {"municipalities": [{"code": "1", "name": "甲町", "name_en": None, "channels": [
    ...     {"id": "chat", "kind": "slack", "delivered": 0, "late": 0, "status": "down", "failures": [
    ...         {"stage": "send", "cause": "auth", "count": 2}]}]}]}
    >>> block = failure_summary(card)
    >>> block["unreachable"][0]["stage"], block["unreachable"][0]["municipalities"][0]["code"]
    ('send', '1')
    >>> failures_markdown({**card, "failures": block}, "en")[5]
    '### Send · auth (1)'
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from drills.core.i18n import Text
from drills.core.taxonomy import CAUSE_LABELS, STAGE_LABELS, Cause, NotJudged, Stage, main_failure

__all__ = [
    "FailureList",
    "failure_list",
    "failure_order",
    "failure_summary",
    "failures_markdown",
    "failures_text",
]

_STAGES = list(Stage)
_CAUSES = list(Cause)


def failure_order(stage: str, cause: str) -> tuple[int, int]:
    """Sort key: stages along the chain, then causes in :class:`~drills.core.taxonomy.Cause` order."""
    return (_STAGES.index(Stage(stage)), _CAUSES.index(Cause(cause)))


def _label(stage: str, cause: str, t: Text) -> str:
    st, ca = STAGE_LABELS[Stage(stage)], CAUSE_LABELS[Cause(cause)]
    return t(f"{st[0]}・{ca[0]}", f"{st[1][0].upper()}{st[1][1:]} · {ca[1]}")


def failure_summary(card: dict[str, Any]) -> dict[str, Any]:
    """The card's ``failures`` block, from its channels' ``failures`` (pure)."""
    from drills.reporting.map import unreachable  # the map's charts import the text reports

    counts: Counter[tuple[str, str]] = Counter()
    kinds: dict[tuple[str, str], Counter[str]] = {}
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    unjudged = []
    not_judged: dict[str, Counter[str]] = {}
    for m in card["municipalities"]:
        own: Counter[tuple[str, str]] = Counter()
        per_channel = []
        for ch in m["channels"]:
            for code, n in ch.get("not_judged", {}).items():
                not_judged.setdefault(code, Counter())[ch["kind"]] += n
            for f in ch.get("failures", []):
                key = (f["stage"], f["cause"])
                counts[key] += f["count"]
                own[key] += f["count"]
                kinds.setdefault(key, Counter())[ch["kind"]] += f["count"]
                per_channel.append({"channel": ch["id"], "kind": ch["kind"], **f})
        who = {"code": m["code"], "name": m["name"], "name_en": m.get("name_en")}
        channels = m["channels"]
        if not unreachable(m):  # the map's and the metric's view too (one definition)
            if channels and all(ch.get("status") == "untested" for ch in channels):
                unjudged.append(who)  # nothing counted: only errors or drill outages
            continue
        counted = [k for k, n in own.items() if k[1] != Cause.DELAY for _ in range(n)]
        # a card without per-channel failures (made before they existed): send · unknown
        main = main_failure(counted) or (Stage.SEND.value, Cause.UNKNOWN.value)
        groups.setdefault(main, []).append({**who, "failures": per_channel})
    return {
        "unreachable": [
            {"stage": st, "cause": ca, "municipalities": groups[(st, ca)]}
            for st, ca in sorted(groups, key=lambda k: failure_order(*k))
        ],
        "unjudged": unjudged,
        "counts": [
            {"stage": st, "cause": ca, "count": counts[(st, ca)], "kinds": dict(kinds[(st, ca)])}
            for st, ca in sorted(counts, key=lambda k: failure_order(*k))
        ],
        "not_judged": [
            {"code": c.value, "count": sum(not_judged[c].values()), "kinds": dict(not_judged[c])}
            for c in NotJudged
            if c.value in not_judged
        ],
    }


@dataclass(frozen=True)
class FailureList:
    """What every format shows: heading, groups of unreachable municipalities, counts."""

    heading: str
    groups: list[tuple[str, list[tuple[str, str, str]]]]  # (label, [(code, name, detail)])
    unjudged: list[tuple[str, str]]
    counts_header: list[str]
    counts: list[tuple[str, str, str]]  # (label, count, kinds)
    notes: list[str] = field(default_factory=list)
    unjudged_label: str = ""
    counts_label: str = ""
    none_label: str = ""
    not_judged: list[tuple[str, str, str]] = field(default_factory=list)  # (label, count, kinds)
    not_judged_label: str = ""


def _name(who: dict[str, Any], t: Text) -> str:
    return str(who["name"] if t.lang == "ja" or not who.get("name_en") else who["name_en"])


def failure_list(card: dict[str, Any], lang: str) -> FailureList:
    """The J-ALERT-style section of *card* in *lang* (ja / en)."""
    t = Text(lang)
    block = card.get("failures") or {"unreachable": [], "unjudged": [], "counts": []}
    groups = []
    for g in block["unreachable"]:
        rows = []
        for m in g["municipalities"]:
            detail = t("、", "; ").join(
                f"{f['channel']} [{f['kind']}] {_label(f['stage'], f['cause'], t)} ×{f['count']}"
                for f in m["failures"]
            )
            rows.append((m["code"], _name(m, t), detail))
        groups.append((_label(g["stage"], g["cause"], t), rows))
    counts = [
        (
            _label(c["stage"], c["cause"], t),
            str(c["count"]),
            _kinds(c["kinds"]),
        )
        for c in block["counts"]
    ]
    not_judged = [
        (NotJudged(c["code"]).label(lang), str(c["count"]), _kinds(c["kinds"]))
        for c in block.get("not_judged", [])
    ]
    reached_none = sum(len(rows) for _label_, rows in groups)
    notes = [
        t(
            f"どのチャネルでも 1 通も届かなかった団体: {reached_none}"
            "（到達も遅延もなく、不達のチャネルがある団体。受付のみのチャネルはそれだけでは"
            "不達としません）。段階と原因は主なもの（記録の最も多いもの、同数なら経路の手前）で"
            "分け、チャネルごとの内訳を添えます。",
            f"Municipalities no message reached on any channel: {reached_none} (nothing "
            "delivered or late, and a channel not reached; a channel only accepted does not "
            "count as not reached on its own). Grouped by their main stage and cause (most "
            "records; a tie goes to the earlier stage), with each channel's part.",
        )
    ]
    return FailureList(
        t(
            "届かなかった団体（どこで・なぜ途切れたか）",
            "Not reached: where the chain broke and why",
        ),
        groups,
        [(u["code"], _name(u, t)) for u in block["unjudged"]],
        [t("段階・原因", "Stage · cause"), t("件数", "Records"), t("種別", "Kinds")],
        counts,
        notes,
        t(
            "判定できなかった団体（届かず、観測できない・訓練による停止のみ）",
            "Could not be judged (nothing reached; the drill could not look, or drill outages only)",
        ),
        t(
            "届かなかった記録（遅延を含む）の段階・原因別の件数",
            "Records not delivered (late included), by stage and cause",
        ),
        t(
            "すべての団体にいずれかのチャネルで届きました。",
            "Every municipality was reached on some channel.",
        ),
        not_judged,
        t(
            "判定不能（ハーネス障害/中断）の記録（チャネルについては何も分からないため、"
            "段階・原因に数えず、採点もしません）",
            "Records not judged (harness fault / interrupted; nothing is known of the "
            "channel: in no stage or cause, not scored)",
        ),
    )


def _kinds(kinds: dict[str, int]) -> str:
    return ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _names(pairs: list[tuple[str, str]], t: Text) -> str:
    return t("、", ", ").join(f"{c} {n}" for c, n in pairs)


def failures_markdown(card: dict[str, Any], lang: str) -> list[str]:
    """The section as Markdown lines (starting with a blank line)."""
    t = Text(lang)
    fl = failure_list(card, lang)
    colon = t("：", ": ")
    out = ["", f"## {fl.heading}", "", *fl.notes]
    if not fl.groups:
        out += ["", fl.none_label]
    for label, rows in fl.groups:
        out += ["", f"### {label} ({len(rows)})", ""]
        out += [f"- {code} {_md(name)}: {_md(detail)}" for code, name, detail in rows]
    if fl.unjudged:
        out += ["", f"{fl.unjudged_label}{colon}{_md(_names(fl.unjudged, t))}"]
    if fl.counts:
        out += ["", f"{fl.counts_label}{colon.rstrip()}", ""]
        out += ["| " + " | ".join(fl.counts_header) + " |", "|---|---:|---|"]
        out += [f"| {_md(a)} | {b} | {_md(c)} |" for a, b, c in fl.counts]
    if fl.not_judged:
        shown = t("、", "; ").join(
            t(f"{a} {b}（{c}）", f"{a} {b} ({c})") for a, b, c in fl.not_judged
        )
        out += ["", f"{fl.not_judged_label}{colon}{_md(shown)}"]
    return out


def failures_text(card: dict[str, Any], lang: str) -> str:
    """The section as plain text (the terminal report)."""
    t = Text(lang)
    fl = failure_list(card, lang)
    colon = t("：", ": ")
    lines = [fl.heading, *fl.notes]
    if not fl.groups:
        lines.append(f"  {fl.none_label}")
    for label, rows in fl.groups:
        lines.append(f"  {label} ({len(rows)})")
        lines += [f"    {code} {name}: {detail}" for code, name, detail in rows]
    if fl.unjudged:
        lines.append(f"  {fl.unjudged_label}{colon}{_names(fl.unjudged, t)}")
    if fl.counts:
        lines.append(f"  {fl.counts_label}{colon.rstrip()}")
    lines += [f"    {a}: {b} ({c})" for a, b, c in fl.counts]
    if fl.not_judged:
        lines.append(f"  {fl.not_judged_label}{colon.rstrip()}")
        lines += [f"    {a}: {b} ({c})" for a, b, c in fl.not_judged]
    return "\n".join(lines)
