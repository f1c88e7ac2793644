"""What a scrape of ``tsunagari serve`` costs, against just reading the journal.

A synthetic journal of RUNS daily drills (7 municipalities × 3 channels × 5
messages each, as the demo) is scraped three ways, side by side with a
baseline that only reads every delivery back from SQLite:

- baseline: ``journal.deliveries()`` for all runs (the floor for a cold scrape);
- cold: a fresh collector (first scrape after an exporter restart);
- warm: the same collector again (ended runs' digests are cached).

    python benchmarks/bench_exporter.py [--runs 90] [--repeat 5]

Prints a table and writes benchmarks/results/bench_exporter.json.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from drills.core.delivery import Delivery, Outcome
from drills.core.journal import Journal
from drills.metrics.collector import JournalCollector
from probes.base import new_token

MUNIS = [
    ("131211", "足立区"),
    ("131016", "千代田区"),
    ("131041", "新宿区"),
    ("132012", "八王子市"),
    ("133086", "奥多摩町"),
    ("134210", "小笠原村"),
    ("130001", "東京都"),
]
CHANNELS = [("chat", "webhook"), ("mail", "mail"), ("sms", "twilio")]


def build(path: Path, runs: int, per_channel: int, seed: int = 1) -> Journal:
    rng = random.Random(seed)
    journal = Journal(path)
    journal.db.execute("BEGIN")
    for _ in range(runs):
        run_id = journal.begin_run("benchmark", "hq")
        for code, name in MUNIS:
            for cid, kind in CHANNELS:
                for _ in range(per_channel):
                    latency = rng.lognormvariate(0, 0.8)
                    outcome = Outcome.DELIVERED if rng.random() > 0.05 else Outcome.LOST
                    now = time.time()
                    journal.record(
                        Delivery(
                            run_id,
                            "s",
                            code,
                            name,
                            cid,
                            kind,
                            new_token(),
                            outcome,
                            sent_at=now,
                            latency_s=latency if outcome.reached else None,
                            slo_latency_s=3.0,
                            error_bound_s=0.01,
                            vantage="hq",
                            scenario="benchmark",
                        )
                    )
        journal.finish_run(run_id)
    journal.db.execute("COMMIT")
    return journal


def timed(fn, repeat: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=90)
    parser.add_argument("--per-channel", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        journal = build(Path(tmp) / "journal.sqlite", args.runs, args.per_channel)
        deliveries = len(journal.deliveries())

        def cold() -> bytes:
            prom = CollectorRegistry()
            JournalCollector(journal, prom_registry=prom)
            return generate_latest(prom)

        warm_registry = CollectorRegistry()
        JournalCollector(journal, prom_registry=warm_registry)
        size = len(generate_latest(warm_registry))
        results = {
            "baseline_read_all": timed(lambda: journal.deliveries(), args.repeat),
            "cold_scrape": timed(cold, args.repeat),
            "warm_scrape": timed(lambda: generate_latest(warm_registry), args.repeat),
        }
        journal.close()
    base = statistics.median(results["baseline_read_all"])
    print(f"journal: {args.runs} runs, {deliveries} deliveries; exposition {size} bytes")
    print(f"{'what':<20}{'median ms':>12}{'× baseline':>12}")
    summary = {}
    for name, values in results.items():
        median = statistics.median(values)
        summary[name] = {"median_s": median, "ratio_to_baseline": median / base, "runs": values}
        print(f"{name:<20}{median * 1000:>12.1f}{median / base:>12.2f}")
    from benchlib import results_dir  # the results folder ($TSUNAGARI_BENCH_RESULTS)

    out = results_dir() / "bench_exporter.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {"runs": args.runs, "deliveries": deliveries, "bytes": size, **summary}, indent=2
        )
    )


if __name__ == "__main__":
    main()
