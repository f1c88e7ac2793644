"""Surge throughput: ``tsunagari surge`` vs a plain Locust FastHttpUser, against one loopback sink.

Side by side in one run, alternating, against the same HTTP sink (its own
process, a bare asyncio protocol that answers every POST with 200):

- ``surge``:    ``tsunagari surge REGISTRY --channel 131211/bench --live --rates 10000
                --step Ns --rest 0 --users U`` — the real path: registry, guard,
                config file, Locust subprocess with the surge's WebhookSurge user
                (pacing, per-step names, a fresh drill token per message, tallies),
                probes alongside, stats into the journal
- ``baseline``: ``locust -f benchmarks/surge_baseline_locustfile.py --headless -u U``
                — a hand-written FastHttpUser posting a constant body, no pacing

Both are one Locust process with the same number of users; messages per
second are taken the same way for both (Locust's per-second counts, first and
last partial seconds dropped; :func:`drills.surge.stats.steady_rate`). Also
reported, less sensitive to a noisy machine: CPU per message of the whole
side (the surge's harness process included), and what the sink received.
Target (issue 9): surge / baseline ≥ 0.8.

    python benchmarks/bench_surge.py [--seconds 10] [--users 50] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from drills.surge.stats import LoadStats  # noqa: E402

_RESPONSE = (
    b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'
)


class _Sink(asyncio.Protocol):
    """HTTP/1.1 keep-alive: read a request (headers + Content-Length body), answer 200."""

    count = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            for line in self.buf[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            total = end + 4 + length
            if len(self.buf) < total:
                return
            self.buf = self.buf[total:]
            _Sink.count += 1
            self.transport.write(_RESPONSE)  # type: ignore[attr-defined]


def serve_sink(port: Any, ready: Any, stop: Any, counted: Any) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        # Port 0: the kernel picks a free port, so nothing else can be listening on it.
        server = await loop.create_server(_Sink, "127.0.0.1", 0, backlog=4096)
        port.value = server.sockets[0].getsockname()[1]
        ready.set()
        while not stop.is_set():
            counted.value = _Sink.count  # published for per-run differences
            await asyncio.sleep(0.05)
        server.close()
        counted.value = _Sink.count

    asyncio.run(main())


def run_baseline(port: int, users: int, seconds: int, work: Path) -> dict[str, Any]:
    prefix = work / "baseline"
    cmd = [
        sys.executable, "-m", "locust", "-f", str(ROOT / "benchmarks" / "surge_baseline_locustfile.py"),
        "--headless", "--only-summary", "-u", str(users), "-r", str(users * 10), "-t", f"{seconds}s",
        "-H", f"http://127.0.0.1:{port}", "--json-file", str(prefix), "--loglevel", "WARNING",
        "--exit-code-on-error", "0",
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, timeout=seconds + 60)
    entries = json.loads(prefix.with_suffix(".json").read_text())
    stats = LoadStats.merge(LoadStats.from_entry(e) for e in entries)
    return {
        "msg_per_s": round(stats.steady_rate(), 1),
        "requests": stats.requests,
        "failures": stats.failures,
    }


def run_surge(port: int, users: int, seconds: int, work: Path) -> dict[str, Any]:
    secret = work / "bench-token"
    secret.write_text("bench-token")
    registry = work / "registry.yaml"
    registry.write_text(
        "municipalities:\n"
        '  - code: "131211"\n'
        "    name: 足立区\n"
        "    channels:\n"
        "      - id: bench\n"
        "        kind: webhook\n"
        f"        url: http://127.0.0.1:{port}/hooks/bench\n"
        f"        auth: file:{secret}\n"
        "        surge: {rate: 10000, duration: 10m}\n",
        encoding="utf-8",
    )
    cmd = [
        sys.executable, "-m", "drills.cli", "--lang", "en", "surge", str(registry),
        "--channel", "131211/bench", "--live", "--rates", "10000", "--step", f"{seconds}s",
        "--rest", "0", "--users", str(users), "--probes", "3", "--json",
        "--journal", str(work / "journal.sqlite"),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 90)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"tsunagari surge failed ({done.returncode}): {done.stderr[-2000:]}")
    event = json.loads(done.stdout)
    load = event["steps"][0]["load"]
    return {
        "msg_per_s": load["rps_steady"],
        "requests": load["requests"],
        "failures": load["failures"],
        "probes": event["steps"][0]["probes"],
    }


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _counted(counted: Any, run: Any, side: tuple[Any, ...]) -> dict[str, Any]:
    """Run one side; add what the sink received meanwhile and the CPU its processes used.

    CPU is that of every waited-for descendant: for the surge, the ``tsunagari``
    harness *and* its Locust process; for the baseline, the Locust process.
    """
    before, cpu = counted.value, _children_cpu()
    out: dict[str, Any] = run(*side)
    out["cpu_us_per_msg"] = round((_children_cpu() - cpu) / max(out["requests"], 1) * 1e6, 1)
    time.sleep(0.3)
    out["sink_received"] = counted.value - before
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    ctx = mp.get_context("spawn")
    ready, stop, counted, bound = ctx.Event(), ctx.Event(), ctx.Value("q", 0), ctx.Value("i", 0)
    sink = ctx.Process(target=serve_sink, args=(bound, ready, stop, counted), daemon=True)
    sink.start()
    if not ready.wait(20):
        sink.kill()
        raise SystemExit("the loopback sink did not start")
    port = int(bound.value)
    rounds: list[dict[str, Any]] = []
    try:
        for r in range(args.rounds):
            with tempfile.TemporaryDirectory(prefix="bench-surge-") as tmp:
                work = Path(tmp)
                side = (port, args.users, args.seconds, work)
                base = _counted(counted, run_baseline, side)
                surge = _counted(counted, run_surge, side)
            rounds.append({"round": r + 1, "baseline": base, "surge": surge})
            print(
                f"round {r + 1}: baseline {base['msg_per_s']:.0f} msg/s "
                f"(sink {base['sink_received']} / Locust {base['requests']}), "
                f"surge {surge['msg_per_s']:.0f} msg/s "
                f"(sink {surge['sink_received']} / Locust {surge['requests']} + 3 probes); "
                f"CPU µs/msg {base['cpu_us_per_msg']} vs {surge['cpu_us_per_msg']}"
            )
    finally:
        stop.set()
        sink.join(10)
    base_cpu = statistics.median(x["baseline"]["cpu_us_per_msg"] for x in rounds)
    surge_cpu = statistics.median(x["surge"]["cpu_us_per_msg"] for x in rounds)
    base_rate = statistics.median(x["baseline"]["msg_per_s"] for x in rounds)
    surge_rate = statistics.median(x["surge"]["msg_per_s"] for x in rounds)
    result = {
        "benchmark": "bench_surge",
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "users": args.users,
        "seconds_per_run": args.seconds,
        "rounds": rounds,
        "baseline_msg_per_s": base_rate,
        "surge_msg_per_s": surge_rate,
        "ratio": round(surge_rate / base_rate, 3) if base_rate else None,
        "target_ratio": 0.8,
        "baseline_cpu_us_per_msg": base_cpu,
        "surge_cpu_us_per_msg": surge_cpu,
        "cpu_efficiency_ratio": round(base_cpu / surge_cpu, 3) if surge_cpu else None,
        "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    print()
    print(f"{'':10} {'msg/s (median)':>16} {'CPU µs/msg (median)':>21}")
    print(f"{'baseline':10} {base_rate:>16.0f} {base_cpu:>21.1f}")
    print(f"{'surge':10} {surge_rate:>16.0f} {surge_cpu:>21.1f}")
    print(f"ratio surge/baseline = {result['ratio']} (target >= 0.8)")
    print(f"CPU efficiency baseline/surge = {result['cpu_efficiency_ratio']}")
    from benchlib import results_dir  # the results folder ($TSUNAGARI_BENCH_RESULTS)

    dest = results_dir()
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "bench_surge.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
