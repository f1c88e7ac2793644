"""What starting ``tsunagari`` costs, against starting Python and doing nothing.

Whole processes, as cron and a person at a terminal see them: each command is
started RUNS times, the commands interleaved round by round (so a busy moment
on a shared machine falls on all of them alike), and the medians compared:

- baseline: ``python -c pass`` (the floor: the interpreter and ``site``);
- help: ``tsunagari --help``;
- cron: ``tsunagari cron --schedule '0 9 * * 1-5' -- --registry registry.yaml``
  (prints the crontab line and the timer; needs no registry).

Target: help ≤ 3× baseline.

    python benchmarks/bench_startup.py [--runs 15]

Prints a table and writes benchmarks/results/bench_startup.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET = 3.0


def tsunagari() -> list[str]:
    """The installed console script beside this interpreter, else ``python -m drills.cli``."""
    script = Path(sys.executable).parent / "tsunagari"
    return [str(script)] if script.exists() else [sys.executable, "-m", "drills.cli"]


COMMANDS = {
    "baseline_python_pass": [sys.executable, "-c", "pass"],
    "help": [*tsunagari(), "--lang", "en", "--help"],
    "cron": [*tsunagari(), "--lang", "en", "cron", "--schedule", "0 9 * * 1-5", "--",
             "--registry", "registry.yaml"],
}  # fmt: skip


def once(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15, help="runs of each command (7 or more)")
    args = parser.parse_args()
    runs = max(1, args.runs)  # 7 or more for a median worth reading (the smoke test runs 1)
    for command in COMMANDS.values():  # warm the file cache and the .pyc files
        once(command)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    names = list(COMMANDS)
    for round_ in range(runs):
        shift = round_ % len(names)  # rotate who goes first
        for name in names[shift:] + names[:shift]:
            times[name].append(once(COMMANDS[name]))
    base = statistics.median(times["baseline_python_pass"])
    print(f"{runs} runs each, interleaved; {' '.join(COMMANDS['help'])}")
    print(f"{'what':<22}{'median ms':>10}{'min ms':>9}{'max ms':>9}{'× baseline':>12}")
    summary = {}
    for name, values in times.items():
        median = statistics.median(values)
        summary[name] = {"median_s": median, "ratio_to_baseline": median / base, "runs": values}
        print(
            f"{name:<22}{median * 1000:>10.1f}{min(values) * 1000:>9.1f}"
            f"{max(values) * 1000:>9.1f}{median / base:>12.2f}"
        )
    ratio = summary["help"]["ratio_to_baseline"]
    print(f"tsunagari --help: {ratio:.2f}× python -c pass (target ≤ {TARGET:g}×)")
    from benchlib import results_dir  # the results folder ($TSUNAGARI_BENCH_RESULTS)

    out = results_dir() / "bench_startup.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"runs": runs, "target_ratio": TARGET, **summary}, indent=2))


if __name__ == "__main__":
    main()
