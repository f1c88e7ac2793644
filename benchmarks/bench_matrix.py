"""Matrix at scale: 200 concurrent probes against a real Synapse, beside a plain httpx loop.

One Synapse on loopback (tests/servers/synapse.py); 200 rooms, each with the
drill bot as sender and its own observer account (as 200 municipalities would
have). Two sides, each in its own process so its CPU and memory are its own:

- ``harness``:  registry → Drill.broadcast (live) → MatrixProbe (txn-id PUT,
  filtered /sync long-poll per channel) → journal (SQLite)
- ``baseline``: a bare httpx loop doing the same protocol — one parked,
  filtered /sync per room, a PUT per room, note when each token shows up.
  Like the probes it uses one httpx client per room (a single client holding
  hundreds of connections spends milliseconds of CPU per request in
  httpcore's pool bookkeeping, which would make either side look slow).

Synapse persists events one after another (~10-20 ms each here), so 200
messages released in the same millisecond queue inside it for seconds, and
where a message lands in that queue — not the client — decides its latency.
Two scenarios, each a series of rounds in which every one of the 200 rooms
gets one message; the sides take turns (a barrier hands the homeserver from
one to the other), so neither competes with the other for Synapse:

- ``paced``: the 200 sends of a round start at offsets spread uniformly over
  ``--spread`` seconds (the same seeded offsets for both sides), keeping
  Synapse below saturation: the latency is the protocol's, and the harness's
  added latency shows. It is the median of the paired differences (harness −
  baseline, same room, same round, same offset).
- ``burst``: all 200 sends at once. Reported for what it shows about the
  homeserver (p50 of each side); the queue order dominates both.

A warm-up round is discarded. Target (issue 5): the harness adds under 5 ms at
p50 (paced). Peak RSS and CPU per delivery of each side's process are reported.

    python benchmarks/bench_matrix.py [--probes 200] [--rounds 10] [--spread 4] [--burst 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import resource
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

API = "/_matrix/client/v3"
TEXT = "【ベンチ】参集訓練"


# --------------------------------------------------------------------------- set-up


async def make_rooms(hs: Any, n: int) -> dict[str, Any]:
    """Register the bot and, for each side, *n* observers with a room each (bot included).

    The sides get rooms (and observers) of their own, so the side waiting for its turn
    has no /sync woken by the other side's messages.
    """
    bot = hs.register("drill-bot")

    async with httpx.AsyncClient(base_url=hs.base_url, timeout=60, trust_env=False) as http:
        gate = asyncio.Semaphore(16)

        async def one(side: str, i: int) -> dict[str, Any]:
            async with gate:
                watch = await asyncio.to_thread(hs.register, f"watch-{side}-{i:03d}")
                auth = {"Authorization": f"Bearer {bot.token}"}
                body = {"preset": "private_chat", "invite": [watch.user_id]}
                resp = await http.post(f"{API}/createRoom", json=body, headers=auth)
                assert resp.status_code == 200, resp.text
                room = resp.json()["room_id"]
                join = f"{API}/join/{quote(room, safe='')}"
                await http.post(join, json={}, headers={"Authorization": f"Bearer {watch.token}"})
                return {"room": room, "watch": {"user": watch.user_id, "token": watch.token}}

        sides = {
            side: await asyncio.gather(*(one(side, i) for i in range(n)))
            for side in ("harness", "baseline")
        }
    return {"bot": {"user": bot.user_id, "token": bot.token}, "sides": sides}


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


Round = dict[int, float]  # room index → latency (s)
Schedule = list[list[float]]  # per round, per room: seconds after the round starts


def schedule(rounds: int, rooms: int, spread: float, seed: int) -> Schedule:
    import random

    rng = random.Random(seed)
    return [[rng.uniform(0.0, spread) for _ in range(rooms)] for _ in range(rounds)]


async def meet(go: Any) -> None:
    """Both sides meet at the barrier twice a round: the harness runs between the two
    meetings, the baseline after the second — never both at once."""
    await asyncio.to_thread(go.wait)


# --------------------------------------------------------------------------- harness side


async def run_harness(cfg: dict[str, Any], plan: Schedule, go: Any, work: Path) -> dict[str, Any]:
    from drills.core.journal import Journal
    from drills.core.registry import parse_registry
    from drills.core.runner import Drill

    secrets = work / "secrets"
    secrets.mkdir(exist_ok=True)
    (secrets / "bot").write_text(cfg["bot"]["token"])
    lines = [
        "defaults: {slo: {latency: 30s}}",
        "municipalities:",
        '  - code: "131016"',
        "    name: 千代田区",
        "    channels:",
    ]
    for i, ch in enumerate(cfg["sides"]["harness"]):
        (secrets / f"w{i}").write_text(ch["watch"]["token"])
        lines.append(
            f"      - {{id: m{i:03d}, kind: matrix, homeserver: '{cfg['hs']}', "
            f"sender: {{user: '{cfg['bot']['user']}', token: 'file:{secrets}/bot'}}, "
            f"observer: {{user: '{ch['watch']['user']}', token: 'file:{secrets}/w{i}'}}, "
            f"room: '{ch['room']}'}}"
        )
    reg = parse_registry("\n".join(lines) + "\n", "bench.yaml")
    journal = Journal(work / "journal.sqlite")
    results: list[Round] = []
    outcomes: dict[str, int] = {}
    problems: list[str] = []
    cpu = 0.0
    async with Drill(reg, journal, scenario="bench", live=True, concurrency=1024) as drill:
        # Open every probe (encryption check, filter, parked /sync) before measuring.
        await asyncio.gather(*(drill.probe(t) for t in drill.targets()))
        targets = drill.targets()

        async def at(offset: float, target: Any) -> Any:
            await asyncio.sleep(offset)
            return await drill.broadcast(TEXT, [target], timeout=60.0)

        for offsets in plan:
            await meet(go)
            c0 = cpu_s()
            if max(offsets) == 0:
                steps = [await drill.broadcast(TEXT, targets, timeout=60.0)]
            else:
                steps = await asyncio.gather(
                    *(at(o, t) for o, t in zip(offsets, targets, strict=True))
                )
            cpu += cpu_s() - c0
            latencies: Round = {}
            for d in (d for step in steps for d in step.deliveries):
                outcomes[d.outcome.value] = outcomes.get(d.outcome.value, 0) + 1
                if d.latency_s is not None:
                    latencies[int(d.channel_id[1:])] = d.latency_s
                elif len(problems) < 10:
                    problems.append(f"{d.channel_id} {d.outcome.value}: {d.reason}")
            results.append(latencies)
            await meet(go)
    journal.close()
    return {
        "rounds": results,
        "outcomes": outcomes,
        "problems": problems,
        "cpu_s": cpu,
        "rss_mb": peak_rss_mb(),
    }


# --------------------------------------------------------------------------- baseline side


async def run_baseline(cfg: dict[str, Any], plan: Schedule, go: Any) -> dict[str, Any]:
    import ssl

    from probes.base import new_token

    hs, bot, channels = cfg["hs"], cfg["bot"], cfg["sides"]["baseline"]
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=8)
    waiters: dict[str, asyncio.Future[float]] = {}
    tls = ssl.create_default_context()
    clients = [
        httpx.AsyncClient(base_url=hs, limits=limits, timeout=60, verify=tls, trust_env=False)
        for _ in channels
    ]

    async def sync_loop(http: httpx.AsyncClient, ch: dict[str, Any], ready: asyncio.Event) -> None:
        auth = {"Authorization": f"Bearer {ch['watch']['token']}"}
        room = ch["room"]
        body = {
            "presence": {"types": []},
            "account_data": {"types": []},
            "room": {
                "rooms": [room],
                "timeline": {"types": ["m.room.message"], "limit": 500},
                "state": {"types": []},
                "ephemeral": {"types": []},
                "account_data": {"types": []},
            },
        }
        user = quote(ch["watch"]["user"], safe="")

        async def call(method: str, url: str, **kw: Any) -> Any:
            # A pooled connection the homeserver closed meanwhile (seen under load at
            # 200 rooms: ReadError) is retried on a new one, as any Matrix client does.
            for attempt in range(5):
                try:
                    return (await http.request(method, url, headers=auth, **kw)).json()
                except httpx.TransportError:
                    if attempt == 4:
                        raise
                    await asyncio.sleep(0.1 * (attempt + 1))
            raise AssertionError("unreachable")

        fid = await call("POST", f"{API}/user/{user}/filter", json=body)
        params = {"filter": fid["filter_id"], "timeout": "0"}
        since = await call("GET", f"{API}/sync", params=params)
        params = {"filter": fid["filter_id"], "timeout": "30000", "since": since["next_batch"]}
        ready.set()
        while True:
            data = await call("GET", f"{API}/sync", params=params)
            now = time.monotonic()
            timeline = data.get("rooms", {}).get("join", {}).get(room, {}).get("timeline", {})
            for ev in timeline.get("events", []):
                text = ev.get("content", {}).get("body", "")
                start = text.find("[TSG-")
                fut = waiters.pop(text[start + 1 : start + 17], None) if start >= 0 else None
                if fut is not None and not fut.done():
                    fut.set_result(now)
            params["since"] = data["next_batch"]

    readies = [asyncio.Event() for _ in channels]
    loops = [
        asyncio.ensure_future(sync_loop(http, ch, ev))
        for http, ch, ev in zip(clients, channels, readies, strict=True)
    ]
    # every /sync loop parked — or the first one that failed says why (never a silent hang)
    all_ready = asyncio.ensure_future(asyncio.gather(*(ev.wait() for ev in readies)))
    await asyncio.wait([all_ready, *loops], return_when=asyncio.FIRST_COMPLETED)
    if not all_ready.done():
        all_ready.cancel()
        failed = next(t for t in loops if t.done())
        go.abort()  # the harness side is waiting for us at the barrier
        raise RuntimeError(f"a baseline /sync loop failed at set-up: {failed.exception()!r}")
    auth = {"Authorization": f"Bearer {bot['token']}"}
    results: list[Round] = []
    cpu = 0.0

    async def send(http: httpx.AsyncClient, ch: dict[str, Any], offset: float) -> float:
        await asyncio.sleep(offset)
        token = new_token()
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        waiters[token] = fut
        text = f"【訓練】 {TEXT}\n[{token}]"
        url = f"{API}/rooms/{quote(ch['room'], safe='')}/send/m.room.message/b.{token}"
        t0 = time.monotonic()
        await http.put(url, json={"msgtype": "m.text", "body": text}, headers=auth)
        return await asyncio.wait_for(fut, 60) - t0

    for offsets in plan:
        await meet(go)
        await meet(go)
        c0 = cpu_s()
        latencies = await asyncio.gather(
            *(send(http, ch, o) for http, ch, o in zip(clients, channels, offsets, strict=True))
        )
        cpu += cpu_s() - c0
        results.append(dict(enumerate(latencies)))
    for task in loops:
        task.cancel()
    await asyncio.gather(*loops, return_exceptions=True)
    for http in clients:
        await http.aclose()
    n = sum(len(r) for r in results)
    return {
        "rounds": results,
        "outcomes": {"delivered": n},
        "problems": [],
        "cpu_s": cpu,
        "rss_mb": peak_rss_mb(),
    }


# --------------------------------------------------------------------------- driver


def side_main(side: str, cfg: dict[str, Any], plan: Schedule, go: Any, work: str, out: Any) -> None:
    import traceback

    try:
        if side == "harness":
            result = asyncio.run(run_harness(cfg, plan, go, Path(work)))
        else:
            result = asyncio.run(run_baseline(cfg, plan, go))
    except BaseException:
        go.abort()  # the other side must not wait at the barrier for us
        result = {"error": traceback.format_exc()}
    out.put((side, result))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(result: dict[str, Any]) -> dict[str, Any]:
    lat = [x for r in result["rounds"] for x in r.values()]
    return {
        "deliveries": len(lat),
        "outcomes": result["outcomes"],
        "p50_ms": statistics.median(lat) * 1000,
        "p90_ms": pct(lat, 0.90) * 1000,
        "p99_ms": pct(lat, 0.99) * 1000,
        "max_ms": max(lat) * 1000,
        "cpu_ms_per_delivery": result["cpu_s"] * 1000 / max(1, len(lat)),
        "peak_rss_mb": result["rss_mb"],
        "round_p50_ms": [round(statistics.median(r.values()) * 1000, 1) for r in result["rounds"]],
        "round_p99_ms": [round(pct(list(r.values()), 0.99) * 1000, 1) for r in result["rounds"]],
    }


def paired_ms(h: list[Round], b: list[Round]) -> list[float]:
    return [
        (hr[i] - br[i]) * 1000 for hr, br in zip(h, b, strict=True) for i in hr.keys() & br.keys()
    ]


def scenario(h: dict[str, Any], b: dict[str, Any], rounds: slice) -> dict[str, Any]:
    hh = {**h, "rounds": h["rounds"][rounds]}
    bb = {**b, "rounds": b["rounds"][rounds]}
    paired = paired_ms(hh["rounds"], bb["rounds"])
    return {
        "harness": summary(hh),
        "baseline": summary(bb),
        "paired_deliveries": len(paired),
        "added_p50_ms": statistics.median(paired),
        "added_p50_ms_by_round": [
            round(statistics.median(paired_ms([hr], [br])), 1)
            for hr, br in zip(hh["rounds"], bb["rounds"], strict=True)
        ],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--probes", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=10, help="paced rounds (plus a warm-up)")
    ap.add_argument(
        "--spread", type=float, default=8.0, help="paced: seconds the sends spread over"
    )
    ap.add_argument("--burst", type=int, default=3, help="burst rounds (plus a warm-up)")
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()

    from tests.servers.synapse import Synapse

    # Stop Synapse (in its own session) even when the benchmark itself is terminated.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # Synapse commits every event to SQLite; on this kind of VM a disk fsync costs more than
    # the whole harness does, so its database lives in memory (tmpfs) when there is one.
    shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    paced = schedule(args.rounds + 1, args.probes, args.spread, args.seed)
    burst = [[0.0] * args.probes for _ in range(args.burst + 1)] if args.burst else []
    plan = paced + burst
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="bench-matrix-", dir=shm) as tmp:
        work = Path(tmp)
        hs = Synapse(work / "synapse")
        t0 = time.monotonic()
        hs.start()
        started = time.monotonic() - t0
        procs = []
        try:
            cfg = asyncio.run(make_rooms(hs, args.probes))
            cfg["hs"] = hs.base_url
            setup_s = time.monotonic() - t0
            print(f"Synapse up, 2 x {args.probes} rooms ready", file=sys.stderr, flush=True)
            go, out = ctx.Barrier(2), ctx.Queue()
            for side in ("harness", "baseline"):
                (work / side).mkdir()
                proc = ctx.Process(
                    target=side_main, args=(side, cfg, plan, go, str(work / side), out)
                )
                proc.start()
                procs.append(proc)
            results = dict(out.get(timeout=120 * len(plan) + 300) for _ in procs)
            failed = {k: v["error"] for k, v in results.items() if "error" in v}
            if failed:
                for k, e in failed.items():
                    print(f"{k} side failed:\n{e}", file=sys.stderr)
                why = "; ".join(f"{k}: {e.strip().splitlines()[-1]}" for k, e in failed.items())
                raise SystemExit(f"bench_matrix failed — {why}")
            for proc in procs:
                proc.join(timeout=30)
        finally:
            for proc in procs:
                if proc.is_alive():
                    proc.terminate()
            hs.close()

    h, b = results["harness"], results["baseline"]
    for r in (h, b):
        r["rounds"] = [{int(k): v for k, v in rnd.items()} for rnd in r["rounds"]]
    paced_report = scenario(h, b, slice(1, args.rounds + 1))  # round 0: warm-up
    report: dict[str, Any] = {
        "benchmark": "bench_matrix",
        "probes": args.probes,
        "synapse_start_s": round(started, 2),
        "setup_s": round(setup_s, 2),
        "paced": {"rounds": args.rounds, "spread_s": args.spread, **paced_report},
        "harness_peak_rss_mb": h["rss_mb"],
        "baseline_peak_rss_mb": b["rss_mb"],
        "harness_outcomes": h["outcomes"],
        "harness_problems": h["problems"],
        "target": "harness adds < 5 ms at p50 (paced)",
        "met": paced_report["added_p50_ms"] < 5.0,
    }
    if args.burst:
        first = args.rounds + 2  # after the paced rounds and the burst warm-up
        report["burst"] = {"rounds": args.burst, **scenario(h, b, slice(first, None))}
    from benchlib import results_dir  # the results folder ($TSUNAGARI_BENCH_RESULTS)

    out_dir = results_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench_matrix.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))

    print(f"Synapse start {started:.2f} s, set-up of 2 x {args.probes} rooms {setup_s:.1f} s")
    for name in ("paced", "burst"):
        if name not in report:
            continue
        sc = report[name]
        how = f"spread over {args.spread:g} s" if name == "paced" else "all at once"
        print(f"\n{name}: {args.probes} concurrent probes, sends {how}, {sc['rounds']} rounds")
        print(f"{'':10} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'CPU ms/msg':>11}")
        for side in ("baseline", "harness"):
            s = sc[side]
            print(
                f"{side:10} {s['p50_ms']:8.1f} {s['p90_ms']:8.1f} {s['p99_ms']:8.1f} "
                f"{s['cpu_ms_per_delivery']:11.2f}"
            )
        print(
            f"harness adds {sc['added_p50_ms']:+.1f} ms at p50 (median of "
            f"{sc['paired_deliveries']} paired deliveries); by round {sc['added_p50_ms_by_round']}"
        )
    print(
        f"\npeak RSS: harness {h['rss_mb']:.1f} MB, baseline {b['rss_mb']:.1f} MB; "
        f"harness outcomes {h['outcomes']}; target < 5 ms at p50 (paced): "
        f"{'met' if report['met'] else 'NOT met'}"
    )
    for problem in h["problems"]:
        print("  not delivered:", problem)


if __name__ == "__main__":
    main()
