"""A surge recorded without Locust: a realistic result journalled by the real writer.

:func:`record_sample_surge` builds what :func:`drills.surge.runner.run_surge`
builds from a real run — Locust-shaped stats entries (``--json-file``: one per
step, a response-time histogram and per-second counts) read by
:func:`drills.surge.stats.by_step`, probe deliveries per step turned into the
curve by :class:`drills.surge.curve.SurgeCurve` — and journals it with
:func:`drills.surge.runner.record_surge`, the function a real surge uses. Its
numbers are fixed, so reports made from it can be compared byte for byte.

Up to ``breaks_at`` the channel keeps up: every load message is taken in a few
milliseconds and every probe arrives within the SLO. From ``breaks_at`` on,
10 % of the load is refused (HTTP 429), responses slow down, and the probes
arrive late.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from drills.core.delivery import Delivery, Outcome
from drills.core.journal import Journal
from drills.core.registry import Target
from drills.surge.curve import SurgeCurve
from drills.surge.plan import RampStep, SurgePlan
from drills.surge.process import Topology
from drills.surge.runner import SurgeResult, record_surge
from drills.surge.stats import LoadStats, by_step

__all__ = ["locust_entry", "record_sample_surge"]


def locust_entry(step: RampStep, began: float, broken: bool) -> dict[str, Any]:
    """Locust's final stats entry for one step's load (``--json-file`` shape)."""
    requests = round(step.rate * step.duration_s * (0.9 if broken else 1.0))
    failures = requests // 10 if broken else 0
    slow = requests // 5 if broken else requests // 20
    fast_ms, slow_ms = (12, 180) if broken else (2, 6)
    seconds = max(1, round(step.duration_s))
    per_second = {str(int(began) + i): requests // seconds for i in range(seconds)}
    per_second[str(int(began))] += requests - sum(per_second.values())
    return {
        "name": step.name,
        "method": "POST",
        "num_requests": requests,
        "num_failures": failures,
        "response_times": {str(fast_ms): requests - slow, str(slow_ms): slow} if requests else {},
        "num_reqs_per_sec": per_second if requests else {},
        "total_response_time": float(fast_ms * (requests - slow) + slow_ms * slow),
        "max_response_time": float(slow_ms if requests else 0),
    }


def _probe(
    target: Target,
    run_id: str,
    name: str,
    n: int,
    sent: float,
    latency: float,
    slo: float,
    **labels: str,
) -> Delivery:
    outcome = Outcome.DELIVERED if latency <= slo else Outcome.LATE
    return Delivery(
        run_id=run_id,
        step=name,
        municipality_code=target.municipality.code,
        municipality_name=target.municipality.name,
        channel_id=target.channel.id,
        kind=target.channel.kind,
        token=f"TSG-SURGE{n:07d}",
        outcome=outcome,
        reason="" if outcome is Outcome.DELIVERED else "SLO超過 / over SLO",
        sent_at=sent,
        accepted_at=sent + 0.004,
        delivered_at=sent + latency,
        latency_s=latency,
        accept_latency_s=0.004,
        slo_latency_s=slo,
        **labels,
    )


def record_sample_surge(
    journal: Journal,
    run_id: str,
    target: Target,
    *,
    rates: Sequence[float],
    breaks_at: float | None,
    started_at: float,
    seq: int = 1,
    scenario: str = "",
    vantage: str = "default",
    step_s: float = 2.0,
    rest_s: float = 2.0,
    probes: int = 3,
    journal_probes: bool = True,
) -> SurgeResult:
    """Journal a surge of *target* along *rates* that misses the SLO from *breaks_at* on.

    ``journal_probes=False`` leaves the probe deliveries out of the journal
    (the event alone), for journals whose scores must not change.
    """
    plan = SurgePlan.of(rates, step_s, rest_s)
    slo, reach = target.channel.slo.latency, target.channel.slo.reachability
    prefix = f"surge {seq}"
    entries, per_step, began = [], {}, started_at
    for step in plan.steps:
        broken = breaks_at is not None and step.rate >= breaks_at
        if not step.at_rest:
            entries.append(locust_entry(step, began, broken))
        name = f"{prefix}.{step.index} ({step.label('en')})"
        latencies = (
            [slo * (1.4 + 0.5 * i) for i in range(probes)]
            if broken
            else [0.04 + 0.01 * step.index + 0.005 * i for i in range(probes)]
        )
        per_step[step.index] = [
            _probe(target, run_id, name, 100 * seq + 10 * step.index + i,
                   began + 0.5 + i * 0.4, round(latency, 3), slo,
                   scenario=scenario, vantage=vantage)
            for i, latency in enumerate(latencies)
        ]  # fmt: skip
        began += step.duration_s
    if journal_probes:
        for deliveries in per_step.values():
            for d in deliveries:
                journal.record(d)
    load = by_step(entries)
    curve = SurgeCurve.build(plan.steps, load, per_step, slo, reach)
    totals = LoadStats.merge(load.values())
    workers = [
        {
            "worker": "local",
            "requests": totals.requests,
            "failures": totals.failures,
            "by_step": {e["name"]: [e["num_requests"], e["num_failures"]] for e in entries},
        }
    ]
    result = SurgeResult(run_id, target.key, plan, Topology(), curve, totals, workers, "completed")
    record_surge(
        journal,
        result,
        target,
        seq=seq,
        step=prefix,
        scenario=scenario,
        vantage=vantage,
        live=False,
        started_at=started_at,
        steps_run=len(plan.steps),
    )
    return result
