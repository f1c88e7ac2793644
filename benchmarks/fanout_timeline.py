"""Where a fan-out's latency goes, and when: figures :mod:`bench_core_fanout` reads from its runs.

- :func:`tail_parts`: each record's latency − injected split by the simulators' ledgers
  into ``out`` (sent → the far end took it), ``far`` (the far end's own lateness) and
  ``back`` (visible → the harness's sighting);
- :func:`timeline`: second by second, the harness loop's lag beside what happened then
  (sends, visibilities, sightings, and with ``--trace`` collections, group commits and
  read-back answers);
- :func:`slowest`: the slowest 1 % of records, part by part (``--trace``).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from typing import Any


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 2)


def legs(
    records: list[Any], ledgers: list[Any], latency: float
) -> Iterator[tuple[Any, float, float, float, float, float]]:
    """Each record the ledgers saw arrive and become visible, split by the ledgers' clock:
    ``(record, sent, latency − injected, out, far, back)`` (see :func:`tail_parts`)."""
    by_token = {e.token: e for ledger in ledgers for e in ledger.entries()}
    for d in records:
        sent = d.extra.get("sent_mono")
        e = by_token.get(d.token)
        if d.latency_s is None or sent is None or e is None:
            continue
        if e.visible_at is None or e.received_at is None:
            continue
        sent = float(sent)
        yield (
            d,
            sent,
            d.latency_s - latency,
            e.received_at - sent,
            e.visible_at - e.received_at - latency,
            sent + d.latency_s - e.visible_at,
        )


def tail_parts(records: list[Any], ledgers: list[Any], latency: float) -> dict[str, Any]:
    """Where the measured latency − injected goes, per record, by the ledgers' clock.

    ``out``: sent → the far end took it (the request's way there);
    ``far``: took it → visible, minus the injected latency (the far end's own timer late);
    ``back``: visible → the harness's sighting (the read-back's way, and the harness noticing).
    Given at p50/p99 over all records, and as the median of each part over the slowest 1 %.
    """
    rows = sorted(
        (total, out, far, back)
        for _d, _sent, total, out, far, back in legs(records, ledgers, latency)
    )
    if not rows:
        return {}
    tail = rows[-max(1, len(rows) // 100) :]
    out: dict[str, Any] = {}
    for i, name in ((1, "out"), (2, "far"), (3, "back")):
        values = [r[i] for r in rows]
        out[f"{name}_p50_ms"] = ms(pct(values, 0.5))
        out[f"{name}_p99_ms"] = ms(pct(values, 0.99))
        out[f"{name}_in_slowest_1pct_median_ms"] = ms(statistics.median(r[i] for r in tail))
    return out


def timeline(
    side: dict[str, Any], records: list[Any], ledgers: list[Any], latency: float
) -> list[dict[str, Any]]:
    """Second by second from the broadcast's call: the loop's lag and what happened then.

    Per second (``t``: seconds since ``Drill.broadcast`` was called, on the harness's
    monotonic clock): the loop-lag ticks' p50/p99/max (ms); how many messages left
    (``sent``), became visible at the far end (``visible``) and were sighted
    (``seen``); the p99 of ``back`` (visible → sighting, ms) of the messages sighted
    then; with ``--trace`` also the collections (count, ms, the oldest generation), the
    group commits (count, ms) and the read-back answers (long-polls that came back,
    empty or not, and other requests).
    """
    t0 = side["broadcast_called_mono"]
    end = side["step_finished_mono"]
    n = int(end - t0) + 1
    rows: list[dict[str, Any]] = [
        {"t": i, "lags": [], "sent": 0, "visible": 0, "seen": 0, "backs": []} for i in range(n)
    ]

    def at(t: float) -> dict[str, Any] | None:
        i = int(t - t0)
        return rows[i] if 0 <= i < n else None

    for ran, lag in side["lag_samples"]:
        if (row := at(ran)) is not None:
            row["lags"].append(lag)
    by_token = {e.token: e for ledger in ledgers for e in ledger.entries()}
    for d in records:
        sent = d.extra.get("sent_mono")
        if sent is None:
            continue
        if (row := at(float(sent))) is not None:
            row["sent"] += 1
        if d.latency_s is None:
            continue
        seen = float(sent) + d.latency_s
        e = by_token.get(d.token)
        if (row := at(seen)) is not None:
            row["seen"] += 1
            if e is not None and e.visible_at is not None:
                row["backs"].append(seen - e.visible_at)
        if e is not None and e.visible_at is not None and (row := at(e.visible_at)) is not None:
            row["visible"] += 1
    events = side.get("events")
    if events:
        for row in rows:
            row.update(
                gc_n=0,
                gc_max_ms=0.0,
                gc_ms=0.0,
                gc_gen=-1,
                commit_n=0,
                commit_ms=0.0,
                polls_back=0,
                polls_back_empty=0,
                other_requests=0,
            )
        for t, took, gen, *_ in events["gc"]:
            if (row := at(t + took)) is not None:
                row["gc_n"] += 1
                row["gc_ms"] += took * 1000
                row["gc_gen"] = max(row["gc_gen"], gen)
                row["gc_max_ms"] = max(row["gc_max_ms"], round(took * 1000, 1))
        for t, took, _rows in events["commits"]:
            if (row := at(t + took)) is not None:
                row["commit_n"] += 1
                row["commit_ms"] += took * 1000
        for t, took, method, wait, size in events["looks"]:
            if (row := at(t + took)) is None:
                continue
            if method == "GET" and wait not in ("-", "0"):
                row["polls_back"] += 1
                row["polls_back_empty"] += size < 80  # '{"cursor": N, "messages": []}'
            else:
                row["other_requests"] += 1
    out = []
    for row in rows:
        lags, backs = row.pop("lags"), row.pop("backs")
        row["lag_p50_ms"] = ms(pct(lags, 0.5))
        row["lag_p99_ms"] = ms(pct(lags, 0.99))
        row["lag_max_ms"] = ms(max(lags)) if lags else None
        row["back_p99_ms"] = ms(pct(backs, 0.99))
        for key in ("gc_ms", "commit_ms"):
            if key in row:
                row[key] = round(row[key], 1)
        out.append(row)
    return out


def slowest(
    side: dict[str, Any], records: list[Any], ledgers: list[Any], latency: float
) -> list[tuple[Any, ...]]:
    """--trace: the slowest 1 % of records: (sent − the broadcast's call in s; latency −
    injected, out, far, back, loop lag, error bound in ms)."""
    t0 = side["broadcast_called_mono"]
    rows = [
        (
            round(sent - t0, 3),
            ms(total),
            ms(out),
            ms(far),
            ms(back),
            ms(float(d.extra.get("loop_lag_s", 0.0))),
            ms(d.error_bound_s),
        )
        for d, sent, total, out, far, back in legs(records, ledgers, latency)
    ]
    rows.sort(key=lambda r: r[1] or 0.0)
    return rows[-max(1, len(rows) // 100) :]
