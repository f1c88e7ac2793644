"""Does reading one drill cost the same with a year of history behind it?

Two journals side by side:

- ``full``: RUNS hourly drills (default 8,760: one year) of Tokyo's 62
  municipalities × 3 channels (chat/matrix, mail, sms/twilio), one message per
  channel per run (~1.6 million deliveries), realistic outcomes, latencies and
  evidence; a fallback event once a day and a roll-call event once a week,
  shaped as today's steps write them (``FallbackResult.event()``,
  ``RollCallResult.event()``, plus the ``scenario``/``vantage`` the context adds);
- ``one``: only the newest of those runs (byte-identical rows).

Each figure is whole-process, median of REPEAT runs, the two journals
interleaved round by round, and reported as a ratio full / one (target ≤ 2×):

- ``push``: a fresh ``python`` process calling ``drills.metrics.push.push_run`` for the
  newest run against a Pushgateway-shaped HTTP sink on 127.0.0.1 started here
  (accepts PUT/POST/DELETE, answers 200) — what every cron push pays;
- ``serve``: ``tsunagari serve`` started on a free loopback port, then one
  ``GET /metrics``; the figure is start → scrape answered (the scrape alone is
  shown too);
- ``scorecard``: ``tsunagari scorecard --format json`` (the newest run).

Before timing, each command runs once untimed on each journal ("first" in the
table): the read model builds and stores each run's digest and the metrics'
fold of the scenario × vantage then (drills.metrics.state), as a real journal
would have built them one run at a time, when each run ended and was pushed. Then the file size per run,
and ``tsunagari journal prune --older-than 30d`` on the full journal (time and
size after).

    python benchmarks/bench_read_model.py [--runs 8760] [--repeat 3] [--dir DIR]

Building the full year takes about a minute on a 2-core machine (printed).
Prints a table and writes benchmarks/results/bench_read_model.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.server
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench_fanout import TOKYO, with_check_digit  # the 62 municipalities

from drills.core.delivery import Delivery
from drills.core.journal import Journal

TARGET = 2.0
HOUR = 3600.0
SCENARIO, VANTAGE = "hourly_check", "hq"
CHANNELS = (  # id, kind, SLO (s)
    ("chat", "matrix", 60.0),
    ("mail", "mail", 300.0),
    ("sms", "twilio", 120.0),
)
MUNIS = [(with_check_digit(five), name) for five, name in TOKYO]
ISLANDS = {m for m in MUNIS if m[0].startswith(("1336", "1338", "1340", "1342"))}
COLUMNS = [f.name for f in dataclasses.fields(Delivery)]
ENV = {**os.environ, "TSUNAGARI_LANG": "en"}


def tsunagari() -> list[str]:
    """The installed console script beside this interpreter, else ``python -m drills.cli``."""
    script = Path(sys.executable).parent / "tsunagari"
    return [str(script)] if script.exists() else [sys.executable, "-m", "drills.cli"]


# ---------------------------------------------------------------- synthetic year


def _delivery(
    rng: random.Random, run_id: str, t0: float, muni: tuple[str, str], i: int, channel: Any
) -> tuple[Any, ...]:
    code, name = muni
    cid, kind, slo = channel
    island = muni in ISLANDS
    sent = t0 + 1.0 + rng.random() * 2.0
    accept = rng.lognormvariate(-1.5, 0.5)
    roll = rng.random() * (0.5 if island else 1.0)  # islands fail about twice as often
    evidence: str | None = "seen"
    reason = ""
    latency: float | None
    if cid == "chat":
        latency = rng.lognormvariate(-0.7, 0.6)
        outcome = "delivered"
        if roll < 0.005:
            outcome, latency, evidence, reason = "error", None, None, "観測失敗 / observer failed"
        elif roll < 0.015:
            outcome, latency, evidence, reason = "lost", None, None, "未着 / not seen"
    elif cid == "mail":
        latency = rng.lognormvariate(0.7, 0.9)
        outcome = "delivered" if latency <= slo else "late"
        if roll < 0.02:
            outcome, latency, evidence, reason = "lost", None, None, "未着 / not seen"
        elif roll < 0.025:
            outcome, latency, evidence = "rejected", None, None
            reason = "550 5.1.1 宛先不明 / 550 5.1.1 unknown recipient"
    else:
        latency = rng.lognormvariate(1.5, 0.7)
        outcome, evidence = "delivered", "receipt"
        if roll < 0.03:
            outcome, latency, evidence, reason = "lost", None, None, "30003 unreachable"
        elif roll < 0.04:
            outcome, latency, evidence, reason = "rejected", None, None, "30007 filtered"
        elif roll < 0.25:
            outcome, latency, evidence = "accepted", None, "accepted"
        elif roll < 0.30:
            evidence = "seen"  # the loopback number saw it
        if latency is not None and latency > slo:
            outcome = "late"
    delivered_at = sent + latency if latency is not None else None
    recipient = {
        "chat": f"!drill{code}:chat.metro.tokyo.lg.jp",
        "mail": f"bousai-{code}@example.lg.jp",
        "sms": f"+8190{int(code):08d}"[:14],
    }[cid]
    row = {
        "run_id": run_id,
        "step": "broadcast",
        "municipality_code": code,
        "municipality_name": name,
        "channel_id": cid,
        "kind": kind,
        "token": f"{rng.getrandbits(64):016x}",
        "outcome": outcome,
        "reason": reason,
        "recipient": recipient,
        "sent_at": sent,
        "accepted_at": sent + accept if outcome != "rejected" else None,
        "delivered_at": delivered_at,
        "latency_s": latency,
        "accept_latency_s": accept if outcome != "rejected" else None,
        "error_bound_s": (0.1 if cid == "mail" else 0.02) if latency is not None else None,
        "slo_latency_s": slo,
        "throttled": int(cid == "sms" and rng.random() < 0.01),
        "vantage": VANTAGE,
        "scenario": SCENARIO,
        "extra": "{}",
        "evidence": evidence,
    }
    return tuple(row[c] for c in COLUMNS)


def _fallback(rng: random.Random, t0: float) -> dict[str, Any]:
    municipalities = []
    for code, name in MUNIS:
        chat_ok = rng.random() > 0.05
        attempts = [
            {
                "channel": "chat",
                "kind": "matrix",
                "outcome": "delivered" if chat_ok else "lost",
                "reason": "" if chat_ok else "停止中 / down",
                "started_s": 0.0,
                "latency_s": rng.lognormvariate(-0.7, 0.6) if chat_ok else None,
                "escalated_s": None if chat_ok else 60.0,
            }
        ]
        if not chat_ok:
            attempts.append(
                {
                    "channel": "mail",
                    "kind": "mail",
                    "outcome": "delivered",
                    "reason": "",
                    "started_s": 60.0,
                    "latency_s": rng.lognormvariate(0.7, 0.9),
                    "escalated_s": None,
                }
            )
        first = attempts[-1]["started_s"] + attempts[-1]["latency_s"]
        municipalities.append(
            {
                "code": code,
                "name": name,
                "reached": first <= 300.0,
                "latency_s": first,
                "reached_via": attempts[-1]["channel"],
                "time_to_first_s": first,
                "attempts": attempts,
            }
        )
    return {
        "step": "chat_down_fallback",
        "order": ["chat", "mail", "sms"],
        "within_s": 300.0,
        "escalate_after_s": 60.0,
        "municipalities": municipalities,
        "scenario": SCENARIO,
        "vantage": VANTAGE,
    }


def _roll_call(rng: random.Random, t0: float) -> dict[str, Any]:
    answered = {code: rng.lognormvariate(4.0, 0.8) for code, _ in MUNIS if rng.random() > 0.04}
    return {
        "step": "weekly_roll_call",
        "room": "130001/chat",
        "token": f"{rng.getrandbits(64):016x}",
        "sent_at": t0 + 5.0,
        "within_s": 600.0,
        "delivered": True,
        "municipalities": [
            {
                "code": code,
                "name": name,
                "expected": 1,
                "answered": int(code in answered),
                "answered_s": answered.get(code),
                "able": True,
                "reason": "",
            }
            for code, name in MUNIS
        ],
        "all_answered_s": None if len(answered) < len(MUNIS) else max(answered.values()),
        "never": [code for code, _ in MUNIS if code not in answered],
        "unable": [],
        "scenario": SCENARIO,
        "vantage": VANTAGE,
    }


def _runs(total: int, end: float, seed: int, only_last: bool) -> Iterator[tuple[Any, ...]]:
    """(run row, delivery rows, event rows) of each hourly run, oldest first."""
    host = socket.gethostname()
    for i in range(total - 1 if only_last else 0, total):
        rng = random.Random(seed * 1_000_003 + i)  # the same run in both journals
        t0 = end - (total - 1 - i) * HOUR
        run_id = time.strftime("%Y%m%dT%H%M%S", time.gmtime(t0)) + f"-{i:06x}"
        deliveries = [_delivery(rng, run_id, t0, m, i, c) for m in MUNIS for c in CHANNELS]
        events = []
        if i % 24 == 23:
            events.append((run_id, t0 + 400.0, "fallback", _fallback(rng, t0)))
        if i % 168 == 167:
            events.append((run_id, t0 + 700.0, "roll_call", _roll_call(rng, t0)))
        run = (run_id, SCENARIO, VANTAGE, t0, t0 + 720.0, "finished", 4242, host, "{}")
        yield (
            run,
            deliveries,
            [(r, at, k, json.dumps(d, ensure_ascii=False)) for r, at, k, d in events],
        )


def build(path: Path, total: int, end: float, seed: int = 7, only_last: bool = False) -> str:
    """Write the journal (schema from :class:`Journal`, rows with executemany); newest run id."""
    journal = Journal(path)
    db = journal.db
    newest = ""
    db.execute("BEGIN")
    batch_runs: list[tuple[Any, ...]] = []
    batch_deliveries: list[tuple[Any, ...]] = []
    batch_events: list[tuple[Any, ...]] = []

    def flush() -> None:
        db.executemany(
            "INSERT INTO runs (run_id, scenario, vantage, started_at, finished_at, status, pid, "
            "host, meta) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            batch_runs,
        )
        db.executemany(
            f"INSERT INTO deliveries ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
            batch_deliveries,
        )
        db.executemany(
            "INSERT INTO events (run_id, at, kind, data) VALUES (?, ?, ?, ?)", batch_events
        )
        for batch in (batch_runs, batch_deliveries, batch_events):
            batch.clear()

    for run, deliveries, events in _runs(total, end, seed, only_last):
        batch_runs.append(run)
        batch_deliveries.extend(deliveries)
        batch_events.extend(events)
        newest = run[0]
        if len(batch_deliveries) >= 50_000:
            flush()
    flush()
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    journal.close()
    return newest


# ---------------------------------------------------------------- Pushgateway sink


class _Sink(http.server.BaseHTTPRequestHandler):
    requests = 0
    received = 0

    def _accept(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).requests += 1
        type(self).received += len(body)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_PUT = do_POST = do_DELETE = _accept

    def log_message(self, format: str, *args: Any) -> None:
        pass


# ---------------------------------------------------------------- timing

PUSH_CHILD = """
import sys, time
from drills.core.journal import Journal
from drills.metrics.push import push_run
start = time.perf_counter()
with Journal(sys.argv[1]) as journal:
    keys = push_run(journal, sys.argv[2], sys.argv[3])
print(len(keys), time.perf_counter() - start)
"""


def time_push(journal: Path, run_id: str, url: str) -> dict[str, float]:
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", PUSH_CHILD, str(journal), run_id, url],
        check=True,
        capture_output=True,
        text=True,
        env=ENV,
    ).stdout.split()
    return {
        "total": time.perf_counter() - start,
        "groups": float(out[0]),
        "in_process": float(out[1]),
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def time_serve(journal: Path) -> dict[str, float]:
    port = _free_port()
    start = time.perf_counter()
    proc = subprocess.Popen(
        [
            *tsunagari(),
            "serve",
            "--journal",
            str(journal),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=ENV,
    )
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"serve exited: {proc.stderr.read().decode() if proc.stderr else ''}"
                )
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.01)
        ready = time.perf_counter()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=600) as resp:
            size = len(resp.read())
        done = time.perf_counter()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
    return {"total": done - start, "scrape": done - ready, "bytes": float(size)}


def time_scorecard(journal: Path) -> dict[str, float]:
    start = time.perf_counter()
    subprocess.run(
        [*tsunagari(), "scorecard", "--journal", str(journal), "--format", "json"],
        check=True,
        stdout=subprocess.DEVNULL,
        env=ENV,
    )
    return {"total": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=8760, help="hourly runs (8760 = one year)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each (at least 3)")
    parser.add_argument(
        "--dir", type=Path, default=None, help="where to build (default: a temp dir)"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--prune-older-than", default="30d", help="the age given to 'tsunagari journal prune'"
    )
    args = parser.parse_args()
    repeat = max(1, args.repeat)  # 3 or more for a median worth reading (the smoke test runs 1)
    tmp = tempfile.TemporaryDirectory() if args.dir is None else None
    where = Path(tmp.name) if tmp else args.dir
    where.mkdir(parents=True, exist_ok=True)
    full, one = where / "full.sqlite", where / "one.sqlite"
    for path in (full, one):
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)

    end = float(int(time.time() // HOUR) * HOUR) - HOUR
    start = time.perf_counter()
    newest = build(full, args.runs, end, args.seed)
    build_s = time.perf_counter() - start
    newest_one = build(one, args.runs, end, args.seed, only_last=True)
    assert newest == newest_one
    with Journal(full) as j:
        stats_full = j.stats()
    with Journal(one) as j:
        stats_one = j.stats()
    print(
        f"built {stats_full.runs} runs, {stats_full.deliveries:,} deliveries, "
        f"{stats_full.events} events in {build_s:.1f} s; newest run {newest}",
        flush=True,
    )

    _Sink.requests = _Sink.received = 0
    sink = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{sink.server_address[1]}"

    figures = {
        "push": lambda p: time_push(p, newest, url),
        "serve": time_serve,
        "scorecard": time_scorecard,
    }
    results: dict[str, dict[str, Any]] = {}
    for name, fn in figures.items():
        entry: dict[str, Any] = {"first": {}, "runs": {"full": [], "one": []}}
        for label, path in (("one", one), ("full", full)):
            entry["first"][label] = fn(path)
            print(f"{name} first on {label}: {entry['first'][label]['total']:.2f} s", flush=True)
        for _ in range(repeat):
            for label, path in (("one", one), ("full", full)):
                entry["runs"][label].append(fn(path))
        for label in ("one", "full"):
            entry[label] = {
                key: statistics.median(r[key] for r in entry["runs"][label])
                for key in entry["runs"][label][0]
            }
        entry["ratio"] = entry["full"]["total"] / entry["one"]["total"]
        results[name] = entry
    sink.shutdown()

    with Journal(full) as j:
        before = j.stats()  # with whatever the reads stored (digests)
    start = time.perf_counter()
    subprocess.run(
        [
            *tsunagari(),
            "journal",
            "prune",
            "--older-than",
            args.prune_older_than,
            "--journal",
            str(full),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        env=ENV,
    )
    prune_s = time.perf_counter() - start
    with Journal(full) as j:
        after = j.stats()

    print()
    print(
        f"full: {args.runs} hourly runs of 62 × 3 channels; one: the newest run only; {repeat} runs each"
    )
    print(
        f"{'what':<22}{'one (s)':>10}{'full (s)':>10}{'full/one':>10}{'first one':>11}{'first full':>11}"
    )
    for name, entry in results.items():
        first = entry["first"]
        print(
            f"{name:<22}{entry['one']['total']:>10.2f}{entry['full']['total']:>10.2f}"
            f"{entry['ratio']:>9.1f}×{first['one']['total']:>11.2f}{first['full']['total']:>11.2f}"
        )
        for key, label in (
            ("in_process", "  push_run in process"),
            ("scrape", "  GET /metrics alone"),
        ):
            if key in entry["one"]:
                one_v, full_v = entry["one"][key], entry["full"][key]
                print(f"{label:<22}{one_v:>10.2f}{full_v:>10.2f}{full_v / one_v:>9.1f}×")
    status = "met" if all(e["ratio"] <= TARGET for e in results.values()) else "NOT met"
    print(f"target ≤ {TARGET:g}× each: {status}")
    print()
    per_run = stats_full.file_bytes / stats_full.runs
    mib = 2**20
    print(f"{'journal size':<34}{'runs':>7}{'MiB':>9}{'KiB/run':>9}")
    for label, st in (
        ("one run", stats_one),
        ("full, as built (no digests)", stats_full),
        (f"full, after the reads ({before.digests} digests)", before),
        (f"full, after prune {args.prune_older_than} ({prune_s:.1f} s)", after),
    ):
        print(
            f"{label:<34}{st.runs:>7}{st.file_bytes / mib:>9.1f}"
            f"{st.file_bytes / max(st.runs, 1) / 1024:>9.1f}"
        )
    print(f"build: {build_s:.1f} s for {args.runs} runs")

    from benchlib import results_dir  # the results folder ($TSUNAGARI_BENCH_RESULTS)

    out = results_dir() / "bench_read_model.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "runs": args.runs,
                "deliveries": stats_full.deliveries,
                "events": stats_full.events,
                "build_s": build_s,
                "repeat": repeat,
                "target_ratio": TARGET,
                "figures": results,
                "size": {
                    "full_bytes": stats_full.file_bytes,
                    "one_bytes": stats_one.file_bytes,
                    "bytes_per_run": per_run,
                    "before_prune_bytes": before.file_bytes,
                    "before_prune_digests": before.digests,
                    "after_prune_bytes": after.file_bytes,
                    "after_prune_runs": after.runs,
                    "prune_s": prune_s,
                },
                "pushgateway_sink": {"requests": _Sink.requests, "bytes": _Sink.received},
            },
            indent=2,
        )
    )
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
