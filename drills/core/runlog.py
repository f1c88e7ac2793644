"""One-line structured log records (JSON) on stderr, for unattended runs.

    {"ts": "2026-11-27T19:15:08+09:00", "level": "error", "event": "requirement_missed",
     "test": "scenarios/test_shuto_chokka.py::test_全職員へ参集指示", "municipality": "134210",
     "stage": "send", "cause": "auth", "rows": [{"channel": "chat", "outcome": "rejected",
     "stage": "send", "cause": "auth", …}], …}

A ``requirement_missed`` record names where the chain broke and why: ``stage`` and
``cause`` (:mod:`drills.core.taxonomy`), the main ones at the top and each row's own.

Info records only with ``-v``; errors always. Every record is one line, UTF-8,
with every resolved secret replaced by ``***`` (:mod:`drills.core.redaction`).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from drills.core.redaction import redact

__all__ = ["RunLog"]

TOKYO = ZoneInfo("Asia/Tokyo")  # as drills.reporting.scorecard, without importing the scorecard


class RunLog:
    """Writes records to *stream*; ``info`` records only when *verbose*."""

    def __init__(self, stream: TextIO, verbose: bool = False) -> None:
        self.stream, self.verbose = stream, verbose
        self.count = 0

    def emit(self, level: str, event: str, **fields: Any) -> None:
        if level == "info" and not self.verbose:
            return
        self.stream.write(self.line(level, event, **fields) + "\n")
        self.stream.flush()
        self.count += 1

    def line(self, level: str, event: str, **fields: Any) -> str:
        """One record as the line :meth:`emit` writes (without the newline)."""
        record = {
            "ts": datetime.now(TOKYO).isoformat(timespec="seconds"),
            "level": level,
            "event": event,
            **{k: v for k, v in fields.items() if v is not None},
        }
        return redact(json.dumps(record, ensure_ascii=False, default=str).replace("\n", "\\n"))

    def info(self, event: str, **fields: Any) -> None:
        self.emit("info", event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self.emit("error", event, **fields)
