"""``tsunagari scorecard`` and ``tsunagari demo``'s scorecard.html, end to end."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import sys
from pathlib import Path

import pytest
from scorecard_samples import REGISTRY_YAML, SIM_REGISTRY, fill_sample

from drills.cli import main
from drills.core.journal import Journal
from drills.core.registry import parse_registry
from drills.reporting.scorecard import build_scorecard
from drills.reporting.text import to_csv, to_markdown
from probes.base import TOKEN_RE
from probes.sim.base import SimKnobs
from probes.sim.chat import ChatSimulator

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def files(tmp_path):
    journal_path = tmp_path / "journal.sqlite"
    with Journal(journal_path) as j:
        run_id = fill_sample(j)
    reg = tmp_path / "registry.yaml"
    reg.write_text(REGISTRY_YAML, encoding="utf-8")
    return journal_path, reg, run_id


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def expected_card(journal_path: Path, reg: Path, run_id: str, **kw):
    with Journal(journal_path) as j:
        return build_scorecard(
            j, run_id, parse_registry(reg.read_text(encoding="utf-8"), str(reg), False), **kw
        )


def test_every_format_from_one_model(capsys, files):
    journal_path, reg, run_id = files
    card = expected_card(journal_path, reg, run_id)
    base = ("--lang", "ja", "scorecard", "--journal", str(journal_path), "--registry", str(reg))
    code, out, _ = run_cli(capsys, *base, "--format", "json")
    assert code == 0 and json.loads(out) == card
    assert run_cli(capsys, *base, "--format", "md")[1] == to_markdown(card, "ja")
    assert run_cli(capsys, *base, "--format", "csv")[1] == to_csv(card)
    html = run_cli(capsys, *base, "--format", "html")[1]
    assert html.startswith("<!DOCTYPE html>") and '<html lang="ja">' in html and run_id in html
    code, table, _ = run_cli(capsys, *base)  # the default: the terminal table
    assert code == 0
    assert table.index("悪化した項目") < table.index("即応性スコアカード"), "worse first"
    assert "足立区" in table and "未確認" in table


def test_out_files_and_csv_bom(capsys, files, tmp_path):
    journal_path, reg, run_id = files
    out = tmp_path / "card.csv"
    code, _, err = run_cli(
        capsys,
        "scorecard",
        "--journal",
        str(journal_path),
        "--registry",
        str(reg),
        "--format",
        "csv",
        "--out",
        str(out),
    )
    assert code == 0 and str(out) in err
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # Excel reads Japanese CSV only with a BOM
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0]["run_id"] == run_id and rows[0]["municipality_name"] == "足立区"


def test_run_id_date_range_and_as_of(capsys, files):
    journal_path, reg, run_id = files
    base = ("scorecard", "--journal", str(journal_path), "--registry", str(reg), "--format", "json")
    card = json.loads(run_cli(capsys, *base, "--run", "20261120T101500-prev00")[1])
    assert (
        card["run_id"] == "20261120T101500-prev00" and card["comparison"]["previous_run_id"] is None
    )
    # a date range: the latest run in it, the trend over the range
    card = json.loads(run_cli(capsys, *base, "--since", "2026-10-01", "--until", "2026-11-20")[1])
    assert card["run_id"] == "20261120T101500-prev00"
    card = json.loads(run_cli(capsys, *base, "--since", "2026-11-21")[1])
    assert card["run_id"] == run_id and [p["run_id"] for p in card["trend"]] == [run_id]
    card = json.loads(run_cli(capsys, *base, "--scenario", "多摩地域 通信訓練")[1])
    assert card["run_id"] == "20261018T101500-old000"
    # freshness judged later: 45 days after the run ended → 足立区 74.0 (see test_scorecard)
    card = json.loads(run_cli(capsys, *base, "--as-of", "2027-01-11T19:15:08+09:00")[1])
    assert card["municipalities"][0]["score"] == 74.0
    assert card["as_of"] == "2027-01-11T19:15:08+09:00"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--run", "nope"), "nope"),
        (("--since", "2030-01-01"), "no run"),
        (("--since", "yesterday-ish"), "cannot read"),
    ],
)
def test_usage_errors_exit_2(capsys, files, args, message):
    journal_path, _reg, _ = files
    code, out, err = run_cli(
        capsys, "--lang", "en", "scorecard", "--journal", str(journal_path), *args
    )
    assert code == 2 and message in err and out == ""


def test_missing_journal_exits_2(capsys, tmp_path):
    code, _, err = run_cli(
        capsys, "--lang", "en", "scorecard", "--journal", str(tmp_path / "none.sqlite")
    )
    assert code == 2 and "no journal" in err
    assert not (tmp_path / "none.sqlite").exists()


POST_REGISTRY = """
municipalities:
  - code: "131211"
    name: 足立区
    channels:
      - id: chat
        kind: webhook
        url: {url}
        auth: env:TSG_SCORECARD_TEST_HOOK
      - {{id: sim, kind: webhook, sim: {{latency: 10ms}}}}
"""


async def _cli(*argv: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "drills.cli",
        *argv,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_post_the_summary_to_a_chat_channel(files, tmp_path):
    """The Markdown summary goes to a live-configured webhook served by the local chat simulator."""
    journal_path, _reg, run_id = files
    sim = ChatSimulator(seed=1)
    await sim.start()
    try:
        settings = sim.add_channel("131211/chat", SimKnobs(), {})
        room = sim.room_for("131211/chat")
        reg = tmp_path / "post.yaml"
        reg.write_text(POST_REGISTRY.format(url=settings["url"]), encoding="utf-8")
        env = {**os.environ, "TSG_SCORECARD_TEST_HOOK": room.credentials["post"]}
        base = (
            "--lang",
            "ja",
            "scorecard",
            "--journal",
            str(journal_path),
            "--registry",
            str(reg),
            "--format",
            "md",
            "--out",
            str(tmp_path / "card.md"),
        )

        # a live channel without --live, and a simulated channel: refused, nothing sent
        code, _, err = await _cli(*base, "--post", "131211/chat", env=env)
        assert code == 2 and "--live" in err
        code, _, err = await _cli(*base, "--post", "131211/sim", "--live", env=env)
        assert code == 2 and "シミュレータ" in err
        assert room.posted == 0

        code, _, err = await _cli(*base, "--post", "131211/chat", "--live", env=env)
        assert code == 0, err
        deadline = asyncio.get_running_loop().time() + 10
        while not room.visible and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        assert room.posted == 1
        text = room.visible[0].text
        assert text.startswith("【訓練】 訓練結果報告（訓練です。実際の災害情報ではありません）")
        assert TOKEN_RE.search(text), "a drill report carries a drill token like any drill message"
        assert "## 前回から悪化した項目" in text and run_id in text
        assert "| 131211 | 足立区 | " in text  # the summary table (SLOs here are the defaults)
        assert room.credentials["post"] not in text + err  # the secret is never echoed
    finally:
        await sim.stop()


def test_demo_writes_scorecard_html_next_to_json(tmp_path, monkeypatch, capsys):
    from drills.operator import demo
    from drills.operator.outputs import RUN_FILES

    reg = tmp_path / "demo.yaml"
    reg.write_text(SIM_REGISTRY, encoding="utf-8")
    monkeypatch.setattr(demo, "demo_registry_path", lambda: reg)
    out = tmp_path / "out"
    for _ in range(2):  # the second demo run has a previous one to compare with
        assert demo.run_demo(out, lang="en", seed=1, repeat=2) == 0
    assert "scorecard.html" in RUN_FILES  # one writer of a run's files, for demo and run
    card = json.loads((out / "scorecard.json").read_text(encoding="utf-8"))
    html = (out / "scorecard.html").read_text(encoding="utf-8")
    assert card["run_id"] in html and '<html lang="en">' in html
    assert card["comparison"]["previous_run_id"] in html
    assert card["municipalities"][2]["channels"][0]["status"] == "down"  # 小笠原村: auth refused
    assert "Readiness scorecard" in capsys.readouterr().out
