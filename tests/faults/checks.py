"""What every fault case checks: no traceback, an intact journal, the run's status.

The whole API (all functions raise ``AssertionError`` with the reason, so a case
reads as a list of checks)::

    assert_no_traceback(text, where="stderr")   # no "Traceback (most recent call last)",
                                                # "INTERNALERROR" or "Fatal Python error"
    runs = journal_intact(path)                 # PRAGMA integrity_check is "ok", the file
                                                # opens with drills.core.journal.Journal;
                                                # returns the run rows, oldest first
    status = run_status(path, run_id=None)      # the status of *run_id* (default: the
                                                # newest run); the journal must be intact
    records = json_lines(text)                  # the JSON log records of stderr (RunLog)

``journal_intact`` opens the file read-only (``mode=ro`` URI, and ``Journal(path,
read_only=True)``), so checking a journal never changes it (a WAL file left by a
killed writer is read, not checkpointed; a run left ``running`` stays so).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = [
    "TRACEBACK_MARKS",
    "assert_classified",
    "assert_no_traceback",
    "journal_intact",
    "json_lines",
    "run_status",
]

TRACEBACK_MARKS = ("Traceback (most recent call last)", "INTERNALERROR", "Fatal Python error")


def assert_no_traceback(text: str | bytes, where: str = "output") -> None:
    """Fail if *text* holds a Python traceback, a pytest INTERNALERROR or a fatal error."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    for mark in TRACEBACK_MARKS:
        assert mark not in text, f"{where} holds {mark!r}:\n{text[-4000:]}"


def assert_classified(deliveries: Any) -> None:
    """Every record not delivered carries its reason code, and so a stage and a cause.

    The code is the probe's own (``ProbeError.code``) or the harness's, carried by the
    runner to ``extra["reason_code"]`` (:mod:`drills.core.taxonomy`).
    """
    from drills.core.taxonomy import NotJudged, classify_delivery

    for d in deliveries:
        failure = classify_delivery(d.outcome.value, d.kind, d.reason, d.extra)
        if failure is None:
            continue
        if isinstance(failure, NotJudged):  # a harness fault or an interruption: never scored
            assert not d.outcome.counted, (d.outcome, failure, d.reason)
        code = d.extra.get("reason_code")
        assert isinstance(code, str) and code, (
            f"{d.outcome.value} without a reason code: {d.reason!r}"
        )


def journal_intact(path: str | Path) -> list[dict[str, Any]]:
    """Check the journal at *path* and return its runs (dicts as ``Journal.runs()``)."""
    from drills.core.journal import Journal

    path = Path(path)
    assert path.is_file(), f"no journal at {path}"
    with Journal(path, read_only=True) as journal:
        result = [row[0] for row in journal.db.execute("PRAGMA integrity_check")]
        assert result == ["ok"], f"journal {path} is damaged: {result}"
        return journal.runs()


def run_status(path: str | Path, run_id: str | None = None) -> str:
    """The status of run *run_id* (the newest run when None) in the intact journal at *path*."""
    runs = journal_intact(path)
    assert runs, f"journal {path} holds no run"
    if run_id is None:
        return str(runs[-1]["status"])
    found = [r for r in runs if r["run_id"] == run_id]
    assert found, f"journal {path} holds no run {run_id}"
    return str(found[0]["status"])


def json_lines(text: str | bytes) -> list[dict[str, Any]]:
    """The JSON records (one per line, :class:`drills.core.runlog.RunLog`) in *text*;
    other lines are skipped."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                out.append(record)
    return out
