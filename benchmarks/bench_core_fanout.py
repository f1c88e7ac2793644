"""Drill core at scale: 1,000 and 10,000 webhook channels at 300 ms, beside a bare aiohttp loop.

For each size, in one run, against the same webhook far ends (the chat
simulator, in ``--sim-procs`` processes of its own: :class:`drills.core.sim_host.SimHost`,
at nice ``--sim-nice``, 0 unless asked), three sides take turns, each in a fresh
process of its own (so its CPU and memory are its own, its children — worker
processes — included):

- ``harness``:  registry → ``Drill.broadcast`` (live channels) → journal (SQLite),
  the real path, one message per channel, all channels in one step, on the loop
  :mod:`drills.core.evloop` chooses (``TSUNAGARI_LOOP``);
- ``baseline``: a bare aiohttp loop doing the same protocol — park a long-poll
  per channel, POST, wait for the read-back — with no registry, runner or journal,
  on asyncio's own loop: the baseline every target is judged against;
- ``baseline_uvloop``: the same bare loop on uvloop, its own rows and ratios (what
  the fast loop alone buys), never a target's baseline.

Both sides are judged alike: each imports the modules it runs before its clock starts
(the bare loop aiohttp; the harness its runner, journal and the registry's probe kind —
start-up is ``bench_startup``'s figure), and each counts a delivery only when its own
token came back in the read-back's answer.

Reported per size (median over ``--rounds``; the sides alternate who goes first):

- CPU per delivery of each side, and harness / baseline (target ≤ 1.2×); the harness's
  also without reading the registry (10,000 channels with their own URLs and secret
  files are a ~2.5 MB registry: while that is over the limit a registry file has,
  ``loader.MAX_REGISTRY_BYTES``, the harness process alone may read up to 16 MiB;
  ``registry_limit_raised`` says whether it had to);
- wall time of each side (harness: registry load to the step's end), and the ratio;
- measured latency − injected latency at p50 and p99 (targets ≤ 30 ms / ≤ 100 ms),
  and where it goes, by the ledgers (``where``): ``out`` sent → the far end took it,
  ``far`` the far end's own lateness, ``back`` visible → the harness's sighting;
  over all records and over the slowest 1 %;
- how long each side's process waited for a core (``waited_for_a_core_s``, Linux
  schedstat): what a crowded machine stole from it;
- every harness record judged against the simulators' ledgers
  (:func:`drills.core.truth.compare`): the count of disagreements (target 0); the
  records' own ``error_bound_s`` and, when the runner records it, ``queue_s``;
- peak RSS of each side's process, and per 1,000 channels;
- the simulators' CPU per delivery (not counted in either side);
- with two sizes, how each figure grows from the smaller to the larger (× factor).

    python benchmarks/bench_core_fanout.py [--channels 1000 10000] [--latency 0.3]
        [--sim-procs 2] [--sim-nice 0] [--rounds N] [--concurrency N] [--workers N|auto]
        [--sides harness …] [--trace]

The harness's loop lag second by second, beside what happened in that second (sends,
visibilities, sightings, ``back`` p99), is ``harness_timeline`` in the JSON; ``--trace``
adds its collections, group commits and read-back answers (and the slowest 1 % of
records, ``harness_trace``) — it costs the harness CPU, so not for the figures.
``--sides`` runs only some sides (no ratios; ``bench_core_fanout.partial.json``).

Prints a table and writes benchmarks/results/bench_core_fanout.json (with
``--workers N``: ``bench_core_fanout.workersN.json``, the harness fanned out over N
worker processes, :mod:`drills.core.shard`).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from benchlib import run_side, write_result  # noqa: E402
from fanout_timeline import ms, pct, slowest, tail_parts, timeline  # noqa: E402

PER_MUNICIPALITY = 10  # channels per municipality in the generated registry
TARGET_CPU_RATIO = 1.2
TARGET_P50_MS = 30.0
TARGET_P99_MS = 100.0
# Rounds up to 1,000 channels: each side goes first twice (the order turns), and the
# median of six is steadier than of three on a noisy 2-core machine.
ROUNDS_SMALL = 6
# The sides of one round; the bare loop twice, on asyncio's loop (the baseline the
# targets are judged against) and on uvloop (drills.core.evloop's fast loop).
SIDES = ["baseline", "harness", "baseline_uvloop"]


def _raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 1 << 20), hard))


def _cpu_s() -> float:
    """CPU seconds of this process and its waited-for children (worker processes)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _runq_s() -> float:
    """Seconds this process was ready to run but waited for a core (Linux schedstat;
    0.0 where unavailable): how much the machine's crowding stole from it."""
    try:
        return int(Path("/proc/self/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def _rss() -> tuple[float, float]:
    """Peak RSS (MB) of this process, and of its largest child."""
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return round(me, 1), round(kids, 1)


def _code(i: int) -> str:
    """A valid 全国地方公共団体コード (check digit right) for municipality *i*."""
    five = f"{1 + i // 900:02d}{100 + i % 900:03d}"
    total = sum(int(d) * w for d, w in zip(five, (6, 5, 4, 3, 2), strict=True))
    return five + str((11 - total % 11) % 10)


def write_registry(chans: list[dict[str, str]], folder: Path) -> Path:
    """*folder*/registry.yaml: one webhook channel per entry of *chans* (``url``, ``read``:
    the observer's URL, ``p``/``r``: the send and read tokens, each kept in a secret file
    under *folder*/secrets), :data:`PER_MUNICIPALITY` to a municipality."""
    keep = folder / "secrets"
    keep.mkdir(parents=True, exist_ok=True)
    lines = ["municipalities:\n"]
    for i, c in enumerate(chans):
        (keep / f"p{i}").write_text(c["p"])
        (keep / f"r{i}").write_text(c["r"])
        if i % PER_MUNICIPALITY == 0:
            m = i // PER_MUNICIPALITY
            lines.append(f'  - code: "{_code(m)}"\n    name: 団体{m}\n    channels:\n')
        lines.append(
            f"      - {{id: c{i}, kind: webhook, url: '{c['url']}', "
            f"auth: 'file:{keep}/p{i}', observer: {{url: '{c['read']}', "
            f"auth: 'file:{keep}/r{i}', mode: longpoll}}}}\n"
        )
    path = folder / "registry.yaml"
    path.write_text("".join(lines), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- the two sides


def harness_side(
    reg: str, db: str, timeout: float, concurrency: int, trace: bool, out: Any
) -> None:
    _raise_fd_limit()
    import gc

    from drills.core.journal import Journal
    from drills.core.registry import loader, parse_registry
    from drills.core.runner import Drill
    from probes.chat import webhook  # noqa: F401  (the registry's one kind: imported before the clock)

    # 10,000 channels with their own URLs and secret files are a ~2.5 MB registry: while
    # a registry file may be at most loader.MAX_REGISTRY_BYTES (1 MiB when this was
    # written) and this one is bigger, this process alone reads up to 16 MiB.
    limit_raised = Path(reg).stat().st_size > loader.MAX_REGISTRY_BYTES
    if limit_raised:
        loader.MAX_REGISTRY_BYTES = 16 << 20

    events: dict[str, list[Any]] = {"gc": [], "commits": [], "looks": []}

    def traced(journal: Any) -> None:
        """--trace: note each collection, group commit and read-back answer (monotonic)."""
        from probes.chat.webhook import WebhookProbe

        gc_started: list[tuple[float, float]] = []

        def on_gc(phase: str, info: dict[str, Any]) -> None:
            if phase == "start":
                gc_started.append((time.monotonic(), time.thread_time()))
            elif gc_started:
                t, c = gc_started.pop()
                events["gc"].append(
                    (
                        t,
                        time.monotonic() - t,
                        info["generation"],
                        time.thread_time() - c,
                        info["collected"],
                    )
                )

        gc.callbacks.append(on_gc)
        record_many = journal.record_many

        def timed_record_many(rows: list[Any]) -> None:
            t = time.monotonic()
            record_many(rows)
            events["commits"].append((t, time.monotonic() - t, len(rows)))

        journal.record_many = timed_record_many
        fetch = WebhookProbe.fetch  # every request: the looks and the sends

        async def timed_fetch(self: Any, method: str, url: str, **kw: Any) -> Any:
            t = time.monotonic()
            got = await fetch(self, method, url, **kw)
            wait = (kw.get("params") or {}).get("wait", "-")
            events["looks"].append((t, time.monotonic() - t, method, wait, len(got[1])))
            return got

        WebhookProbe.fetch = timed_fetch  # type: ignore[method-assign]

    async def main() -> dict[str, Any]:
        c0, w0, q0 = _cpu_s(), time.monotonic(), _runq_s()
        registry = parse_registry(Path(reg).read_text(encoding="utf-8"), reg)
        load_cpu, load_s = _cpu_s() - c0, time.monotonic() - w0
        journal = Journal(Path(db))
        if trace:
            traced(journal)
        broadcast_called = time.monotonic()
        async with Drill(
            registry, journal, scenario="bench", live=True, concurrency=concurrency
        ) as drill:
            step = await drill.broadcast("ベンチマーク", timeout=timeout)
        wall = time.monotonic() - w0
        lag_samples = drill.lag.samples(broadcast_called)
        journal.close()
        rss, kids_rss = _rss()
        pacing = getattr(step, "pacing", None)  # what pacing cost, when the runner paces
        return {
            "loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
            "registry_limit_raised": limit_raised,
            "pacing": dataclasses.asdict(pacing) if dataclasses.is_dataclass(pacing) else None,
            "run_id": drill.run_id,
            "wall_s": wall,
            "step_wall_s": step.wall_s,
            "cpu_s": _cpu_s() - c0,
            "runq_s": _runq_s() - q0,
            "registry_cpu_s": load_cpu,
            "registry_s": load_s,
            "deliveries": len(step.deliveries),
            "peak_rss_mb": rss,
            "children_peak_rss_mb": kids_rss,
            "broadcast_called_mono": broadcast_called,
            "step_started_mono": step.started_mono,
            "step_finished_mono": step.finished_mono,
            "lag_samples": lag_samples,
            "events": events if trace else None,
        }

    _put(out, main, "chosen")


def _put(out: Any, main: Any, loop: str) -> None:
    """Run *main* (a coroutine function) on *loop*; its result, or the traceback, into *out*.

    *loop*: ``chosen`` (what :mod:`drills.core.evloop` chooses for the harness:
    ``TSUNAGARI_LOOP``), ``asyncio`` or ``uvloop``.
    """
    import traceback

    from drills.core import evloop

    try:
        if loop == "chosen":
            out.put(evloop.run(main()))
        elif loop == "uvloop":
            import uvloop

            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                out.put(runner.run(main()))
        else:
            with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
                out.put(runner.run(main()))
    except BaseException:
        out.put({"error": traceback.format_exc()})


def baseline_side(chans: list[dict[str, str]], timeout: float, loop: str, out: Any) -> None:
    _raise_fd_limit()
    import aiohttp

    from probes.base import new_token

    async def main() -> dict[str, Any]:
        c0, w0, q0 = _cpu_s(), time.monotonic(), _runq_s()
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as http:

            async def one(c: dict[str, str]) -> tuple[str, float, float] | None:
                read_h = {"Authorization": f"Bearer {c['r']}"}
                token = new_token()
                try:
                    params = {"after": "0", "wait": "0"}
                    async with http.get(c["read"], params=params, headers=read_h) as r:
                        cursor = (await r.json())["cursor"]
                    params = {"after": str(cursor), "wait": str(int(timeout))}
                    poll = asyncio.ensure_future(http.get(c["read"], params=params, headers=read_h))
                    t0 = time.monotonic()
                    async with http.post(
                        c["url"],
                        json={"text": f"【訓練】 baseline [{token}]"},
                        headers={"Authorization": f"Bearer {c['p']}"},
                    ) as r:
                        await r.read()
                    resp = await poll
                    answer = await resp.json()
                    resp.release()
                    seen = time.monotonic() - t0
                    # confirmed only if its own message is in what the read-back returned
                    texts = [m.get("text", "") for m in answer.get("messages", ())]
                    return (token, t0, seen) if any(token in t for t in texts) else None
                except (aiohttp.ClientError, TimeoutError):
                    return None

            got = await asyncio.gather(*(one(c) for c in chans))
        wall = time.monotonic() - w0
        rss, _ = _rss()
        seen = [g for g in got if g is not None]
        return {
            "wall_s": wall,
            "cpu_s": _cpu_s() - c0,
            "runq_s": _runq_s() - q0,
            "deliveries": len(seen),
            "failed": len(got) - len(seen),
            "peak_rss_mb": rss,
            "seen": seen,
        }

    _put(out, main, loop)


# --------------------------------------------------------------------------- figures


def harness_figures(
    side: dict[str, Any], records: list[Any], ledgers: list[Any], latency: float
) -> dict[str, Any]:
    from drills.core.truth import compare

    lat = [d.latency_s for d in records if d.latency_s is not None]
    bounds = [d.error_bound_s for d in records if d.error_bound_s is not None]
    queue = [float(q) for d in records if (q := d.queue_s) is not None]
    disagreements = compare(records, ledgers)
    outcomes: dict[str, int] = {}
    for d in records:
        outcomes[d.outcome.value] = outcomes.get(d.outcome.value, 0) + 1
    n = max(1, side["deliveries"])
    return {
        "wall_s": round(side["wall_s"], 3),
        "step_wall_s": round(side["step_wall_s"], 3),
        "waited_for_a_core_s": round(side.get("runq_s", 0.0), 3),
        "cpu_ms_per_delivery": round(side["cpu_s"] * 1000 / n, 4),
        "cpu_ms_per_delivery_without_registry": round(
            (side["cpu_s"] - side["registry_cpu_s"]) * 1000 / n, 4
        ),
        "registry_load_s": round(side["registry_s"], 3),
        "p50_minus_injected_ms": ms(None if not lat else pct(lat, 0.5) - latency),  # type: ignore[operator]
        "p99_minus_injected_ms": ms(None if not lat else pct(lat, 0.99) - latency),  # type: ignore[operator]
        "max_minus_injected_ms": ms(None if not lat else max(lat) - latency),
        "pacing": side.get("pacing"),
        "error_bound_p50_ms": ms(pct(bounds, 0.5)),
        "error_bound_p99_ms": ms(pct(bounds, 0.99)),
        "queue_p50_ms": ms(pct(queue, 0.5)),
        "queue_p99_ms": ms(pct(queue, 0.99)),
        "where": tail_parts(records, ledgers, latency),
        "loop_lag_p99_ms": ms(pct([float(d.extra.get("loop_lag_s", 0.0)) for d in records], 0.99)),
        "disagreements": len(disagreements),
        "disagreement_examples": [str(x) for x in disagreements[:5]],
        "outcomes": outcomes,
        "peak_rss_mb": side["peak_rss_mb"],
        "children_peak_rss_mb": side["children_peak_rss_mb"],
    }


def baseline_figures(side: dict[str, Any], ledgers: list[Any], latency: float) -> dict[str, Any]:
    lat = [s[2] for s in side["seen"]]
    errors = []  # observed − visible: how late the bare loop saw what the far end showed
    for token, t0, seen in side["seen"]:
        for ledger in ledgers:
            entry = ledger.entry(token)
            if entry is not None and entry.visible_at is not None:
                errors.append(t0 + seen - entry.visible_at)
                break
    n = max(1, side["deliveries"])
    return {
        "wall_s": round(side["wall_s"], 3),
        "waited_for_a_core_s": round(side.get("runq_s", 0.0), 3),
        "cpu_ms_per_delivery": round(side["cpu_s"] * 1000 / n, 4),
        "p50_minus_injected_ms": ms(None if not lat else pct(lat, 0.5) - latency),  # type: ignore[operator]
        "p99_minus_injected_ms": ms(None if not lat else pct(lat, 0.99) - latency),  # type: ignore[operator]
        "max_minus_injected_ms": ms(None if not lat else max(lat) - latency),
        "seen_after_visible_p99_ms": ms(pct(errors, 0.99)),
        "failed": side["failed"],
        "peak_rss_mb": side["peak_rss_mb"],
    }


def median_of(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Numbers: the median over rounds; counts: the sum (the rounds themselves are kept apart)."""
    out: dict[str, Any] = {}
    for key, value in rows[0].items():
        values = [r[key] for r in rows]
        if key in ("disagreements", "failed"):  # counts: over every round
            out[key] = sum(values)
            continue
        if key == "outcomes":
            out[key] = {
                o: sum(v.get(o, 0) for v in values)
                for o in dict.fromkeys(o for v in values for o in v)
            }
            continue
        if key == "disagreement_examples":
            out[key] = [x for v in values for x in v][:5]
            continue
        if isinstance(value, int | float) and not isinstance(value, bool):
            if all(isinstance(v, int | float) for v in values):
                out[key] = round(statistics.median(values), 4)
                continue
        out[key] = value if len(rows) == 1 else values
    return out


# --------------------------------------------------------------------------- one size


def one_size(n: int, args: argparse.Namespace) -> dict[str, Any]:
    from drills.core.journal import Journal
    from drills.core.sim_host import SimHost
    from probes.sim.base import SimKnobs
    from probes.sim.chat import ChatSimulator

    knobs = SimKnobs.model_validate({"latency": args.latency})
    hosts = [SimHost(seed=i + 1, nice=args.sim_nice).start() for i in range(args.sim_procs)]
    timeout = max(20.0, n / 200)
    rounds: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-core-") as tmp:
            work = Path(tmp)
            by_index: dict[int, dict[str, Any]] = {}
            for j, host in enumerate(hosts):
                mine = range(j, n, len(hosts))
                for start in range(0, len(mine), 1000):
                    batch = mine[start : start + 1000]
                    keys = [f"{_code(i // PER_MUNICIPALITY)}/c{i}" for i in batch]
                    got = host.add_many([(ChatSimulator, k, knobs, {}) for k in keys])
                    by_index.update(zip(batch, got, strict=True))
            settings = [by_index[i] for i in range(n)]
            chans = [
                {
                    "url": s["url"],
                    "read": s["observer"]["url"],
                    "p": s["auth"].reveal(),
                    "r": s["observer"]["auth"].reveal(),
                }
                for s in settings
            ]
            reg = write_registry(chans, work)
            db = work / "journal.sqlite"
            wait_s = timeout * 3 + 120
            for r in range(args.rounds or (ROUNDS_SMALL if n <= 1000 else 1)):
                sides = SIDES[r % len(SIDES) :] + SIDES[: r % len(SIDES)]  # who goes first turns
                sides = [side for side in sides if side in args.sides]
                row: dict[str, Any] = {}
                for side in sides:
                    sim0 = sum(h.cpu_s() for h in hosts)
                    if side == "harness":
                        got = run_side(
                            harness_side,
                            (str(reg), str(db), timeout, args.concurrency or n, args.trace),
                            wait_s,
                        )
                    else:
                        loop = "uvloop" if side == "baseline_uvloop" else "asyncio"
                        got = run_side(baseline_side, (chans, timeout, loop), wait_s)
                    got["sim_cpu_s"] = sum(h.cpu_s() for h in hosts) - sim0
                    row[side] = got
                    print(
                        f"  {n} channels, round {r + 1}: {side} done (simulators {got['sim_cpu_s']:.2f} s CPU)",
                        file=sys.stderr,
                    )
                rounds.append(row)
            ledgers = [lg for h in hosts for lg in h.ledgers().values()]
            records = {}
            if "harness" in args.sides:
                with Journal(db, read_only=True) as journal:
                    records = {
                        row["harness"]["run_id"]: journal.deliveries(row["harness"]["run_id"])
                        for row in rounds
                    }
    finally:
        for h in hosts:
            h.stop()
    figures: dict[str, list[dict[str, Any]]] = {}
    for side in SIDES:
        if side not in args.sides:
            continue
        if side == "harness":
            figs = [
                harness_figures(row[side], records[row[side]["run_id"]], ledgers, args.latency)
                for row in rounds
            ]
        else:
            figs = [baseline_figures(row[side], ledgers, args.latency) for row in rounds]
        for fig, row in zip(figs, rounds, strict=True):
            fig["sim_cpu_ms_per_delivery"] = round(row[side]["sim_cpu_s"] * 1000 / n, 4)
        figures[side] = figs
    if set(args.sides) != set(SIDES):  # a partial run (--sides): figures, no ratios
        return partial_size(n, args, rounds, records, ledgers, figures)
    harness, base, base_uv = figures["harness"], figures["baseline"], figures["baseline_uvloop"]
    h, b, u = median_of(harness), median_of(base), median_of(base_uv)
    h["loop"] = rounds[0]["harness"].get("loop")
    h["registry_limit_raised"] = rounds[0]["harness"].get("registry_limit_raised")
    for figs, out in ((harness, h), (base, b), (base_uv, u)):  # the spread over rounds
        for key in (
            "cpu_ms_per_delivery",
            "wall_s",
            "p50_minus_injected_ms",
            "p99_minus_injected_ms",
        ):
            values = [f[key] for f in figs if f[key] is not None]
            out[f"{key}_range"] = [min(values), max(values)] if values else None
    h["rss_mb_per_1000_channels"] = round(h["peak_rss_mb"] * 1000 / n, 2)
    b["rss_mb_per_1000_channels"] = round(b["peak_rss_mb"] * 1000 / n, 2)
    u["rss_mb_per_1000_channels"] = round(u["peak_rss_mb"] * 1000 / n, 2)
    return {
        "channels": n,
        "sim_nice_applied": [host.nice_applied for host in hosts],
        "harness": h,
        "baseline": b,  # plain asyncio: the baseline the targets are judged against
        "baseline_uvloop": u,  # the same bare loop on uvloop, for comparison only
        "ratio_cpu_harness_vs_baseline_uvloop": round(
            h["cpu_ms_per_delivery"] / u["cpu_ms_per_delivery"], 3
        ),
        "ratio_wall_harness_vs_baseline_uvloop": round(h["wall_s"] / u["wall_s"], 3),
        "ratio_cpu_baseline_uvloop_vs_asyncio": round(
            u["cpu_ms_per_delivery"] / b["cpu_ms_per_delivery"], 3
        ),
        "ratio_cpu_harness_vs_baseline": round(
            h["cpu_ms_per_delivery"] / b["cpu_ms_per_delivery"], 3
        ),
        "ratio_cpu_without_registry_vs_baseline": round(
            h["cpu_ms_per_delivery_without_registry"] / b["cpu_ms_per_delivery"], 3
        ),
        "ratio_wall_harness_vs_baseline": round(h["wall_s"] / b["wall_s"], 3),
        "ratio_rss_harness_vs_baseline": round(h["peak_rss_mb"] / b["peak_rss_mb"], 3),
        "rounds": {"harness": harness, "baseline": base, "baseline_uvloop": base_uv},
        "harness_timeline": [
            timeline(row["harness"], records[row["harness"]["run_id"]], ledgers, args.latency)
            for row in rounds
        ],
    }


def partial_size(
    n: int,
    args: argparse.Namespace,
    rounds: list[dict[str, Any]],
    records: dict[str, list[Any]],
    ledgers: list[Any],
    figures: dict[str, list[dict[str, Any]]],
) -> dict[str, Any]:
    """One size's figures when only some sides ran (``--sides``): each side's median, no ratios."""
    out: dict[str, Any] = {"channels": n, "partial": True}
    for side, figs in figures.items():
        out[side] = median_of(figs)
        out[side]["rss_mb_per_1000_channels"] = round(out[side]["peak_rss_mb"] * 1000 / n, 2)
    if "harness" in figures:
        out["harness"]["loop"] = rounds[0]["harness"].get("loop")
        out["harness_timeline"] = [
            timeline(row["harness"], records[row["harness"]["run_id"]], ledgers, args.latency)
            for row in rounds
        ]
        if args.trace:  # the raw events too (monotonic - the broadcast's call)
            out["harness_t0_mono"] = [row["harness"]["broadcast_called_mono"] for row in rounds]
            out["harness_trace"] = [
                {
                    name: [
                        (round(e[0] - row["harness"]["broadcast_called_mono"], 4), *e[1:])
                        for e in events
                    ]
                    for name, events in row["harness"]["events"].items()
                }
                | {
                    "slowest": slowest(
                        row["harness"], records[row["harness"]["run_id"]], ledgers, args.latency
                    ),
                    "lag": [
                        (round(t - row["harness"]["broadcast_called_mono"], 4), lag)
                        for t, lag in row["harness"]["lag_samples"]
                    ],
                }
                for row in rounds
            ]
    out["rounds"] = figures
    return out


GROWTH_KEYS = [
    ("harness", "cpu_ms_per_delivery"),
    ("baseline", "cpu_ms_per_delivery"),
    ("harness", "wall_s"),
    ("baseline", "wall_s"),
    ("harness", "p50_minus_injected_ms"),
    ("harness", "p99_minus_injected_ms"),
    ("baseline", "p50_minus_injected_ms"),
    ("baseline", "p99_minus_injected_ms"),
    ("baseline_uvloop", "cpu_ms_per_delivery"),
    ("baseline_uvloop", "wall_s"),
    ("harness", "peak_rss_mb"),
    ("harness", "rss_mb_per_1000_channels"),
]


def growth(small: dict[str, Any], large: dict[str, Any]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for side, key in GROWTH_KEYS:
        a, b = small[side].get(key), large[side].get(key)
        out[f"{side}.{key}"] = round(b / a, 2) if a and b is not None else None
    for key in ("ratio_cpu_harness_vs_baseline", "ratio_wall_harness_vs_baseline"):
        out[key] = round(large[key] / small[key], 2) if small[key] else None
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--channels", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--latency", type=float, default=0.3)
    ap.add_argument("--sim-procs", type=int, default=2, help="simulator processes")
    ap.add_argument(
        "--sim-nice",
        type=int,
        default=0,
        help="the simulator processes' nice value (below 0: the far ends get the cores first, "
        "as a far end on machines of its own would; needs root, else they keep the default: "
        "the JSON says which they ran at). Measured here: -10 took cores from the harness "
        "(its wait for a core 2.5x) without a better p99, so 0 is the default",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=0,
        help=f"turns of each side per size (0: {ROUNDS_SMALL} up to 1,000 channels, 1 above)",
    )
    ap.add_argument(
        "--concurrency", type=int, default=0, help="the Drill's concurrency (0: all channels)"
    )
    ap.add_argument(
        "--workers",
        default=None,
        help="TSUNAGARI_WORKERS for the harness (worker processes; default: as the environment)",
    )
    ap.add_argument(
        "--sides",
        nargs="+",
        choices=SIDES,
        default=SIDES,
        help="run only these sides (default: all three; with fewer, figures are written "
        "without ratios, to bench_core_fanout.partial.json — for iterating on one side)",
    )
    ap.add_argument(
        "--trace",
        action="store_true",
        help="note the harness's collections, group commits and read-back answers in its "
        "timeline (costs the harness some CPU: not for the figures)",
    )
    args = ap.parse_args()
    if args.workers is not None:  # the harness side (spawned) inherits it
        os.environ["TSUNAGARI_WORKERS"] = args.workers
    _raise_fd_limit()
    sizes = [one_size(n, args) for n in args.channels]
    result: dict[str, Any] = {
        "benchmark": "bench_core_fanout",
        "params": vars(args),
        "cpu_count": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "sizes": sizes,
        "targets": {
            "ratio_cpu_harness_vs_baseline": TARGET_CPU_RATIO,
            "p50_minus_injected_ms": TARGET_P50_MS,
            "p99_minus_injected_ms": TARGET_P99_MS,
            "disagreements": 0,
        },
    }
    if any(s.get("partial") for s in sizes):
        for s in sizes:
            print(f"\n{s['channels']} channels (sides: {' '.join(args.sides)})")
            for side in args.sides:
                f = s[side]
                print(
                    f"{side:16} wall {f['wall_s']:.2f} s, CPU {f['cpu_ms_per_delivery']:.3f} ms/del, "
                    f"p50-inj {f['p50_minus_injected_ms']} ms, p99-inj {f['p99_minus_injected_ms']} ms"
                )
            if "harness" in s:
                h = s["harness"]
                print(
                    f"harness: loop lag p99 {h['loop_lag_p99_ms']} ms, error bound p99 "
                    f"{h['error_bound_p99_ms']} ms, disagreements {h['disagreements']}, "
                    f"pacing {h['pacing']}\nwhere: {h['where']}"
                )
        print(f"written {write_result('bench_core_fanout.partial', result)}")
        return
    if len(sizes) > 1:
        result["growth"] = growth(sizes[0], sizes[-1])
    head = (
        f"{'':22}{'wall s':>8}{'CPU ms/del':>11}{'p50-inj ms':>11}{'p99-inj ms':>11}{'RSS MB':>8}"
    )
    for s in sizes:
        print(
            f"\n{s['channels']} channels at {args.latency:g} s (simulators in {args.sim_procs} processes)"
        )
        print(head)
        for side in SIDES[1:2] + SIDES[0:1] + SIDES[2:]:
            f = s[side]
            print(
                f"{side:22}{f['wall_s']:8.2f}{f['cpu_ms_per_delivery']:11.3f}"
                f"{f['p50_minus_injected_ms'] or 0:11.1f}{f['p99_minus_injected_ms'] or 0:11.1f}"
                f"{f['peak_rss_mb']:8.0f}"
            )
        h = s["harness"]
        print(
            f"ratios harness/baseline: CPU {s['ratio_cpu_harness_vs_baseline']} "
            f"(target ≤ {TARGET_CPU_RATIO}), wall {s['ratio_wall_harness_vs_baseline']}; "
            f"disagreements with the ledgers {h['disagreements']}; outcomes {h['outcomes']}; "
            f"error bound p99 {h['error_bound_p99_ms']} ms; queue p99 {h['queue_p99_ms']} ms; "
            f"RSS {h['rss_mb_per_1000_channels']} MB per 1,000 channels; the harness waited "
            f"{h['waited_for_a_core_s']} s for a core (machine crowding)"
        )
        print(
            f"on uvloop, the bare loop: CPU harness/bare {s['ratio_cpu_harness_vs_baseline_uvloop']}, "
            f"wall {s['ratio_wall_harness_vs_baseline_uvloop']}; bare uvloop/asyncio CPU "
            f"{s['ratio_cpu_baseline_uvloop_vs_asyncio']}; the harness ran on {h['loop']}"
        )
        print(f"where the latency goes (ms, by the ledgers): {h.get('where')}")
    if "growth" in result:
        print(f"\ngrowth {sizes[0]['channels']} → {sizes[-1]['channels']}: {result['growth']}")
    result["workers"] = os.environ.get("TSUNAGARI_WORKERS", "1")
    name = (
        "bench_core_fanout" if args.workers is None else f"bench_core_fanout.workers{args.workers}"
    )
    print(f"written {write_result(name, result)}")


if __name__ == "__main__":
    main()
