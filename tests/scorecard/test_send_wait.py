"""The harness's wait before sending (``queue_s``): reported apart, never latency, never scored.

A real drill on the local chat simulators paces its sends (20 a second, one at a
time), so in each step the k-th message to leave waited about k / 20 s in the
harness. The journal's raw rows say how long each waited; the scorecard (JSON,
Markdown, HTML, terminal) and the metrics must show those waits' p50, p95 and
max per step and for the drill — the values worked out here from the rows with
``statistics.quantiles`` (linear interpolation), not with the code under test. The
same journal with every wait struck out must give the same card and metrics in
everything else: the wait changes no latency and no score. A journal written
before the wait was recorded renders "—".
"""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import sqlite3
import statistics
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from drills.core.journal import Journal
from drills.core.pacing import Pacing
from drills.core.registry import Registry
from drills.core.runner import Drill
from drills.core.scoring import percentile
from drills.core.truth import compare
from drills.metrics.collector import exposition
from drills.reporting.console import console_for, scorecard_renderable
from drills.reporting.html import render_html
from drills.reporting.scorecard import build_scorecard
from drills.reporting.text import to_markdown
from tests.support import webhook_registry

N = 8  # channels, one message each per step
RATE = 20.0  # sends per second: the last of a step waits about (N - 1) / RATE = 0.35 s
STEPS = ("初動参集", "再送")
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "journal-v0.sqlite"
METRIC = "tsunagari_drill_send_queue_seconds"


def _registry() -> Registry:
    return webhook_registry(N, "50ms", "{slo: {latency: 5s, reachability: 0.9}}")


async def _drill(reg: Registry, path: Path) -> str:
    journal = Journal(path)
    async with Drill(reg, journal, scenario="送信待ち", pacing=Pacing(rate=RATE)) as drill:
        results = [await drill.broadcast("参集してください", timeout=5, step=s) for s in STEPS]
        ledgers = [sim.ledger for sim in drill.sims.running.values()]
    journal.close()
    for step in results:  # every latency within its own bound of the far end's ledger
        assert compare(step.deliveries, ledgers, outages=drill.outages()) == []
        assert all(d.outcome.reached for d in step.deliveries)
    return results[0].deliveries[0].run_id


@pytest.fixture(scope="module")
def drilled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Registry, Path, str]:
    """One paced drill of two steps; the records checked against the simulators' ledgers."""
    reg = _registry()
    path = tmp_path_factory.mktemp("send-wait") / "journal.sqlite"
    return reg, path, asyncio.run(_drill(reg, path))


def _rows(path: Path) -> list[dict[str, Any]]:
    """The deliveries as journalled: raw rows, not the reader under test."""
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT step, latency_s, extra FROM deliveries").fetchall()
    return [{"step": s, "latency_s": lat, **json.loads(extra)} for s, lat, extra in rows]


def _figures(waits: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(waits, n=100, method="inclusive")
    return {"p50_s": cuts[49], "p95_s": cuts[94], "max_s": max(waits)}


def _shown(seconds: float) -> str:
    """As the reports show a figure: the card's (to 0.1 ms), to the millisecond."""
    return f"{round(seconds, 4):.3f}s"


def _expected(path: Path) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    rows = _rows(path)
    per = {s: _figures([r["queue_s"] for r in rows if r["step"] == s]) for s in STEPS}
    return per, _figures([r["queue_s"] for r in rows])


def test_the_waits_are_the_pacings(drilled) -> None:
    """Ground truth first: the token bucket let the k-th message of a step leave no
    earlier than k / RATE after the first was queued, so the k-th smallest wait is at
    least k / RATE less the spread of the instants the runner wanted to send."""
    _reg, path, _run = drilled
    for step in STEPS:
        rows = [r for r in _rows(path) if r["step"] == step]
        assert len(rows) == N and all(r["sent_how"] == "http" for r in rows)
        queued = [r["sent_mono"] - r["queue_s"] for r in rows]
        spread = max(queued) - min(queued)
        for k, wait in enumerate(sorted(r["queue_s"] for r in rows)):
            assert wait >= k / RATE - spread - 1e-6
        longest = max(r["queue_s"] for r in rows)
        assert longest >= (N - 1) / RATE - spread - 1e-6 and longest > 0


def test_scorecard_shows_the_journalled_waits(drilled) -> None:
    reg, path, run_id = drilled
    per, drill = _expected(path)
    with Journal(path) as journal:
        card = build_scorecard(journal, run_id, reg)
    block = card["send_wait"]
    assert block["scored"] is False
    assert [s["step"] for s in block["steps"]] == list(STEPS)
    for s in block["steps"]:
        assert (s["sent"], s["measured"]) == (N, N)
        for key, value in per[s["step"]].items():
            assert s[key] == round(value, 4), (s["step"], key)
    assert (block["drill"]["sent"], block["drill"]["measured"]) == (2 * N, 2 * N)
    assert {k: block["drill"][k] for k in drill} == {k: round(v, 4) for k, v in drill.items()}

    def cells(step: str, label: str | None = None) -> list[str]:
        f = per[step] if step else drill
        n = N if step else 2 * N
        return [label or step, str(n), str(n), *(_shown(f[k]) for k in f)]

    for lang, total, heading, meaning in (
        ("ja", "訓練全体", "ハーネスの送信待ち（遅延・点数には含めない）", "ハーネスが送信を最大"),
        ("en", "Whole drill", "The harness's wait before sending", "held sends for up to"),
    ):
        md = to_markdown(card, lang)
        assert any(line.startswith(f"## {heading}") for line in md.splitlines())
        for step in STEPS:
            assert "| " + " | ".join(cells(step)) + " |" in md
        assert "| " + " | ".join(cells("", total)) + " |" in md
        assert f"{meaning} {_shown(drill['max_s'])}" in md

        html = _section_rows(render_html(card, lang, charts=False))
        assert html == [(s, cells(s)) for s in STEPS] + [("", cells("", total))]

        buf = io.StringIO()
        console_for(buf).print(scorecard_renderable(card, lang))
        term = buf.getvalue()
        assert heading in term and _shown(drill["max_s"]) in term
        for step in STEPS:
            assert _shown(per[step]["p95_s"]) in term


def test_metrics_show_the_drills_wait(drilled) -> None:
    reg, path, _run = drilled
    _per, drill = _expected(path)
    with Journal(path) as journal:
        text = exposition(journal, reg).decode()
    got = {
        s.labels["stat"]: s.value
        for fam in text_string_to_metric_families(text)
        if fam.name == METRIC
        for s in fam.samples
    }
    want = {"p50": drill["p50_s"], "p95": drill["p95_s"], "max": drill["max_s"]}
    assert got == pytest.approx(want, abs=1e-9)


def test_the_wait_changes_no_latency_and_no_score(drilled, tmp_path) -> None:
    """The same journal with every ``queue_s`` struck out: the same card and metrics but
    for the send wait (now "—")."""
    reg, path, run_id = drilled
    stripped = tmp_path / "stripped.sqlite"
    with sqlite3.connect(path) as src, sqlite3.connect(stripped) as dst:
        src.backup(dst)
        dst.execute("UPDATE deliveries SET extra = json_remove(extra, '$.queue_s')")
        dst.execute("DELETE FROM digests")  # made again from the rows
        dst.execute("DELETE FROM totals")
    with Journal(path) as journal:
        card, metrics = build_scorecard(journal, run_id, reg), exposition(journal, reg).decode()
    with Journal(stripped) as journal:
        bare, bare_metrics = build_scorecard(journal, run_id, reg), exposition(journal, reg)
    assert bare["send_wait"]["drill"] == {
        "sent": 2 * N,
        "measured": 0,
        "p50_s": None,
        "p95_s": None,
        "max_s": None,
    }
    assert {k: v for k, v in card.items() if k != "send_wait"} == {
        k: v for k, v in bare.items() if k != "send_wait"
    }
    assert [line for line in metrics.splitlines() if not line.startswith(METRIC)] == (
        bare_metrics.decode().splitlines()
    )
    # and the latencies are the journal's own, from the moment each message left
    chat = card["municipalities"][0]["channels"][0]
    latencies = [r["latency_s"] for r in _rows(path) if r["sent_how"] == "http"]
    assert len(latencies) == 2 * N and chat["sent"] == 2
    pooled = card["latency_by_kind"]["webhook"]
    assert pooled["p50_s"] == round(percentile(latencies, 50) or 0.0, 4)
    assert pooled["count"] == 2 * N


def test_an_old_journal_renders_dashes(tmp_path) -> None:
    """A journal written before ``queue_s`` existed: "—", no series, no crash."""
    path = tmp_path / "journal-v0.sqlite"
    shutil.copy(FIXTURE, path)  # opening may migrate it: never the fixture itself
    with Journal(path) as journal:
        (run,) = journal.runs()
        card = build_scorecard(journal, run["run_id"])
        text = exposition(journal).decode()
    block = card["send_wait"]
    assert block["drill"]["sent"] > 0 and block["drill"]["measured"] == 0
    assert all(s["p50_s"] is None and s["max_s"] is None for s in block["steps"])
    for lang, note in (("ja", "待ち時間の記録がない"), ("en", "no wait recorded")):
        md = to_markdown(card, lang)
        first = block["steps"][0]
        assert f"| {first['step']} | {first['sent']} | 0 | — | — | — |" in md
        assert note in md
        rows = _section_rows(render_html(card, lang, charts=False))
        assert rows and all(cells[3:] == ["—", "—", "—"] for _step, cells in rows)
        buf = io.StringIO()
        console_for(buf).print(scorecard_renderable(card, lang))
        assert note in buf.getvalue()
    assert f"# TYPE {METRIC} gauge" in text
    assert not [line for line in text.splitlines() if line.startswith(METRIC + "{")]


class _Rows(HTMLParser):
    """The rows of ``section#send-wait``: (data-step, cell texts)."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = False
        self.rows: list[tuple[str, list[str]]] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section":
            self.inside = a.get("id") == "send-wait"
        elif self.inside and tag == "tr" and "data-step" in a:
            self.rows.append((a["data-step"] or "", []))
        elif self.inside and tag == "td" and self.rows:
            self.cell = []

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self.cell is not None:
            self.rows[-1][1].append("".join(self.cell).strip())
            self.cell = None
        elif tag == "section":
            self.inside = False


def _section_rows(html: str) -> list[tuple[str, list[str]]]:
    parser = _Rows()
    parser.feed(html)
    return parser.rows
