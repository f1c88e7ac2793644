"""A journalled surge, read back: what the metrics export and the scorecard shows.

:func:`~drills.surge.runner.record_surge` writes one ``surge`` event per surge
(shape: README, section surge; typed: :class:`drills.core.events.SurgeEvent`).
:func:`read_surges` reads those events back through ``SurgeEvent``, which
checks the parts every report relies on; an event that lacks them is counted
as unreadable, never guessed. Pure, no I/O::

    >>> step = {"index": 1, "rate": 20.0, "at_rest": False, "ran_s": 2.0, "slo_met": False,
    ...         "load": {"requests": 40, "failures": 2, "rps": 20.0, "response_p95_ms": 9},
    ...         "probes": {"sent": 3, "within_slo": 0, "latency_p50_s": 2.5,
    ...                    "latency_p95_s": 3.1}}
    >>> event = {"seq": 1, "municipality_code": "131211", "municipality_name": "足立区",
    ...          "channel_id": "chat", "kind": "webhook", "started_at": 1764230100.0,
    ...          "stop_reason": "completed", "steps_run": 1, "steps": [step],
    ...          "slo": {"latency_s": 1.0, "reachability": 0.99},
    ...          "totals": {"requests": 40, "failures": 2, "failure_ratio": 0.05,
    ...                     "response_p50_ms": 4, "response_p95_ms": 9},
    ...          "breaking_point": {"index": 1, "rate": 20.0, "at_rest": False},
    ...          "held_up_to_rate": None}
    >>> surges, unreadable = read_surges([{"data": event}, {"data": {"steps": 3}}])
    >>> surges[0].held, surges[0].gauges()["breaking_point_messages_per_second"], unreadable
    (False, 20.0, 1)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from drills.core.events import EventError, SurgeEvent

__all__ = ["SURGE_GAUGES", "SurgeSummary", "read_surge", "read_surge_event", "read_surges"]

# The per-channel gauges of the latest surge: name after ``tsunagari_surge_``, 日本語, English.
SURGE_GAUGES: tuple[tuple[str, str, str], ...] = (
    (
        "offered_peak_messages_per_second",
        "最新のサージで実施した段のうち最大の負荷（かけた 通/秒）",
        "Highest offered load (msg/s) among the steps that ran in the latest surge",
    ),
    (
        "achieved_messages_per_second",
        "最大負荷の段で実測できた負荷（通/秒、失敗を含む）",
        "Load achieved (msg/s, failures included) at the highest step of the latest surge",
    ),
    (
        "failure_ratio",
        "最新のサージで失敗した負荷メッセージの割合（全段）",
        "Share of the latest surge's load messages that failed (all steps)",
    ),
    (
        "load_latency_p50_seconds",
        "最新のサージの負荷メッセージの応答時間の中央値（全段）",
        "Median response time of the latest surge's load messages (all steps)",
    ),
    (
        "load_latency_p95_seconds",
        "最新のサージの負荷メッセージの応答時間の 95 パーセンタイル（全段）",
        "95th percentile response time of the latest surge's load messages (all steps)",
    ),
    (
        "slo_held",
        "最新のサージの全段で SLO を満たせば 1、破綻点があれば 0（判定できなければなし）",
        "1 if the SLO held at every step of the latest surge, 0 if it broke "
        "(absent when no probe counted)",
    ),
    (
        "held_up_to_messages_per_second",
        "最新のサージで SLO を満たした最大の負荷（通/秒、破綻点より前）",
        "Highest offered load (msg/s) at which the SLO held, before any breaking point",
    ),
    (
        "breaking_point_messages_per_second",
        "最新のサージの破綻点: 初めて SLO を割った段の負荷（通/秒、平常時なら 0、破綻なしならなし）",
        "Breaking point of the latest surge: offered load (msg/s) of the first step that missed "
        "the SLO (0: at rest; absent when it held)",
    ),
    (
        "last_start_timestamp_seconds",
        "最新のサージの開始時刻（UNIX 時刻）",
        "When the latest surge started, Unix time",
    ),
)


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _ms(value: Any) -> float | None:
    ms = _num(value)
    return None if ms is None else ms / 1000.0


@dataclass(frozen=True)
class SurgeSummary:
    """One surge of one channel, as journalled; ``data`` is the event itself."""

    seq: int
    code: str
    name: str
    channel_id: str
    kind: str
    started_at: float | None
    data: Mapping[str, Any]

    @classmethod
    def of(cls, event: SurgeEvent) -> SurgeSummary:
        """The summary of a typed surge event; ``data`` is the event as journalled."""
        data = event.to_data()
        del data["v"]
        return cls(
            event.seq,
            event.municipality_code,
            event.municipality_name or event.municipality_code,
            event.channel_id,
            event.channel_kind,
            event.started_at,
            data,
        )

    @property
    def key(self) -> tuple[str, str]:
        return (self.code, self.channel_id)

    @property
    def breaking_point(self) -> Mapping[str, Any] | None:
        bp = self.data.get("breaking_point")
        return bp if isinstance(bp, Mapping) else None

    @property
    def held_up_to_rate(self) -> float | None:
        return _num(self.data.get("held_up_to_rate"))

    @property
    def held(self) -> bool | None:
        """True: no step missed the SLO; False: one did; None: no probe counted (no verdict)."""
        if self.breaking_point is not None:
            return False
        return True if self.held_up_to_rate is not None else None

    def _peak_step(self) -> Mapping[str, Any] | None:
        """The highest load step that ran (the last of equals)."""
        ran = [
            s
            for s in self.data["steps"]
            if not s["at_rest"] and (_num(s.get("ran_s")) is None or s["ran_s"] > 0)
        ]
        return max(reversed(ran), key=lambda s: float(s["rate"])) if ran else None

    @property
    def peak_rate(self) -> float | None:
        peak = self._peak_step()
        return None if peak is None else float(peak["rate"])

    @property
    def achieved_rps(self) -> float | None:
        peak = self._peak_step()
        return None if peak is None else _num(peak["load"].get("rps"))

    def gauges(self) -> dict[str, float]:
        """Values of :data:`SURGE_GAUGES` (a value that cannot be told is left out, never NaN)."""
        totals = self.data.get("totals")
        totals = totals if isinstance(totals, Mapping) else {}
        requests = _num(totals.get("requests"))
        bp = self.breaking_point
        held = self.held
        values: dict[str, float | None] = {
            "offered_peak_messages_per_second": self.peak_rate,
            "achieved_messages_per_second": self.achieved_rps,
            "failure_ratio": _num(totals.get("failure_ratio")) if requests else None,
            "load_latency_p50_seconds": _ms(totals.get("response_p50_ms")),
            "load_latency_p95_seconds": _ms(totals.get("response_p95_ms")),
            "slo_held": None if held is None else float(held),
            "held_up_to_messages_per_second": self.held_up_to_rate,
            "breaking_point_messages_per_second": None if bp is None else _num(bp.get("rate")),
            "last_start_timestamp_seconds": self.started_at,
        }
        return {k: v for k, v in values.items() if v is not None}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for the scorecard: the event's keys (not per-worker tallies), and a verdict."""
        keep = (
            "seq step target municipality_code municipality_name channel_id kind live topology "
            "plan started_at stop_reason steps_run totals slo breaking_point held_up_to_rate steps"
        ).split()
        return {
            **{k: self.data.get(k) for k in keep},
            "held": self.held,
            "peak_rate": self.peak_rate,
            "achieved_rps": self.achieved_rps,
        }


def read_surge(data: Any) -> SurgeSummary | None:
    """The surge in one event's ``data``; None when it is not a readable
    :class:`~drills.core.events.SurgeEvent` (see :func:`read_surge_event` for why)."""
    try:
        return SurgeSummary.of(SurgeEvent.from_data(data))
    except EventError:
        return None


def read_surge_event(event: SurgeEvent) -> SurgeSummary:
    """The summary of a typed surge event (as ``run_events(...).of(SurgeEvent)`` gives)."""
    return SurgeSummary.of(event)


def read_surges(events: Iterable[Mapping[str, Any]]) -> tuple[list[SurgeSummary], int]:
    """The surges of journal ``surge`` events (their ``data``), in order; and the unreadable count."""
    surges: list[SurgeSummary] = []
    unreadable = 0
    for event in events:
        surge = read_surge(event.get("data"))
        if surge is None:
            unreadable += 1
        else:
            surges.append(surge)
    return surges, unreadable
