"""The oracle's length (``--oracle-seeds=N`` / ``TSUNAGARI_ORACLE_SEEDS=N``) and its tally.

The option is seen when pytest is pointed at ``tests/oracle`` (pytest reads
option hooks only from the conftest files of the paths it is given); the
environment variable works for every command, including ``scripts/bootstrap.sh test``.
At the end of a session that ran oracle cases, the terminal summary shows the
oracle's size (drills, records, seeds), its wall time and, per kind, the largest
``|measured − truth| − error_bound_s`` seen; ``TSUNAGARI_ORACLE_REPORT=path.json``
also writes it as JSON.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.oracle.seeds import DEFAULT_SEEDS, ENV, oracle_seeds
from tests.oracle.tally import TALLY


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tsunagari-oracle", "Tsunagari ground-truth oracle")
    group.addoption(
        "--oracle-seeds",
        type=int,
        default=None,
        help=f"seeds per randomized oracle case (default {DEFAULT_SEEDS}; env {ENV})",
    )


def pytest_report_header(config: pytest.Config) -> str:
    return f"tsunagari oracle: {oracle_seeds(config)} seeds per randomized case"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TALLY.drills:
        return
    terminalreporter.section("tsunagari oracle")
    for line in TALLY.lines():
        terminalreporter.write_line(line)
    out = os.environ.get("TSUNAGARI_ORACLE_REPORT")
    if out:
        with open(out, "w", encoding="utf-8") as fh:
            json.dump(TALLY.as_dict(), fh, ensure_ascii=False, indent=2)
