"""Reading the registry: 1,000 and 10,000 webhook channels, against the floor of parsing alone.

The registry is the one ``bench_core_fanout.py`` drills (its line format, its
municipality codes, 10 channels a municipality): each channel its own URL and
two secret files of its own (``auth: file:…``, the observer's too), so loading
it checks 2 secret files a channel. Each figure is the median over ``--rounds``
of a fresh process (``benchlib.run_side``; as ``tsunagari run`` meets a registry:
nothing cached, the secret files read for the first time, the interpreter's own
objects alive):

- ``load``: :func:`drills.core.registry.parse_registry` — the YAML, every check,
  the lines kept for problems, every secret file read;
- ``floor_cyaml``: ``yaml.load(text, Loader=yaml.CSafeLoader)`` of the same text,
  libyaml's parser with PyYAML's constructor: parsing alone, no checks;
- ``floor_json``: ``json.loads`` of the same data written as JSON: the cheapest
  parse of the same values there is;
- ``floor_pyyaml``: ``yaml.safe_load`` (PyYAML's pure-Python loader), for scale.

Reported per size: CPU seconds of each, ms per channel, load / each floor, and
the file's size against the registry's limit (``MAX_REGISTRY_BYTES``).

    python benchmarks/bench_registry_load.py [--channels 1000 10000] [--rounds 3]

Prints a table and writes benchmarks/results/bench_registry_load.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from secrets import token_hex
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_core_fanout import PER_MUNICIPALITY, _code  # noqa: E402
from bench_core_fanout import write_registry as fanout_registry  # noqa: E402
from benchlib import run_side, write_result  # noqa: E402

SIDES = ("load", "floor_cyaml", "floor_json", "floor_pyyaml")


def write_registry(n: int, folder: Path) -> Path:
    """A registry of *n* webhook channels shaped as bench_core_fanout's, with its secret files."""
    chans = []
    for i in range(n):
        url = f"http://127.0.0.1:{40000 + i % 2}/hooks/{_code(i // PER_MUNICIPALITY)}/c{i}"
        chans.append(
            {"url": url, "read": f"{url}/messages", "p": token_hex(16), "r": token_hex(16)}
        )
    return fanout_registry(chans, folder)


def child(side: str, path: str, out: Any) -> None:
    """One measurement in this fresh process: its CPU and wall seconds (or the traceback)
    into *out*."""
    try:
        out.put(_measure(side, path))
    except BaseException:
        out.put({"error": traceback.format_exc()})


def _measure(side: str, path: str) -> dict[str, float]:
    text = Path(path).read_text(encoding="utf-8")
    if side == "load":
        from drills.core.registry import load_kind, parse_registry

        load_kind("webhook")  # the kind's import is start-up, not reading the registry

        def work() -> Any:
            return parse_registry(text, path)
    elif side == "floor_json":
        import yaml

        as_json = json.dumps(yaml.load(text, Loader=yaml.CSafeLoader), ensure_ascii=False)

        def work() -> Any:
            return json.loads(as_json)
    else:
        import yaml

        loader = yaml.CSafeLoader if side == "floor_cyaml" else yaml.SafeLoader

        def work() -> Any:
            return yaml.load(text, Loader=loader)  # a safe loader, libyaml's or pure Python

    c0, w0 = time.process_time(), time.perf_counter()
    work()
    return {"cpu_s": time.process_time() - c0, "wall_s": time.perf_counter() - w0}


def one_size(n: int, rounds: int) -> dict[str, Any]:
    from drills.core.registry import MAX_REGISTRY_BYTES

    with tempfile.TemporaryDirectory(prefix="bench-registry-") as tmp:
        path = write_registry(n, Path(tmp))
        size = path.stat().st_size
        runs: dict[str, list[float]] = {side: [] for side in SIDES}
        for r in range(rounds):
            order = SIDES if r % 2 == 0 else tuple(reversed(SIDES))
            for side in order:
                runs[side].append(run_side(child, (side, str(path)), 600)["cpu_s"])
    med = {side: statistics.median(values) for side, values in runs.items()}
    per_round = [round(a / b, 3) for a, b in zip(runs["load"], runs["floor_cyaml"], strict=True)]
    return {
        "channels": n,
        "bytes": size,
        "bytes_per_channel": round(size / n, 1),
        "limit_bytes": MAX_REGISTRY_BYTES,
        "within_limit": size <= MAX_REGISTRY_BYTES,
        **{f"{side}_cpu_s": round(med[side], 4) for side in SIDES},
        **{f"{side}_cpu_s_range": [min(runs[side]), max(runs[side])] for side in SIDES},
        "load_ms_per_channel": round(med["load"] * 1000 / n, 4),
        "ratio_load_vs_floor_cyaml": round(med["load"] / med["floor_cyaml"], 3),
        "ratio_load_vs_floor_cyaml_range": [min(per_round), max(per_round)],
        "ratio_load_vs_floor_json": round(med["load"] / med["floor_json"], 3),
        "ratio_load_vs_floor_pyyaml": round(med["load"] / med["floor_pyyaml"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--channels", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sizes = [one_size(n, args.rounds) for n in args.channels]
    print(f"{'channels':>9} {'bytes':>10} {'load s':>8} {'ms/ch':>7} "
          f"{'/cyaml':>7} {'/json':>7} {'/pyyaml':>8}")  # fmt: skip
    for s in sizes:
        print(
            f"{s['channels']:>9,} {s['bytes']:>10,} {s['load_cpu_s']:>8.3f} "
            f"{s['load_ms_per_channel']:>7.3f} {s['ratio_load_vs_floor_cyaml']:>7.2f} "
            f"{s['ratio_load_vs_floor_json']:>7.1f} {s['ratio_load_vs_floor_pyyaml']:>8.2f}"
        )
    out = {
        "sizes": sizes,
        "rounds": args.rounds,
        "load_average": list(os.getloadavg()),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    if len(sizes) >= 2:
        small, large = sizes[0], sizes[-1]
        out["growth_ms_per_channel"] = round(
            large["load_ms_per_channel"] / small["load_ms_per_channel"], 3
        )
    print(f"written {write_result('bench_registry_load', out)}")


if __name__ == "__main__":
    main()
