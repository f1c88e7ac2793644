"""What keeping a journal in shape reports: :class:`PruneResult` and :class:`JournalStats`.

``tsunagari journal prune`` and ``tsunagari journal stats`` print them
(:meth:`~drills.core.journal.Journal.prune`, :meth:`~drills.core.journal.Journal.stats`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["JournalStats", "PruneResult"]


@dataclass(frozen=True, slots=True)
class PruneResult:
    """What :meth:`Journal.prune` removed (or, with ``dry_run``, would remove)."""

    cutoff: float
    """Runs started before this epoch time were candidates."""
    runs: int
    deliveries: int
    events: int
    digests: int
    kept_latest: int
    """Runs older than the cutoff kept because each is its scenario × vantage's latest."""
    dry_run: bool = False

    def to_data(self) -> dict[str, Any]:
        return {
            "cutoff": self.cutoff,
            "runs": self.runs,
            "deliveries": self.deliveries,
            "events": self.events,
            "digests": self.digests,
            "kept_latest": self.kept_latest,
            "dry_run": self.dry_run,
        }


@dataclass(frozen=True, slots=True)
class JournalStats:
    """The size and span of a journal (:meth:`Journal.stats`)."""

    schema_version: int
    runs_by_status: Mapping[str, int] = field(default_factory=dict)
    deliveries: int = 0
    events: int = 0
    digests: int = 0
    file_bytes: int = 0
    """The database file plus its write-ahead log."""
    oldest_run_at: float | None = None
    newest_run_at: float | None = None

    @property
    def runs(self) -> int:
        return sum(self.runs_by_status.values())

    def to_data(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "runs": self.runs,
            "runs_by_status": dict(self.runs_by_status),
            "deliveries": self.deliveries,
            "events": self.events,
            "digests": self.digests,
            "file_bytes": self.file_bytes,
            "oldest_run_at": self.oldest_run_at,
            "newest_run_at": self.newest_run_at,
        }
