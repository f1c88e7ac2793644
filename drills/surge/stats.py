"""Reading Locust's final statistics (``--json-file``): per step, percentiles, steady rate.

Locust writes one entry per (request name, method); the surge names every
request after its ramp step (``"step 3"``), so one entry is one step's load,
already aggregated over every Locust process by the master. Each entry has
``num_requests`` (failures included), ``num_failures``, a histogram
``response_times`` (milliseconds, rounded as Locust rounds them → count) and
``num_reqs_per_sec`` (epoch second → count). Pure functions, no I/O::

    >>> s = LoadStats.from_entry({"num_requests": 4, "num_failures": 1,
    ...     "response_times": {"10": 3, "200": 1}, "num_reqs_per_sec": {"100": 4}})
    >>> s.percentile_ms(50), s.percentile_ms(99), s.failure_ratio
    (10, 200, 0.25)
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LoadStats", "by_step", "histogram_percentile", "steady_rate"]

_STEP_NAME = re.compile(r"^step (\d+)$")


def histogram_percentile(histogram: Mapping[int, int], q: float) -> int | None:
    """The *q*-th percentile (0–100) of a value → count histogram (nearest rank, as Locust).

    >>> histogram_percentile({1: 50, 2: 49, 90: 1}, 99), histogram_percentile({}, 50)
    (2, None)
    """
    total = sum(histogram.values())
    if total <= 0:
        return None
    rank = max(1, -(-int(total * q) // 100)) if q > 0 else 1
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= rank:
            return value
    return max(histogram)


def steady_rate(per_second: Mapping[int, int]) -> float:
    """Requests per second in the steady part of a run: full seconds only.

    The first and last seconds are partial (start-up, shut-down) and are left
    out when there are at least three; otherwise the plain mean is returned.

    >>> steady_rate({10: 5, 11: 100, 12: 110, 13: 20})
    105.0
    """
    if not per_second:
        return 0.0
    first, last = min(per_second), max(per_second)
    if last - first >= 2:
        inner = range(first + 1, last)
        return sum(per_second.get(s, 0) for s in inner) / len(inner)
    return sum(per_second.values()) / (last - first + 1)


@dataclass(frozen=True)
class LoadStats:
    """The load of one step (or of the whole surge) as Locust measured it."""

    requests: int = 0
    failures: int = 0
    histogram: Mapping[int, int] = field(default_factory=dict)
    per_second: Mapping[int, int] = field(default_factory=dict)
    total_response_ms: float = 0.0
    max_response_ms: float = 0.0

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> LoadStats:
        return cls(
            requests=int(entry.get("num_requests") or 0),
            failures=int(entry.get("num_failures") or 0),
            histogram={
                int(float(k)): int(v) for k, v in (entry.get("response_times") or {}).items()
            },
            per_second={
                int(float(k)): int(v) for k, v in (entry.get("num_reqs_per_sec") or {}).items()
            },
            total_response_ms=float(entry.get("total_response_time") or 0.0),
            max_response_ms=float(entry.get("max_response_time") or 0.0),
        )

    @classmethod
    def merge(cls, parts: Iterable[LoadStats]) -> LoadStats:
        items = list(parts)
        hist: Counter[int] = Counter()
        secs: Counter[int] = Counter()
        for p in items:
            hist.update(p.histogram)
            secs.update(p.per_second)
        return cls(
            requests=sum(p.requests for p in items),
            failures=sum(p.failures for p in items),
            histogram=dict(hist),
            per_second=dict(secs),
            total_response_ms=sum(p.total_response_ms for p in items),
            max_response_ms=max((p.max_response_ms for p in items), default=0.0),
        )

    @property
    def failure_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 0.0

    def percentile_ms(self, q: float) -> int | None:
        return histogram_percentile(self.histogram, q)

    def rate(self, duration_s: float) -> float:
        """Requests per second over a nominal *duration_s*."""
        return self.requests / duration_s if duration_s > 0 else 0.0

    def steady_rate(self) -> float:
        return steady_rate(self.per_second)

    def summary(self, duration_s: float | None = None) -> dict[str, Any]:
        """JSON-ready: requests, failures, rates and response-time percentiles (ms)."""
        out: dict[str, Any] = {
            "requests": self.requests,
            "failures": self.failures,
            "failure_ratio": round(self.failure_ratio, 4),
            "rps_steady": round(self.steady_rate(), 2),
            "response_p50_ms": self.percentile_ms(50),
            "response_p95_ms": self.percentile_ms(95),
            "response_p99_ms": self.percentile_ms(99),
            "response_max_ms": round(self.max_response_ms, 1),
            "response_mean_ms": round(self.total_response_ms / self.requests, 2)
            if self.requests
            else None,
        }
        if duration_s is not None:
            out["rps"] = round(self.rate(duration_s), 2)
            out["failures_per_s"] = round(self.failures / duration_s, 2) if duration_s > 0 else 0.0
        return out


def by_step(entries: Iterable[Mapping[str, Any]]) -> dict[int, LoadStats]:
    """Stats per ramp step index from Locust's JSON entries (other names are ignored)."""
    grouped: dict[int, list[LoadStats]] = {}
    for entry in entries:
        match = _STEP_NAME.match(str(entry.get("name", "")))
        if match:
            grouped.setdefault(int(match.group(1)), []).append(LoadStats.from_entry(entry))
    return {index: LoadStats.merge(parts) for index, parts in sorted(grouped.items())}
