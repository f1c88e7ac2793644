"""The exposition: promtool-clean, written atomically as a textfile, in the demo and the README."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from drills.core.journal import Journal
from drills.core.registry import load_registry
from drills.metrics.catalogue import CATALOGUE, CHECKS, catalogue_markdown, checks_markdown
from drills.metrics.collector import Scope, exposition
from drills.metrics.push import write_textfile
from drills.operator import demo
from drills.operator.outputs import write_run_outputs
from tests.metrics.conftest import ROOT, World
from tests.metrics.support import SCENARIO, one_drill, sample_set, write_registry
from tests.servers.prometheus import PROMTOOL


def promtool_check_metrics(text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )


@pytest.mark.servers  # promtool, and the world's Prometheus and Pushgateway
def test_promtool_check_metrics_is_clean(world: World) -> None:
    done = promtool_check_metrics(world.exposition)
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), (
        done.stdout + done.stderr
    )
    assert len(sample_set(world.exposition)) > 100


@pytest.mark.servers  # promtool, and the world's Prometheus and Pushgateway
def test_promtool_would_complain(world: World) -> None:
    # The check above has teeth: a counter without _total is reported.
    bad = world.exposition.replace("tsunagari_deliveries_total", "tsunagari_deliveries")
    assert promtool_check_metrics(bad).returncode != 0


@pytest.mark.servers  # the world's Prometheus and Pushgateway
def test_every_metric_has_help_and_type(world: World) -> None:
    for name, spec in CATALOGUE.items():
        family = name.removesuffix("_total")
        assert f"# HELP {name} " in world.exposition or f"# HELP {family} " in world.exposition
        assert (
            f"# TYPE {name} {spec.type}" in world.exposition
            or f"# TYPE {family} {spec.type}" in world.exposition
        )


def test_readme_documents_every_metric() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("<!-- section:metrics -->")[1].split("<!-- /section:metrics -->")[0]
    assert catalogue_markdown() in section, (
        "README metrics table is stale: paste drills.metrics.catalogue.catalogue_markdown()"
    )
    # The /probe families (CHECKS) are a table of their own in the same section.
    assert checks_markdown() in section, (
        "README /probe metrics table is stale: paste drills.metrics.catalogue.checks_markdown()"
    )
    for name in (*CATALOGUE, *CHECKS):
        assert f"`{name}`" in section


@pytest.mark.servers  # promtool
def test_textfile_is_written_atomically(tmp_path: Path) -> None:
    registry = write_registry(tmp_path)
    out = tmp_path / "textfile"
    with Journal(tmp_path / "journal.sqlite") as journal:
        run = one_drill(registry, journal)
        path = write_textfile(journal, run, out / "tsunagari.prom", registry)
        first_inode = os.stat(path).st_ino
        text = path.read_text(encoding="utf-8")
        assert sample_set(text) == sample_set(
            exposition(journal, registry, Scope(SCENARIO, "tokyo-hq")).decode()
        )
        run2 = one_drill(registry, journal, second=True)
        write_textfile(journal, run2, path, registry)
    # Replaced by rename (a new inode), never rewritten in place; no temp files left.
    assert os.stat(path).st_ino != first_inode
    assert [p.name for p in out.iterdir()] == ["tsunagari.prom"]
    done = promtool_check_metrics(path.read_text(encoding="utf-8"))
    assert done.returncode == 0, done.stdout


def test_run_outputs_include_metrics_prom(tmp_path: Path) -> None:
    registry = write_registry(tmp_path)
    with Journal(tmp_path / "journal.sqlite") as journal:
        run = one_drill(registry, journal)
        done = write_run_outputs(journal, run, registry, tmp_path / "out", lang="ja")
    path = tmp_path / "out" / "metrics.prom"
    assert done.problems == [] and path in done.written
    assert "tsunagari_readiness_score{" in path.read_text(encoding="utf-8")


@pytest.mark.slow
@pytest.mark.servers  # promtool
def test_demo_writes_metrics_prom(tmp_path: Path) -> None:
    # The real demo: the bundled registry with its webhook, mail and twilio channels.
    # About 6 s with repeat=1 (the mail and SMS deliveries wait for their observers).
    registry = load_registry(demo.demo_registry_path())
    out = tmp_path / "demo-out"
    assert demo.run_demo(out, lang="ja", seed=1, repeat=1) == 0
    text = (out / "metrics.prom").read_text(encoding="utf-8")
    assert promtool_check_metrics(text).returncode == 0
    found = sample_set(text)
    scenarios = {dict(labels).get("scenario") for _, labels in found} - {None}
    assert scenarios == {demo.DEMO_SCENARIO}
    scores = {
        dict(labels)["municipality_code"]
        for name, labels in found
        if name == "tsunagari_readiness_score"
    }
    assert scores == {m.code for m in registry.municipalities}
    kinds = {dict(labels).get("channel_kind") for _, labels in found} - {None}
    assert {"webhook", "mail", "twilio"} <= kinds
