"""The journal on PostgreSQL against SQLite, side by side, same data.

Two figures, each measured on both backends in one run and reported as a ratio
(PostgreSQL ÷ SQLite):

- **writes**: deliveries journalled per second through :meth:`Journal.record` — each
  delivery its own committed transaction, as a drill writes them. SQLite as the
  journal opens it (WAL, ``synchronous=NORMAL``: no fsync per commit), PostgreSQL as
  installed (``fsync=on``, ``synchronous_commit=on``: an fsync of the WAL per commit),
  and once more with PostgreSQL's ``synchronous_commit=off`` (the same promise as
  SQLite's NORMAL: a crashed process loses nothing, a power cut the last commits).
  Once with one writer, once with WRITERS processes each writing its own run into the
  same journal at the same time (vantage runners);
- **cold scrape**: the first ``GET /metrics`` of a freshly started ``tsunagari serve``
  on a journal of RUNS daily drills (7 municipalities × 3 channels × 5 messages, as
  ``bench_exporter.py``), the PostgreSQL journal made from the SQLite one with
  ``journal copy`` (so: the same rows, the same stored digests and totals). Also the
  in-process equivalent (a fresh collector's render), without HTTP and start-up noise.

The PostgreSQL server is a private one started here (``tests/servers/postgres.py``:
initdb in a temp dir, 127.0.0.1, TCP like a remote database would be reached).

    python benchmarks/bench_journal_backends.py [--deliveries 1500] [--writers 3]
                                                [--runs 60] [--repeat 3]

Prints a table and writes benchmarks/results/bench_journal_backends.json.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_exporter import CHANNELS, MUNIS  # noqa: E402  (the same journal shape)

from drills.core.delivery import Delivery, Outcome  # noqa: E402
from drills.core.journal import open_journal  # noqa: E402
from drills.core.journal.copy import copy_rows  # noqa: E402
from probes.base import new_token  # noqa: E402
from probes.sim.base import free_port  # noqa: E402
from tests.servers.dovecot import port_open  # noqa: E402
from tests.servers.postgres import Postgres  # noqa: E402


def delivery(run_id: str, rng: random.Random, vantage: str, i: int) -> Delivery:
    code, name = MUNIS[i % len(MUNIS)]
    cid, kind = CHANNELS[i % len(CHANNELS)]
    latency = rng.lognormvariate(0, 0.8)
    outcome = Outcome.DELIVERED if rng.random() > 0.05 else Outcome.LOST
    now = time.time()
    return Delivery(
        run_id,
        "s",
        code,
        name,
        cid,
        kind,
        new_token(),
        outcome,
        sent_at=now,
        delivered_at=now + latency if outcome.reached else None,
        latency_s=latency if outcome.reached else None,
        slo_latency_s=3.0,
        error_bound_s=0.01,
        vantage=vantage,
        scenario="benchmark",
    )


# ------------------------------------------------------------------ writes


def write_run(target: str, vantage: str, count: int, seed: int) -> float:
    """One runner: *count* deliveries, each committed; the seconds it took."""
    rng = random.Random(seed)
    with open_journal(target) as journal:
        run_id = journal.begin_run("benchmark", vantage)
        items = [delivery(run_id, rng, vantage, i) for i in range(count)]
        start = time.perf_counter()
        for item in items:
            journal.record(item)
        elapsed = time.perf_counter() - start
        journal.finish_run(run_id)
    return elapsed


def write_rate(target: str, count: int, writers: int) -> float:
    """Deliveries per second over all *writers* processes, writing at once."""
    if writers == 1:
        return count / write_run(target, "hq", count, 1)
    # Made (and migrated) before the writers start: this measures writing, not three
    # processes creating one new SQLite file at once (which can fail "database is locked").
    open_journal(target).close()
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(writers + 1)
    per = count // writers
    procs = []
    results = ctx.Queue()
    for n in range(writers):

        def work(n: int = n) -> None:
            barrier.wait()
            results.put(write_run(target, f"v{n}", per, n))

        proc = ctx.Process(target=work)
        proc.start()
        procs.append(proc)
    barrier.wait()
    start = time.perf_counter()
    for proc in procs:
        proc.join()
    wall = time.perf_counter() - start
    for proc in procs:
        assert proc.exitcode == 0, proc.exitcode
    return per * writers / wall


# ------------------------------------------------------------------ cold scrape


def build(path: str, runs: int, per_channel: int) -> int:
    """A SQLite journal of *runs* ended drills (written in one transaction: quick), with its
    digests and totals stored by one scrape; the number of deliveries."""
    from drills.metrics.collector import exposition

    rng = random.Random(1)
    n = 0
    with open_journal(path) as journal:
        journal.db.execute("BEGIN")
        for r in range(runs):
            run_id = journal.begin_run("benchmark", "hq")
            for i in range(len(MUNIS) * len(CHANNELS) * per_channel):
                journal.record(delivery(run_id, rng, "hq", i % (len(MUNIS) * len(CHANNELS))))
                n += 1
            journal.finish_run(run_id)
            journal.db.execute(
                "UPDATE runs SET started_at = started_at - ? WHERE run_id = ?",
                ((runs - r) * 86400.0, run_id),
            )
        journal.db.execute("COMMIT")
        exposition(journal)
    return n


def cold_serve_scrape(target: str) -> tuple[float, int]:
    """Start ``tsunagari serve`` on *target*, time its first ``/metrics``; (seconds, bytes)."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "drills.cli", "serve", "--journal", target, "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not port_open(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"serve did not start: {proc.communicate()[1][-2000:]!r}")
            time.sleep(0.01)
        start = time.perf_counter()
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=60)
        elapsed = time.perf_counter() - start
        response.raise_for_status()
        return elapsed, len(response.content)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def cold_render(target: str) -> float:
    from prometheus_client import CollectorRegistry, generate_latest

    from drills.metrics.collector import JournalCollector

    start = time.perf_counter()
    with open_journal(target, read_only=True) as journal:
        prom = CollectorRegistry()
        JournalCollector(journal, prom_registry=prom)
        generate_latest(prom)
    return time.perf_counter() - start


def median_of(fn: Callable[[], float], repeat: int) -> float:
    return statistics.median(fn() for _ in range(repeat))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deliveries", type=int, default=1500)
    parser.add_argument("--writers", type=int, default=3)
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--per-channel", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    server = Postgres().start()
    rows: dict[str, dict[str, float]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            targets = {
                "sqlite": lambda name: str(Path(tmp) / f"{name}.sqlite"),
                "postgresql": server.create_database,
            }
            for label, writers in (("writes_1", 1), (f"writes_{args.writers}", args.writers)):
                rows[f"{label} (deliveries/s)"] = {
                    backend: write_rate(make(label), args.deliveries, writers)
                    for backend, make in targets.items()
                }
            # SQLite's WAL with synchronous=NORMAL does not fsync each commit (a process
            # crash loses nothing, a power cut may lose the last commits): PostgreSQL's
            # equal is synchronous_commit=off, set here for this database's sessions.
            relaxed = server.create_database("relaxed") + "?options=-c%20synchronous_commit%3Doff"
            rows["writes_1, PG sync_commit=off"] = {
                "sqlite": write_rate(str(Path(tmp) / "relaxed.sqlite"), args.deliveries, 1),
                "postgresql": write_rate(relaxed, args.deliveries, 1),
            }
            source = str(Path(tmp) / "scrape.sqlite")
            deliveries = build(source, args.runs, args.per_channel)
            pg = server.create_database("scrape")
            with open_journal(source, read_only=True) as a, open_journal(pg) as b:
                copy_rows(a, b)
            scraped = {"sqlite": source, "postgresql": pg}
            sizes = {}
            serve: dict[str, float] = {}
            for backend, target in scraped.items():
                times = []
                for _ in range(args.repeat):
                    seconds, sizes[backend] = cold_serve_scrape(target)
                    times.append(seconds)
                serve[backend] = statistics.median(times)
            rows["cold serve /metrics (ms)"] = {b: s * 1000 for b, s in serve.items()}
            rows["cold collector render (ms)"] = {
                b: median_of(lambda t=t: cold_render(t), args.repeat) * 1000
                for b, t in scraped.items()
            }
    finally:
        server.stop()
    print(
        f"{args.deliveries} deliveries written per backend; scrape journal: {args.runs} runs,"
        f" {deliveries} deliveries, exposition {sizes['sqlite']} / {sizes['postgresql']} bytes"
    )
    print(f"{'what':<32}{'SQLite':>12}{'PostgreSQL':>12}{'PG ÷ SQLite':>13}")
    summary = {}
    for name, by in rows.items():
        ratio = by["postgresql"] / by["sqlite"]
        summary[name] = {**by, "ratio_pg_to_sqlite": ratio}
        print(f"{name:<32}{by['sqlite']:>12.1f}{by['postgresql']:>12.1f}{ratio:>13.2f}")
    from benchlib import write_result

    write_result(
        "bench_journal_backends",
        {
            "deliveries_written": args.deliveries,
            "writers": args.writers,
            "scrape_runs": args.runs,
            "scrape_deliveries": deliveries,
            "exposition_bytes": sizes,
            "cpu_count": os.cpu_count(),
            "rows": summary,
            **summary,
        },
    )


if __name__ == "__main__":
    main()
