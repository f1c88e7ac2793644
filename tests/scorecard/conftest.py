"""Fixtures for the scorecard tests (the sample and surge journals: see scorecard_samples.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from scorecard_samples import REGISTRY_YAML, fill_evidence_sample, fill_sample, fill_surge_sample

from drills.core.journal import Journal
from drills.core.registry import Registry, parse_registry


@pytest.fixture
def registry() -> Registry:
    return parse_registry(REGISTRY_YAML, "test-registry.yaml", check_secrets=False)


@pytest.fixture
def sample_journal(tmp_path: Path) -> Iterator[tuple[Journal, str]]:
    journal = Journal(tmp_path / "journal.sqlite")
    run_id = fill_sample(journal)
    yield journal, run_id
    journal.close()


@pytest.fixture
def evidence_journal(tmp_path: Path) -> Iterator[tuple[Journal, str]]:
    """One drill with carrier receipts and the drill's own outage (scorecard_samples)."""
    journal = Journal(tmp_path / "evidence-journal.sqlite")
    run_id = fill_evidence_sample(journal)
    yield journal, run_id
    journal.close()


@pytest.fixture
def surge_journal(tmp_path: Path, registry: Registry) -> Iterator[tuple[Journal, str]]:
    """One surge drill: 足立区/chat breaks at 80 msg/s, 千代田区/chat holds (scorecard_samples)."""
    journal = Journal(tmp_path / "surge-journal.sqlite")
    run_id = fill_surge_sample(journal, registry)
    yield journal, run_id
    journal.close()
