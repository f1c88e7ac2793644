"""Fallback, roll-call and acknowledgement ratios of journal rows: a thin wrapper.

The reading and the formula are :mod:`drills.core.events` (every step of the run
counts, summed; what is not the municipality's doing is left out). New code
reads a run with ``drills.core.events.run_events(journal, run_id)`` and calls
``fallback_ratios()`` / ``roll_call_ratios()`` / ``acknowledgement_ratios()``;
this function is kept for callers that already hold the rows of one kind.

>>> row = {"kind": "roll_call", "data": {"step": "rc", "room": "130001/chat",
...        "within_s": 5.0, "delivered": True, "municipalities": [{"code": "131211",
...        "name": "足立区", "expected": 1, "answered": 1, "answered_s": 2.3}]}}
>>> read_ratios([row, {"kind": "roll_call", "data": {"what": 1}}])
({'131211': Ratio(good=1.0, total=1.0)}, 1)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from drills.core.events import (
    AcknowledgementEvent,
    FallbackEvent,
    RollCallEvent,
    RunEvents,
    StepEvent,
    read_events,
)
from drills.core.scoring import Ratio

__all__ = ["read_ratios"]

_RATIOS: tuple[tuple[type[StepEvent], Callable[[RunEvents], dict[str, Ratio]]], ...] = (
    (FallbackEvent, RunEvents.fallback_ratios),
    (RollCallEvent, RunEvents.roll_call_ratios),
    (AcknowledgementEvent, RunEvents.acknowledgement_ratios),
)


def read_ratios(events: Iterable[Mapping[str, Any]]) -> tuple[dict[str, Ratio], int]:
    """Per municipality code, the summed ratio of *events*; and how many were unreadable.

    *events* are rows of ``Journal.events(run_id, kind)`` (``kind`` and ``data`` are read),
    normally of one kind; rows of several of the three kinds are summed together.
    """
    run = read_events("", events)
    totals: dict[str, Ratio] = {}
    for _, ratios in _RATIOS:
        for code, ratio in ratios(run).items():
            prev = totals.get(code, Ratio(0.0, 0.0))
            totals[code] = Ratio(prev.good + ratio.good, prev.total + ratio.total)
    unreadable = sum(run.unreadable_of(cls) for cls, _ in _RATIOS)
    return totals, unreadable
