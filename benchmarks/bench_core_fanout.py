"""Drill core at scale: one step over 1,000 simulated channels with 300 ms latency.

Side by side in one run, against the same chat simulator (in its own process,
so its CPU is not counted as the harness's):

- ``harness``:  registry → Drill.broadcast → journal (SQLite) — the real path
- ``baseline``: a bare aiohttp loop doing the same protocol (park a long-poll,
  POST, wait for the read-back) with no registry, runner or journal

Reported: wall time, harness CPU ms per delivery, peak RSS, and the ratios
harness/baseline. Targets (issue 2): wall < 3 s, RSS < 150 MB.

    python benchmarks/bench_core_fanout.py [--channels 1000] [--latency 0.3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def serve_sim(n: int, latency: float, out: Path, ready: mp.Event, stop: mp.Event) -> None:  # type: ignore[valid-type]
    from probes.sim.base import SimKnobs
    from probes.sim.chat import ChatSimulator

    async def main() -> None:
        sim = ChatSimulator(seed=1)
        await sim.start()
        knobs = SimKnobs.model_validate({"latency": latency})
        secrets_dir = out / "secrets"
        secrets_dir.mkdir()
        chans = []
        lines = ['municipalities:\n  - code: "131211"\n    name: 足立区\n    channels:\n']
        for i in range(n):
            s = sim.add_channel(f"c{i}", knobs, {})
            (secrets_dir / f"p{i}").write_text(s["auth"].reveal())
            (secrets_dir / f"r{i}").write_text(s["observer"]["auth"].reveal())
            chans.append(
                {
                    "url": s["url"],
                    "read": s["observer"]["url"],
                    "p": s["auth"].reveal(),
                    "r": s["observer"]["auth"].reveal(),
                }
            )
            lines.append(
                f"      - {{id: c{i}, kind: webhook, url: '{s['url']}', auth: 'file:{secrets_dir}/p{i}', "
                f"observer: {{url: '{s['observer']['url']}', auth: 'file:{secrets_dir}/r{i}', mode: longpoll}}}}\n"
            )
        (out / "registry.yaml").write_text("".join(lines))
        (out / "channels.json").write_text(json.dumps(chans))
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.05)
        await sim.stop()

    asyncio.run(main())


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def baseline(chans: list[dict[str, str]]) -> dict[str, float]:
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def one(c: dict[str, str]) -> float:
            read_h = {"Authorization": f"Bearer {c['r']}"}
            async with http.get(c["read"], params={"after": "0", "wait": "0"}, headers=read_h) as r:
                cursor = (await r.json())["cursor"]
            poll = asyncio.ensure_future(
                http.get(c["read"], params={"after": str(cursor), "wait": "25"}, headers=read_h)
            )
            t0 = time.monotonic()
            async with http.post(
                c["url"],
                json={"text": "【訓練】 baseline [TSG-000000000000]"},
                headers={"Authorization": f"Bearer {c['p']}"},
            ) as r:
                await r.read()
            resp = await poll
            await resp.read()
            resp.release()
            return time.monotonic() - t0

        c0, w0 = cpu(), time.monotonic()
        lat = await asyncio.gather(*(one(c) for c in chans))
        wall, used = time.monotonic() - w0, cpu() - c0
    lat.sort()
    return {
        "wall_s": wall,
        "cpu_ms_per_delivery": used * 1000 / len(chans),
        "p50_s": lat[len(lat) // 2],
        "max_s": lat[-1],
    }


async def harness(reg_path: Path, db: Path) -> dict[str, float]:
    from drills.core.journal import Journal
    from drills.core.registry import load_registry
    from drills.core.runner import Drill

    c0, w0 = cpu(), time.monotonic()
    registry = load_registry(reg_path)
    journal = Journal(db)
    async with Drill(registry, journal, scenario="bench", live=True, concurrency=2000) as drill:
        step = await drill.broadcast("ベンチマーク", timeout=20)
    wall, used = time.monotonic() - w0, cpu() - c0
    journal.close()
    lat = sorted(d.latency_s for d in step.deliveries if d.latency_s is not None)
    outcomes = {k.value: v for k, v in step.by_outcome().items() if v}
    return {
        "wall_s": wall,
        "step_wall_s": step.wall_s,
        "cpu_ms_per_delivery": used * 1000 / len(step.deliveries),
        "p50_s": lat[len(lat) // 2],
        "max_s": lat[-1],
        "outcomes": outcomes,  # type: ignore[dict-item]
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--channels", type=int, default=1000)
    ap.add_argument("--latency", type=float, default=0.3)
    args = ap.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        ready, stop = mp.Event(), mp.Event()
        proc = mp.get_context("fork").Process(
            target=serve_sim, args=(args.channels, args.latency, out, ready, stop)
        )
        proc.start()
        ready.wait(60)
        try:
            base = asyncio.run(baseline(json.loads((out / "channels.json").read_text())))
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            res = asyncio.run(harness(out / "registry.yaml", out / "journal.sqlite"))
            peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        finally:
            stop.set()
            proc.join(10)
    result = {
        "channels": args.channels,
        "injected_latency_s": args.latency,
        "harness": res,
        "baseline": base,
        "peak_rss_mb": round(peak_rss, 1),
        "rss_before_harness_mb": round(rss_before, 1),
        "ratio_wall_harness_vs_baseline": round(res["wall_s"] / base["wall_s"], 2),
        "ratio_cpu_harness_vs_baseline": round(
            res["cpu_ms_per_delivery"] / base["cpu_ms_per_delivery"], 2
        ),
        "targets": {"wall_s": 3.0, "peak_rss_mb": 150},
    }
    print(f"{'':12}{'wall s':>9}{'CPU ms/deliv':>14}{'p50 s':>8}{'max s':>8}")
    for name, r in (("harness", res), ("baseline", base)):
        print(
            f"{name:12}{r['wall_s']:9.2f}{r['cpu_ms_per_delivery']:14.3f}{r['p50_s']:8.3f}{r['max_s']:8.3f}"
        )
    print(
        f"outcomes: {res['outcomes']}  peak RSS {peak_rss:.0f} MB (target < 150)  wall target < 3 s"
    )
    print(
        f"ratios harness/baseline: wall {result['ratio_wall_harness_vs_baseline']}, CPU {result['ratio_cpu_harness_vs_baseline']}"
    )
    dest = ROOT / "benchmarks" / "results"
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "bench_core_fanout.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
