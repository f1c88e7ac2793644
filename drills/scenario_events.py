"""Fallback and roll-call results, read from the journal's step events.

Scenario steps record them with ``journal.record_event(run_id, "fallback" |
"roll_call", data)``. The shapes are not fixed yet, so they are read
defensively; these are understood (and may be mixed)::

    {"municipality": "131211", "ok": true}                  one check (also passed,
                                                            success, reached, delivered)
    {"municipality_code": "131211", "outcome": "lost"}      an outcome word
    {"municipality": {"code": "131211"}, "expected": 20, "responded": 18}   counts
    {"target": "131211/chat", "answered": ["a", "b"], "asked": ["a", "b", "c"]}
    {"results": [ …any of the above… ]}                     also municipalities, targets,
                                                            items, checks
    {"results": {"131211": true, "131016": {"expected": 3, "responded": 2}}}

A harness ``error`` outcome and a ``drill_outage`` (the drill's own outage) are
skipped (never the municipality's fault);
anything else that cannot be read is counted as unreadable, never guessed.

>>> ratios, unreadable = read_ratios([{"data": {"municipality": "131211", "ok": True}},
...                                   {"data": {"municipality": "131211", "ok": False}},
...                                   {"data": {"what": 1}}])
>>> ratios["131211"], unreadable
(Ratio(good=1.0, total=2.0), 1)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from drills.scoring import Ratio

__all__ = ["read_ratios"]

_CONTAINERS = ("results", "municipalities", "targets", "items", "checks")
_CODE_KEYS = ("municipality_code", "municipality", "code", "target")
_EXPECTED_KEYS = ("expected", "total", "asked", "members", "staff")
_GOOD_KEYS = ("responded", "answered", "replied", "acknowledged", "confirmed", "reached", "passed")
_FLAG_KEYS = ("ok", "passed", "success", "succeeded", "reached", "delivered", "pass")
_OUTCOME_KEYS = ("outcome", "result", "status")
_GOOD_WORDS = {"delivered", "late", "ok", "passed", "pass", "success", "succeeded", "reached"}
_BAD_WORDS = {"lost", "rejected", "failed", "fail", "missed", "timeout", "down", "accepted"}
_SKIP_WORDS = {"error", "drill_outage"}


def _code(data: Mapping[str, Any], hint: str | None) -> str | None:
    for key in _CODE_KEYS:
        value = data.get(key)
        if isinstance(value, Mapping):
            value = value.get("code")
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str) and value:
            return value.split("/", 1)[0]
    return hint


def _count(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, list | tuple | set):
        return float(len(value))
    return None


def _one(data: Any, hint: str | None) -> tuple[str | None, Ratio | None] | None:
    """(code, ratio) of one item; ratio None means "skip"; None means unreadable."""
    if isinstance(data, bool):
        return (hint, Ratio(1.0 if data else 0.0, 1.0)) if hint else None
    if not isinstance(data, Mapping):
        return None
    code = _code(data, hint)
    if code is None:
        return None
    expected = next((c for k in _EXPECTED_KEYS if (c := _count(data.get(k))) is not None), None)
    good = next((c for k in _GOOD_KEYS if (c := _count(data.get(k))) is not None), None)
    if expected is not None and good is not None:
        return code, Ratio(good, expected)
    for key in _FLAG_KEYS:
        if isinstance(data.get(key), bool):
            return code, Ratio(1.0 if data[key] else 0.0, 1.0)
    for key in _OUTCOME_KEYS:
        word = data.get(key)
        if isinstance(word, str):
            word = word.lower()
            if word in _GOOD_WORDS:
                return code, Ratio(1.0, 1.0)
            if word in _BAD_WORDS:
                return code, Ratio(0.0, 1.0)
            if word in _SKIP_WORDS:
                return code, None
    return None


def _walk(data: Any, hint: str | None, out: list[tuple[str, Ratio]]) -> int:
    """Collect (code, ratio) pairs from *data*; return how many items were unreadable."""
    if isinstance(data, Mapping):
        for key in _CONTAINERS:
            inner = data.get(key)
            if isinstance(inner, list):
                return sum(_walk(item, _code(data, hint), out) for item in inner)
            if isinstance(inner, Mapping):
                return sum(_walk(v, str(k), out) for k, v in inner.items())
    found = _one(data, hint)
    if found is None:
        return 1
    code, ratio = found
    if code is not None and ratio is not None:
        out.append((code, ratio))
    return 0


def read_ratios(events: Iterable[Mapping[str, Any]]) -> tuple[dict[str, Ratio], int]:
    """Per municipality code, the summed ratio of its events; and the unreadable count.

    *events* are rows of ``Journal.events(run_id, kind)`` (their ``data`` is read).
    """
    pairs: list[tuple[str, Ratio]] = []
    unreadable = 0
    for event in events:
        unreadable += _walk(event.get("data"), None, pairs)
    totals: dict[str, Ratio] = {}
    for code, ratio in pairs:
        prev = totals.get(code, Ratio(0.0, 0.0))
        totals[code] = Ratio(prev.good + ratio.good, prev.total + ratio.total)
    return totals, unreadable
