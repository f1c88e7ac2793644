"""Run every benchmark in ``benchmarks/`` at its standard size; write ``benchmarks/RESULTS.md``.

    python benchmarks/run_all.py [--only NAME ...] [--reuse NAME ...] [--timeout 1800]

(``scripts/bootstrap.sh bench`` sets the machine up as ``test`` does, then runs this.)

Each ``bench_*.py`` runs as its own process, one after the other, with the exact
command written into the results; each writes its machine-readable result into
``benchmarks/results/<name>.json`` (``benchlib.write_result``) and its output into
``benchmarks/results/logs/<name>.log``. A benchmark that needs something this
machine does not have (a Debian server, Synapse's venv) is not run and the table
says why; one that fails says so with its exit code and last error line — never
silently.

Every figure in the table is either a **ratio** against a baseline run in the same
invocation of the same script (the bare loop, ``python -c pass``, blackbox_exporter,
plain Locust, …) or an absolute value labelled **machine-dependent**. Where
``benchmarks/before/<name>.json`` exists (an earlier run, on the code as it was then),
its figures are shown beside today's.

``--only``: run just these (the other rows come from their last result file, marked
with its time). ``--reuse``: do not run these; take their last result file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(BENCH))

from benchlib import results_dir  # noqa: E402

RESULTS = results_dir()  # benchmarks/results, or $TSUNAGARI_BENCH_RESULTS
BEFORE = BENCH / "before"
JST = ZoneInfo("Asia/Tokyo")

RATIO, ABS = "ratio", "machine-dependent"


@dataclass
class Figure:
    name: str
    value: float | int | str | None
    kind: str  # RATIO or ABS
    target: str = ""
    met: bool | None = None
    spread: list[float] | None = None  # [lowest, highest] over the script's rounds


def fig(
    name: str,
    value: Any,
    kind: str,
    target: str = "",
    ok: Callable[[Any], bool] | None = None,
    spread: list[float] | None = None,
) -> Figure:
    met = None if ok is None or value is None else bool(ok(value))
    return Figure(name, value, kind, target, met, spread)


# --------------------------------------------------------------------------- what each result says


def core_fanout(r: dict[str, Any]) -> list[Figure]:
    out = []
    for s in r["sizes"]:
        n, h, b = s["channels"], s["harness"], s["baseline"]
        k = f"{n:,} ch"
        out += [
            fig(
                f"{k}: harness CPU per delivery / bare loop's",
                s["ratio_cpu_harness_vs_baseline"],
                RATIO,
                "≤ 1.2",
                lambda v: v <= 1.2,
            ),
            fig(
                f"{k}: the same, registry reading left out",
                s.get("ratio_cpu_without_registry_vs_baseline"),
                RATIO,
            ),
            fig(f"{k}: harness wall / bare loop's", s["ratio_wall_harness_vs_baseline"], RATIO),
            fig(f"{k}: reading the registry (s)", h.get("registry_load_s"), ABS),
            fig(
                f"{k}: harness p50 − 0.3 s (ms)",
                h["p50_minus_injected_ms"],
                ABS,
                "≤ 30",
                lambda v: v <= 30,
                h.get("p50_minus_injected_ms_range"),
            ),
            fig(
                f"{k}: harness p99 − 0.3 s (ms)",
                h["p99_minus_injected_ms"],
                ABS,
                "≤ 100",
                lambda v: v <= 100,
                h.get("p99_minus_injected_ms_range"),
            ),
            fig(
                f"{k}: bare loop p50 − 0.3 s (ms)",
                b["p50_minus_injected_ms"],
                ABS,
                spread=b.get("p50_minus_injected_ms_range"),
            ),
            fig(
                f"{k}: bare loop p99 − 0.3 s (ms)",
                b["p99_minus_injected_ms"],
                ABS,
                spread=b.get("p99_minus_injected_ms_range"),
            ),
            fig(
                f"{k}: records disagreeing with the ledgers",
                h["disagreements"],
                ABS,
                "0",
                lambda v: v == 0,
            ),
            fig(
                f"{k}: harness outcomes (all rounds)",
                ", ".join(f"{o} {c}" for o, c in h["outcomes"].items()),
                ABS,
            ),
            fig(f"{k}: records' error bound p99 (ms)", h["error_bound_p99_ms"], ABS),
            fig(f"{k}: send-side queue p99 (ms)", h["queue_p99_ms"], ABS),
            fig(
                f"{k}: harness CPU ms per delivery",
                h["cpu_ms_per_delivery"],
                ABS,
                spread=h.get("cpu_ms_per_delivery_range"),
            ),
            fig(
                f"{k}: bare loop CPU ms per delivery",
                b["cpu_ms_per_delivery"],
                ABS,
                spread=b.get("cpu_ms_per_delivery_range"),
            ),
            fig(f"{k}: harness wall (s)", h["wall_s"], ABS, spread=h.get("wall_s_range")),
            fig(f"{k}: bare loop wall (s)", b["wall_s"], ABS, spread=b.get("wall_s_range")),
            fig(
                f"{k}: pacing: longest wait before a send (s)", _paced(h, "waited_max_s", max), ABS
            ),
            fig(
                f"{k}: simulators' CPU ms per delivery (not counted)",
                h.get("sim_cpu_ms_per_delivery"),
                ABS,
            ),
            fig(
                f"{k}: harness peak RSS per 1,000 channels (MB)", h["rss_mb_per_1000_channels"], ABS
            ),
            fig(
                f"{k}: harness peak RSS / bare loop's",
                s.get("ratio_rss_harness_vs_baseline"),
                RATIO,
            ),
        ]
    for key, value in (r.get("growth") or {}).items():
        first, last = r["sizes"][0]["channels"], r["sizes"][-1]["channels"]
        out.append(fig(f"growth {first:,} → {last:,}: {key}", value, RATIO))
    return out


def _paced(h: dict[str, Any], key: str, how: Callable[[list[float]], float]) -> float | None:
    """A figure of the runner's pacing report (one per round), when the runner paces."""
    rounds = h.get("pacing")
    rounds = rounds if isinstance(rounds, list) else [rounds]
    values = [float(p[key]) for p in rounds if isinstance(p, dict) and key in p]
    return how(values) if values else None


def sms(r: dict[str, Any]) -> list[Figure]:
    out = [
        fig(
            "largest event-loop block, harness modes (ms on CPU)",
            r["loop_lag_on_cpu_max_ms"],
            ABS,
            "≤ 20",
            lambda v: v <= 20,
        ),
        fig("largest event-loop lag, wall (ms)", r["loop_lag_max_ms"], ABS),
        fig("every message delivered", str(r["all_delivered"]), ABS, "True", lambda v: v == "True"),
    ]
    for row in r["results"][1:]:
        out.append(
            fig(
                f"{row['mode']}: CPU per message / bare loop's",
                row.get("cpu_ratio_vs_baseline"),
                RATIO,
            )
        )
    return out


def exporter(r: dict[str, Any]) -> list[Figure]:
    return [
        fig("cold scrape / reading every delivery", r["cold_scrape"]["ratio_to_baseline"], RATIO),
        fig("warm scrape / reading every delivery", r["warm_scrape"]["ratio_to_baseline"], RATIO),
        fig("warm scrape (ms)", r["warm_scrape"]["median_s"] * 1000, ABS),
    ]


def startup(r: dict[str, Any]) -> list[Figure]:
    return [
        fig(
            "tsunagari --help / python -c pass",
            r["help"]["ratio_to_baseline"],
            RATIO,
            "≤ 3",
            lambda v: v <= 3,
        ),
        fig("tsunagari cron / python -c pass", r["cron"]["ratio_to_baseline"], RATIO),
        fig("tsunagari --help (ms)", r["help"]["median_s"] * 1000, ABS),
    ]


def registry_load(r: dict[str, Any]) -> list[Figure]:
    out = []
    for s in r["sizes"]:
        k = f"{s['channels']:,} ch"
        out += [
            fig(
                f"{k}: reading the registry / libyaml parse alone",
                s["ratio_load_vs_floor_cyaml"],
                RATIO,
                "≤ 1",
                lambda v: v <= 1,
                s.get("ratio_load_vs_floor_cyaml_range"),
            ),
            fig(
                f"{k}: reading the registry / json.loads of the same data",
                s["ratio_load_vs_floor_json"],
                RATIO,
            ),
            fig(f"{k}: reading the registry (ms per channel)", s["load_ms_per_channel"], ABS),
        ]
    return out


def fanout(r: dict[str, Any]) -> list[Figure]:
    return [
        fig(
            "fan-out 62×3 / single channel (wall)",
            r["ratio_fanout_vs_single"],
            RATIO,
            "≤ 1.3",
            lambda v: v <= 1.3,
        ),
        fig("fan-out / its slowest delivery", r["ratio_fanout_vs_slowest_delivery"], RATIO),
    ]


def mail_observer(r: dict[str, Any]) -> list[Figure]:
    auto = r["strategies"]["auto"]
    return [
        fig("auto observer error p99 (ms)", auto["p99_ms"], ABS, "≤ 100", lambda v: v <= 100),
        fig("auto p99 / IDLE-only p99", r["auto_vs_idle_p99"], RATIO),
        fig("auto p99 / 1 s polling p99", r["auto_vs_poll_p99"], RATIO),
        fig(
            "error bound covered the error (auto)",
            auto["bound_covers"],
            RATIO,
            "1.0",
            lambda v: v >= 1.0,
        ),
    ]


def matrix(r: dict[str, Any]) -> list[Figure]:
    p = r["paced"]
    h, b = p["harness"], p["baseline"]
    return [
        fig(
            "paced: harness adds at p50 (ms, paired)",
            p["added_p50_ms"],
            ABS,
            "< 5",
            lambda v: v < 5,
        ),
        fig(
            "paced: harness CPU per delivery / httpx loop's",
            h["cpu_ms_per_delivery"] / b["cpu_ms_per_delivery"],
            RATIO,
        ),
        fig(
            "harness peak RSS / httpx loop's",
            r["harness_peak_rss_mb"] / r["baseline_peak_rss_mb"],
            RATIO,
        ),
    ]


def preflight(r: dict[str, Any]) -> list[Figure]:
    return [
        fig(
            f"{kind}: CPU per probe, tsunagari / blackbox_exporter",
            v,
            RATIO,
            "≤ 1.0",
            lambda x: x <= 1.0,
        )
        for kind, v in r["ratio_cpu_tsunagari_vs_blackbox"].items()
    ]


def read_model(r: dict[str, Any]) -> list[Figure]:
    return [
        fig(
            f"{name}: a year of history / one run",
            e["ratio"],
            RATIO,
            f"≤ {r['target_ratio']:g}",
            lambda v, t=r["target_ratio"]: v <= t,
        )
        for name, e in r["figures"].items()
    ] + [fig("journal KiB per run", r["size"]["bytes_per_run"] / 1024, ABS)]


def surge(r: dict[str, Any]) -> list[Figure]:
    return [
        fig("surge msg/s / plain Locust msg/s", r["ratio"], RATIO, "≥ 0.8", lambda v: v >= 0.8),
        fig("CPU per message, plain Locust / surge", r["cpu_efficiency_ratio"], RATIO),
    ]


def journal_backends(r: dict[str, Any]) -> list[Figure]:
    return [
        fig(f"{name}: PostgreSQL / SQLite", e["ratio_pg_to_sqlite"], RATIO)
        for name, e in r["rows"].items()
    ]


@dataclass
class Spec:
    figures: Callable[[dict[str, Any]], list[Figure]]
    needs: list[str] = field(default_factory=list)  # programs on PATH (or absolute paths)
    synapse: bool = False


SPECS: dict[str, Spec] = {
    "bench_core_fanout": Spec(core_fanout),
    "bench_sms": Spec(sms),
    "bench_exporter": Spec(exporter),
    "bench_startup": Spec(startup),
    "bench_registry_load": Spec(registry_load),
    "bench_fanout": Spec(fanout),
    "bench_mail_observer": Spec(mail_observer, needs=["dovecot"]),
    "bench_matrix": Spec(matrix, synapse=True),
    "bench_preflight_vs_blackbox": Spec(
        preflight, needs=["postfix", "prometheus-blackbox-exporter"]
    ),
    "bench_read_model": Spec(read_model),
    "bench_surge": Spec(surge),
    "bench_journal_backends": Spec(journal_backends, needs=["/usr/lib/postgresql/*/bin/initdb"]),
}


# --------------------------------------------------------------------------- running


def missing(spec: Spec) -> str | None:
    """Why this benchmark cannot run here (None: it can)."""
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    for prog in spec.needs:
        if "*" in prog:  # a versioned Debian folder (/usr/lib/postgresql/N/bin)
            if not glob.glob(prog):
                return f"`{prog}` is not installed (scripts/bootstrap.sh setup installs it)"
            continue
        if shutil.which(prog, path=path) is None:
            return f"`{prog}` is not installed (scripts/bootstrap.sh setup installs it)"
    if spec.synapse:
        venv = os.environ.get("TSUNAGARI_SYNAPSE_VENV") or str(
            Path.home() / ".cache/tsunagari/synapse-venv"
        )
        if not Path(venv, "bin", "synapse_homeserver").exists():
            return f"Synapse is not installed in {venv} (scripts/bootstrap.sh setup installs it)"
    return None


@dataclass
class Ran:
    name: str
    command: str
    status: str  # "ran", "failed (exit N): …", "not run: …", "reused"
    wall_s: float | None = None
    at: dt.datetime | None = None
    result: dict[str, Any] | None = None


def _shown(script: Path) -> str:
    """The command as run (from the repository's root): this interpreter, the script."""
    python = Path(sys.executable)
    exe = str(python.relative_to(ROOT)) if python.is_relative_to(ROOT) else str(python)
    return f"{exe} {script.relative_to(ROOT)}"


def run_one(name: str, timeout: float) -> Ran:
    script = BENCH / f"{name}.py"
    command = [sys.executable, str(script.relative_to(ROOT))]
    shown = _shown(script)
    why = missing(SPECS[name]) if name in SPECS else None
    if why is not None:
        return Ran(name, shown, f"not run: {why}")
    logs = RESULTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}.json"
    out.unlink(missing_ok=True)
    (RESULTS / f"{name}.run.json").unlink(missing_ok=True)
    start, at = time.monotonic(), dt.datetime.now(JST)
    print(f"[bench] {shown}", file=sys.stderr, flush=True)
    env = {**os.environ, "TSUNAGARI_BENCH_RESULTS": str(RESULTS)}
    with (logs / f"{name}.log").open("wb") as log:
        try:
            done = subprocess.run(
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout
            )
            code: int | str = done.returncode
        except subprocess.TimeoutExpired:
            code = f"timed out after {timeout:g} s"
    wall = time.monotonic() - start
    if code != 0 or not out.exists():
        tail = (logs / f"{name}.log").read_text("utf-8", "replace").strip().splitlines()[-1:] or [
            ""
        ]
        why = code if isinstance(code, str) else f"exit {code}"
        return Ran(name, shown, f"failed ({why}): {tail[0][:200]}", wall, at)
    # how it ran, for a later run_all that reuses this result (--only, --reuse)
    how = {"command": shown, "wall_s": wall, "at": at.isoformat(), "load_1m": os.getloadavg()[0]}
    (RESULTS / f"{name}.run.json").write_text(json.dumps(how), encoding="utf-8")
    status = f"ran (load {how['load_1m']:.1f} after it)"
    return Ran(name, shown, status, wall, at, json.loads(out.read_text("utf-8")))


def reuse(name: str) -> Ran:
    shown = _shown(BENCH / f"{name}.py")
    out = RESULTS / f"{name}.json"
    if not out.exists():
        return Ran(name, shown, "not run: no earlier result to reuse")
    result = json.loads(out.read_text("utf-8"))
    how = RESULTS / f"{name}.run.json"
    if how.exists():  # run by an earlier run_all: as it ran then
        ran = json.loads(how.read_text("utf-8"))
        at = dt.datetime.fromisoformat(ran["at"])
        status = f"ran (an earlier run_all; load {ran['load_1m']:.1f} after it)"
        return Ran(name, ran["command"], status, ran["wall_s"], at, result)
    at = dt.datetime.fromtimestamp(out.stat().st_mtime, JST)
    return Ran(name, shown + " (by hand?)", "reused (an earlier run)", None, at, result)


# --------------------------------------------------------------------------- the report


def machine() -> dict[str, str]:
    mem = "?"
    with open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return {
        "cores": str(os.cpu_count()),
        "memory": mem,
        "python": platform.python_version(),
        "kernel": f"{platform.system()} {platform.release()}",
        "cpu": _cpu_model(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def show(value: Any, spread: list[float] | None = None) -> str:
    if spread is not None and spread[0] != spread[1]:
        return f"{show(value)} ({show(spread[0])}–{show(spread[1])})"
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def before_figures(name: str) -> tuple[dict[str, Any], str] | None:
    path = BEFORE / f"{name}.json"
    if not path.exists() or name not in SPECS:
        return None
    data = json.loads(path.read_text("utf-8"))
    figures = {f.name: f.value for f in SPECS[name].figures(data)}
    return figures, str(data.get("code", {}).get("what", path.name))


def report(runs: list[Ran], load: tuple[float, float], took_s: float) -> str:
    now = dt.datetime.now(JST)
    m = machine()
    lines = [
        "# Benchmark results",
        "",
        f"Written by `scripts/bootstrap.sh bench` (`benchmarks/run_all.py`) on "
        f"{now:%Y-%m-%d %H:%M} JST, in {took_s / 60:.1f} min.",
        "",
        f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory']} memory, Python {m['python']}, "
        f"{m['kernel']}. Load average (1 min) {load[0]:.2f} at the start of this invocation and "
        f"{load[1]:.2f} at its end; each benchmark's row says the load after it. The machine "
        "may be shared: a figure labelled machine-dependent is only comparable on the same "
        "machine under the same load; a ratio compares two sides that ran in the same "
        "invocation of one script (taking turns), so both sides met the same machine.",
        "",
        "## Commands",
        "",
        "| benchmark | exact command | status | wall | ran at (JST) |",
        "|---|---|---|---|---|",
    ]
    for r in runs:
        wall = f"{r.wall_s:.0f} s" if r.wall_s is not None else "—"
        at = f"{r.at:%m-%d %H:%M}" if r.at else "—"
        lines.append(f"| {r.name} | `{r.command}` | {r.status} | {wall} | {at} |")
    lines += [
        "",
        "## Figures",
        "",
        "Kind: **ratio** = against the baseline of the same run; **machine-dependent** = an "
        "absolute value on this machine. A value with a range is the median of the script's "
        "rounds (lowest–highest). *before*: the same figure from `benchmarks/before/` "
        "(an earlier run on the code as it was then).",
        "",
        "| benchmark | figure | value | kind | target | met | before |",
        "|---|---|---|---|---|---|---|",
    ]
    notes = []
    for r in runs:
        if r.result is None:
            lines.append(f"| {r.name} | — | {r.status} | | | | |")
            continue
        spec = SPECS.get(r.name)
        if spec is None:
            lines.append(f"| {r.name} | (no figures known to run_all.py; see its JSON) | | | | | |")
            continue
        try:
            figures = spec.figures(r.result)
        except (KeyError, TypeError, ZeroDivisionError, IndexError) as exc:
            lines.append(
                f"| {r.name} | — | result not readable ({type(exc).__name__}: {exc}) | | | | |"
            )
            continue
        before = before_figures(r.name)
        if before is not None:
            notes.append(f"- {r.name} *before*: {before[1]}")
        for f in figures:
            met = {True: "yes", False: "**no**", None: ""}[f.met]
            was = show(before[0].get(f.name)) if before is not None else ""
            lines.append(
                f"| {r.name} | {f.name} | {show(f.value, f.spread)} | {f.kind} | {f.target} | {met} | {was} |"
            )
        lines += variants(r.name, spec, notes)
    if notes:
        lines += ["", *notes]
    lines += plain_words(runs)
    return "\n".join(lines) + "\n"


def variants(name: str, spec: Spec, notes: list[str]) -> list[str]:
    """Rows of ``<name>.<variant>.json`` (the same script run by hand with other options,
    e.g. ``bench_core_fanout.py --workers 2``), labelled with the variant and its time."""
    rows = []
    for path in sorted(RESULTS.glob(f"{name}.*.json")):
        variant = path.name[len(name) + 1 : -len(".json")]
        if variant == "run":
            continue
        at = dt.datetime.fromtimestamp(path.stat().st_mtime, JST)
        notes.append(f"- {name} ({variant}): run by hand at {at:%m-%d %H:%M} JST")
        try:
            figures = spec.figures(json.loads(path.read_text("utf-8")))
        except (KeyError, TypeError, ZeroDivisionError, IndexError, ValueError):
            continue
        for f in figures:
            met = {True: "yes", False: "**no**", None: ""}[f.met]
            rows.append(
                f"| {name} ({variant}) | {f.name} | {show(f.value, f.spread)} | {f.kind} "
                f"| {f.target} | {met} | |"
            )
    return rows


def plain_words(runs: list[Ran]) -> list[str]:
    """What bench_core_fanout means for a user: how big a drill this machine runs honestly."""
    core = next((r for r in runs if r.name == "bench_core_fanout" and r.result), None)
    if core is None or core.result is None:
        return []
    out = ["", "## What it means for a drill on this machine", ""]
    for s in core.result["sizes"]:
        h, b = s["harness"], s["baseline"]
        p50, p99 = h["p50_minus_injected_ms"], h["p99_minus_injected_ms"]
        true = p50 is not None and p99 is not None and p50 <= 30 and p99 <= 100
        agree = h["disagreements"] == 0
        verdict = (
            "latencies stay true and every record agrees with the far end"
            if true and agree
            else "every record agrees with the far end, but latencies are inflated"
            if agree
            else f"**{h['disagreements']} records disagree with the far end**"
        )
        out.append(
            f"- {s['channels']:,} channels at once (one message each, 0.3 s far end): {verdict} "
            f"(harness p50/p99 − 0.3 s = {show(p50)} / {show(p99)} ms; the bare loop's "
            f"{show(b['p50_minus_injected_ms'])} / {show(b['p99_minus_injected_ms'])} ms). The "
            f"step takes {show(h['wall_s'])} s (bare loop {show(b['wall_s'])} s), "
            f"{show(h['cpu_ms_per_delivery'])} ms CPU per message, "
            f"{show(h['rss_mb_per_1000_channels'])} MB per 1,000 channels."
        )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--only", nargs="*", default=None, help="run only these (others: their last result)"
    )
    ap.add_argument(
        "--reuse", nargs="*", default=[], help="do not run these; take their last result"
    )
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per benchmark")
    ap.add_argument("--out", type=Path, default=BENCH / "RESULTS.md")
    args = ap.parse_args()
    names = sorted(p.stem for p in BENCH.glob("bench_*.py"))
    unknown = [n for n in (args.only or []) + args.reuse if n not in names]
    if unknown:
        print(
            f"ベンチマークがありません / no such benchmark: {', '.join(unknown)}", file=sys.stderr
        )
        return 2
    start, load0 = time.monotonic(), os.getloadavg()[0]
    runs = []
    for name in names:
        skip = name in args.reuse or (args.only is not None and name not in args.only)
        runs.append(reuse(name) if skip else run_one(name, args.timeout))
    text = report(runs, (load0, os.getloadavg()[0]), time.monotonic() - start)
    args.out.write_text(text, encoding="utf-8")
    print(text)
    print(f"written {args.out}", file=sys.stderr)
    return 3 if any(r.status.startswith("failed") for r in runs) else 0  # 3: a harness error


if __name__ == "__main__":
    raise SystemExit(main())
