"""Dashboards as code: the committed JSON is what build.py generates, and is well formed."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
import yaml

from tests.metrics.conftest import DASHBOARDS

BOARDS = sorted((DASHBOARDS / "grafana").glob("*.json"))
CJK = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")


def _build_module():
    spec = importlib.util.spec_from_file_location(
        "tsunagari_dashboards_build", DASHBOARDS / "build.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_files_are_what_build_generates() -> None:
    build = _build_module()
    generated = build.render_all()
    assert set(generated) == {
        "grafana/cio-overview.json",
        "grafana/municipality-detail.json",
        "grafana/drill-run.json",
        "prometheus/tsunagari.rules.yml",
    }
    for rel, text in generated.items():
        assert (DASHBOARDS / rel).read_text(encoding="utf-8") == text, (
            f"{rel} is stale: run python dashboards/build.py"
        )
    assert build.main(["--check"]) == 0


def test_check_notices_a_stale_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build = _build_module()
    for rel, text in build.render_all().items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text, encoding="utf-8")
    monkeypatch.setattr(build, "HERE", tmp_path)
    assert build.main(["--check"]) == 0
    path = tmp_path / "grafana/drill-run.json"
    path.write_text(path.read_text(encoding="utf-8").replace("開始", "start"), encoding="utf-8")
    assert build.main(["--check"]) == 1


def _panels(board: dict) -> list[dict]:
    return [p for p in board["panels"] if p["type"] != "row"]


@pytest.mark.parametrize("path", BOARDS, ids=lambda p: p.stem)
def test_datasource_is_a_variable(path: Path) -> None:
    board = json.loads(path.read_text(encoding="utf-8"))
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in _panels(board):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            assert var["datasource"]["uid"] == "${datasource}"


@pytest.mark.parametrize("path", BOARDS, ids=lambda p: p.stem)
def test_titles_are_japanese_and_uids_stable(path: Path) -> None:
    board = json.loads(path.read_text(encoding="utf-8"))
    assert CJK.search(board["title"])
    assert board["uid"].startswith("tsunagari-")
    for panel in board["panels"]:
        assert CJK.search(panel["title"]) or panel["title"].startswith("$"), panel["title"]
    ids = [t["refId"] for p in _panels(board) for t in p["targets"]]
    assert all(ids)


def test_layout_stays_on_the_grid() -> None:
    for path in BOARDS:
        for panel in json.loads(path.read_text(encoding="utf-8"))["panels"]:
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24, (path.stem, panel["title"], pos)


def test_cio_overview_answers_the_cio_questions() -> None:
    board = json.loads((DASHBOARDS / "grafana/cio-overview.json").read_text(encoding="utf-8"))
    by_title = {p["title"]: p for p in _panels(board)}
    expr = {t: " ".join(x["expr"] for x in p["targets"]) for t, p in by_title.items()}
    assert "tsunagari_readiness_score" in expr["即応性スコア（団体別・最新の訓練）"]
    assert "tsunagari_channel_unreachable_streak" in expr["いま不通のチャネル"]
    assert "tsunagari_readiness_score_change" in expr["前回の訓練から悪化した団体"]
    assert by_title["即応性スコアの推移（90 日）"]["timeFrom"] == "90d"
    assert "time() - " in expr["最後の訓練からの経過時間"]


def test_provisioning_files() -> None:
    dash = yaml.safe_load(
        (DASHBOARDS / "provisioning/dashboards/tsunagari.yaml").read_text(encoding="utf-8")
    )
    provider = dash["providers"][0]
    assert dash["apiVersion"] == 1 and provider["type"] == "file"
    assert provider["options"]["path"].endswith("dashboards/grafana")
    ds = yaml.safe_load(
        (DASHBOARDS / "provisioning/datasources/prometheus.yaml").read_text(encoding="utf-8")
    )
    assert ds["datasources"][0]["type"] == "prometheus"
    assert ds["datasources"][0]["url"].startswith("http://127.0.0.1:")


def test_detail_board_shows_outcome_and_evidence_apart() -> None:
    # a carrier receipt and a sighting are both "delivered": only the evidence label tells
    board = json.loads((DASHBOARDS / "grafana/municipality-detail.json").read_text("utf-8"))
    exprs = [t["expr"] for p in _panels(board) for t in p["targets"]]
    assert any("outcome, evidence)" in e and "tsunagari_last_drill_deliveries" in e for e in exprs)
