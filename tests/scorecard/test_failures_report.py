"""Where the chain broke, J-ALERT style, in the reports: golden Markdown and text, HTML structure.

A synthetic drill of six municipalities failing in different ways (records written
as the runner writes them, each with its ``extra["reason_code"]``):

    131211 足立区     chat rejected 401 ×3, mail lost (SMTP refused) ×2  → not reached: send · auth
    131016 千代田区   chat lost not seen ×2, mail lost not seen ×1      → not reached: transit · connection
    132012 八王子市   sms rejected 30003 ×2 (carrier: handset unreachable), mail accepted only
                      ×1 (proves nothing on its own)                    → transit · connection
    133086 奥多摩町   chat error (the observer was the sender) ×2       → registry, could not be judged
    134210 小笠原村   chat rejected 429 ×1 and delivered ×1              → reached: not listed, counted
    131237 江戸川区   mail late ×1 and delivered ×1                     → reached: counted as 遅延
    131041 新宿区     chat delivered ×1, harness fault ×2 (one an old record without a
                      code), mail interrupted ×2                        → reached; the four
                      records are not judged: apart, in no stage or cause

Only the section is compared with the golden files, so other sections may change
freely. Rewrite with ``TSUNAGARI_UPDATE_GOLDEN=1`` and review the diff.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from test_golden import check_golden

from drills.core.delivery import Delivery, Evidence, Outcome
from drills.core.interrupt import INTERRUPTED_REASON
from drills.core.journal import Journal
from drills.reporting.failures import failures_text
from drills.reporting.html import render_html
from drills.reporting.scorecard import TOKYO, build_scorecard
from drills.reporting.text import to_markdown

START = datetime(2026, 12, 1, 9, 30, tzinfo=TOKYO).timestamp()

# (code, name, channel, kind, outcome, reason code, reason, how many)
RECORDS: list[tuple[str, str, str, str, Outcome, str | None, str, int]] = [
    ("131211", "足立区", "chat", "webhook", Outcome.REJECTED, "401",
     "HTTP 401: invalid_auth（認証拒否） / HTTP 401: invalid_auth (refused)", 3),
    ("131211", "足立区", "mail", "mail", Outcome.LOST, "connect",
     "SMTP 接続失敗 / cannot connect", 2),
    ("131016", "千代田区", "chat", "slack", Outcome.LOST, "not_seen",
     "5 秒以内に着信を確認できず / not seen within 5 s", 2),
    ("131016", "千代田区", "mail", "mail", Outcome.LOST, "not_seen",
     "5 秒以内に着信を確認できず / not seen within 5 s", 1),
    ("132012", "八王子市", "sms", "twilio", Outcome.REJECTED, "30003",
     "端末に届きません（30003） / unreachable destination handset (30003)", 2),
    ("132012", "八王子市", "mail", "mail", Outcome.ACCEPTED, None,
     "受付のみ・着信未確認 / accepted only, arrival not confirmable", 1),
    ("133086", "奥多摩町", "chat", "matrix", Outcome.ERROR, "observer_is_sender",
     "観測側が送信者 / the observer is the sender", 2),
    ("134210", "小笠原村", "chat", "webhook", Outcome.REJECTED, "429",
     "レート制限 / rate limited (429)", 1),
    ("134210", "小笠原村", "chat", "webhook", Outcome.DELIVERED, None, "", 1),
    ("131237", "江戸川区", "mail", "mail", Outcome.LATE, "over_slo",
     "SLO 3 秒超過 / over the 3 s SLO", 1),
    ("131237", "江戸川区", "mail", "mail", Outcome.DELIVERED, None, "", 1),
    ("131041", "新宿区", "chat", "webhook", Outcome.DELIVERED, None, "", 1),
    ("131041", "新宿区", "chat", "webhook", Outcome.ERROR, "harness",
     "ハーネスの障害 / harness fault: KeyError: 'x'", 1),
    ("131041", "新宿区", "chat", "webhook", Outcome.ERROR, None,
     "ハーネスの障害 / harness fault: KeyError: 'y'", 1),
    ("131041", "新宿区", "mail", "mail", Outcome.ERROR, "interrupted", INTERRUPTED_REASON, 2),
]  # fmt: skip


def fill(journal: Journal) -> str:
    run_id = journal.begin_run("J-ALERT 型の確認", "tokyo-hq", run_id="20261201T093000-jalert")
    n = 0
    for code, name, channel, kind, outcome, reason_code, reason, count in RECORDS:
        for _ in range(count):
            n += 1
            extra: dict[str, Any] = {"sent_mono": float(n)}
            if reason_code is not None:
                extra["reason_code"] = reason_code
            reached = outcome.reached
            journal.record(
                Delivery(
                    run_id,
                    "broadcast",
                    code,
                    name,
                    channel,
                    kind,
                    f"TSG-{n:012d}",
                    outcome,
                    reason=reason,
                    sent_at=START + n,
                    delivered_at=START + n + 1 if reached else None,
                    latency_s=(4.0 if outcome is Outcome.LATE else 1.0) if reached else None,
                    slo_latency_s=3.0,
                    extra=extra,
                    evidence=Evidence.SEEN if reached else None,
                )
            )
    journal.finish_run(run_id)
    journal.db.execute(  # fixed times: the same card every time
        "UPDATE runs SET started_at = ?, finished_at = ? WHERE run_id = ?",
        (START, START + 60, run_id),
    )
    return run_id


@pytest.fixture
def card(tmp_path: Path) -> dict[str, Any]:
    with Journal(tmp_path / "journal.sqlite") as journal:
        return build_scorecard(journal, fill(journal))


def md_section(markdown: str) -> str:
    match = re.search(r"\n## (?:届かなかった団体|Not reached).*?(?=\n## )", markdown, re.S)
    assert match, "no failures section"
    return match.group(0).lstrip("\n") + "\n"


def test_the_card_lists_who_could_not_be_reached_by_stage_and_cause(card: dict[str, Any]) -> None:
    block = card["failures"]
    groups = {
        (g["stage"], g["cause"]): [m["code"] for m in g["municipalities"]]
        for g in block["unreachable"]
    }
    assert groups == {
        ("send", "auth"): ["131211"],
        ("transit", "connection"): ["131016", "132012"],
    }
    assert [u["code"] for u in block["unjudged"]] == ["133086"]
    assert card["summary"]["unreachable"] == 3
    counts = {(c["stage"], c["cause"]): c["count"] for c in block["counts"]}
    assert counts == {
        ("registry", "config"): 2,
        ("send", "auth"): 3,
        ("send", "connection"): 2,
        ("send", "congestion"): 1,
        ("transit", "connection"): 5,
        ("transit", "delay"): 1,
    }
    # the counts are every failing record: as many as the card's channels say
    failing = sum(
        ch[k] for m in card["municipalities"] for ch in m["channels"]
        for k in ("late", "lost", "rejected", "error")
    )  # fmt: skip
    # every failing record is in a stage and cause but the four not judged, shown apart
    assert block["not_judged"] == [
        {"code": "harness", "count": 2, "kinds": {"webhook": 2}},
        {"code": "interrupted", "count": 2, "kinds": {"mail": 2}},
    ]
    assert sum(counts.values()) == failing - 4 == 14
    adachi = next(m for m in card["municipalities"] if m["code"] == "131211")
    assert adachi["channels"][0]["failures"] == [{"stage": "send", "cause": "auth", "count": 3}]
    shinjuku = next(m for m in card["municipalities"] if m["code"] == "131041")
    assert [(ch["failures"], ch["not_judged"]) for ch in shinjuku["channels"]] == [
        ([], {"harness": 2}),
        ([], {"interrupted": 2}),
    ]


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_markdown_golden(card: dict[str, Any], lang: str) -> None:
    markdown = to_markdown(card, lang)
    sections = [line for line in markdown.splitlines() if line.startswith("## ")]
    assert sections[1].startswith(("## 届かなかった団体", "## Not reached")), sections
    check_golden(f"failures.{lang}.md", md_section(markdown))


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_text_golden(card: dict[str, Any], lang: str) -> None:
    check_golden(f"failures.{lang}.txt", failures_text(card, lang) + "\n")


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_html_lists_the_same(card: dict[str, Any], lang: str) -> None:
    html = render_html(card, lang, charts=False)
    ids = re.findall(r'<section id="([^"]+)"', html)
    assert ids.index("failures") == ids.index("worse") + 1, ids
    section = re.search(r'<section id="failures".*?</section>', html, re.S)
    assert section is not None
    text = section.group(0)
    assert 'data-unreachable="3"' in text
    groups = re.findall(r"<h3>(.*?) \((\d+)\)</h3>\s*<ul.*?>(.*?)</ul>", text, re.S)
    listed = [(label, n, re.findall(r'data-code="(\d+)"', items)) for label, n, items in groups]
    if lang == "ja":
        assert listed == [
            ("送信・認証・権限", "1", ["131211"]),
            ("伝達経路・接続不良", "2", ["131016", "132012"]),
        ]
        assert "判定できなかった団体" in text and "133086 奥多摩町" in text
    else:
        assert listed == [
            ("Send · auth", "1", ["131211"]),
            ("Transit · bad connection", "2", ["131016", "132012"]),
        ]
    rows = re.findall(r"<tr><td>(.*?)</td><td class=\"num\">(\d+)</td>", text)
    assert len(rows) == 6 and sum(int(n) for _, n in rows) == 14
    apart = re.search(r'<p class="meta not-judged">(.*?)</p>', text, re.S)
    assert apart is not None
    if lang == "ja":
        assert apart.group(1).startswith("判定不能（ハーネス障害/中断）")
        assert apart.group(1).endswith("ハーネス障害 2（webhook 2）、中断 2（mail 2）")
    else:
        assert apart.group(1).startswith("Records not judged (harness fault / interrupted")
        assert apart.group(1).endswith("harness fault 2 (webhook 2); interrupted 2 (mail 2)")
