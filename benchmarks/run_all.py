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


# --------------------------------------------------------------------------- what each result says


@dataclass(frozen=True)
class Row:
    """One figure: its label, where its value is in the result, its kind and its target.

    ``path``: dotted keys (``harness.wall_s``); ending in ``?``, keys the result may lack
    (shown as —); ``a / b``, the quotient of two paths; ``""``, the item itself. ``how``
    turns the value found into the one shown. Where the result also has ``<path>_range``
    ([lowest, highest] over the script's rounds), the value shows it. ``target``:
    ``≤ 1.2``, ``< 5``, ``≥ 0.8`` or a value to equal (``0``, ``True``) — also what *met*
    checks; ``{field}`` in it is a field of the result (``≤ {target_ratio:g}``).
    """

    label: str
    path: str
    kind: str = RATIO
    target: str = ""
    how: Callable[[Any], Any] | None = None


class Each:
    """``rows`` once per item of the list or dict at ``path`` (its first ``skip`` left out),
    their labels led by ``name``, formatted with the result's fields, the item's, its ``key``
    and ``names(result)``."""

    def __init__(
        self,
        path: str,
        name: str,
        *rows: Row,
        skip: int = 0,
        names: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        self.path, self.name, self.rows, self.skip, self.names = path, name, rows, skip, names


Table = tuple[Row | Each, ...]  # a Row outside an Each reads the whole result


def _counts(outcomes: dict[str, int]) -> str:
    return ", ".join(f"{o} {c}" for o, c in outcomes.items())


def _longest_wait(rounds: Any) -> float | None:
    """The runner's pacing reports (one per round): the longest wait before a send."""
    rounds = rounds if isinstance(rounds, list) else [rounds]
    values = [
        float(p["waited_max_s"]) for p in rounds if isinstance(p, dict) and "waited_max_s" in p
    ]
    return max(values) if values else None


def _size_span(r: dict[str, Any]) -> dict[str, Any]:
    return {"first": r["sizes"][0]["channels"], "last": r["sizes"][-1]["channels"]}


def _ms(seconds: float) -> float:
    return seconds * 1000


def _kib(size: float) -> float:
    return size / 1024


CORE_FANOUT: Table = (
    Each(
        "sizes",
        "{channels:,} ch: ",
        Row(
            "harness CPU per delivery / bare loop's",
            "ratio_cpu_harness_vs_baseline",
            RATIO,
            "≤ 1.2",
        ),
        Row("the same, registry reading left out", "ratio_cpu_without_registry_vs_baseline?"),
        Row("harness wall / bare loop's", "ratio_wall_harness_vs_baseline"),
        Row("reading the registry (s)", "harness.registry_load_s?", ABS),
        Row("harness p50 − 0.3 s (ms)", "harness.p50_minus_injected_ms", ABS, "≤ 30"),
        Row("harness p99 − 0.3 s (ms)", "harness.p99_minus_injected_ms", ABS, "≤ 100"),
        Row("bare loop p50 − 0.3 s (ms)", "baseline.p50_minus_injected_ms", ABS),
        Row("bare loop p99 − 0.3 s (ms)", "baseline.p99_minus_injected_ms", ABS),
        Row("records disagreeing with the ledgers", "harness.disagreements", ABS, "0"),
        Row("harness outcomes (all rounds)", "harness.outcomes", ABS, how=_counts),
        Row("records' error bound p99 (ms)", "harness.error_bound_p99_ms", ABS),
        Row("send-side queue p99 (ms)", "harness.queue_p99_ms", ABS),
        Row("harness CPU ms per delivery", "harness.cpu_ms_per_delivery", ABS),
        Row("bare loop CPU ms per delivery", "baseline.cpu_ms_per_delivery", ABS),
        Row("harness wall (s)", "harness.wall_s", ABS),
        Row("bare loop wall (s)", "baseline.wall_s", ABS),
        Row("pacing: longest wait before a send (s)", "harness.pacing?", ABS, how=_longest_wait),
        Row(
            "simulators' CPU ms per delivery (not counted)", "harness.sim_cpu_ms_per_delivery?", ABS
        ),
        Row("harness peak RSS per 1,000 channels (MB)", "harness.rss_mb_per_1000_channels", ABS),
        Row("harness peak RSS / bare loop's", "ratio_rss_harness_vs_baseline?"),
    ),
    Each("growth?", "growth {first:,} → {last:,}: {key}", Row("", ""), names=_size_span),
)

SMS: Table = (
    Row(
        "largest event-loop block, harness modes (ms on CPU)", "loop_lag_on_cpu_max_ms", ABS, "≤ 20"
    ),
    Row("largest event-loop lag, wall (ms)", "loop_lag_max_ms", ABS),
    Row("every message delivered", "all_delivered", ABS, "True", how=str),
    # results[0] is the bare loop itself
    Each(
        "results",
        "{mode}: ",
        Row("CPU per message / bare loop's", "cpu_ratio_vs_baseline?"),
        skip=1,
    ),
)

EXPORTER: Table = (
    Row("cold scrape / reading every delivery", "cold_scrape.ratio_to_baseline"),
    Row("warm scrape / reading every delivery", "warm_scrape.ratio_to_baseline"),
    Row("warm scrape (ms)", "warm_scrape.median_s", ABS, how=_ms),
)

STARTUP: Table = (
    Row("tsunagari --help / python -c pass", "help.ratio_to_baseline", RATIO, "≤ 3"),
    Row("tsunagari cron / python -c pass", "cron.ratio_to_baseline"),
    Row("tsunagari --help (ms)", "help.median_s", ABS, how=_ms),
)

REGISTRY_LOAD: Table = (
    Each(
        "sizes",
        "{channels:,} ch: ",
        Row(
            "reading the registry / libyaml parse alone", "ratio_load_vs_floor_cyaml", RATIO, "≤ 1"
        ),
        Row("reading the registry / json.loads of the same data", "ratio_load_vs_floor_json"),
        Row("reading the registry (ms per channel)", "load_ms_per_channel", ABS),
    ),
)

FANOUT: Table = (
    Row("fan-out 62×3 / single channel (wall)", "ratio_fanout_vs_single", RATIO, "≤ 1.3"),
    Row("fan-out / its slowest delivery", "ratio_fanout_vs_slowest_delivery"),
)

MAIL_OBSERVER: Table = (
    Row("auto observer error p99 (ms)", "strategies.auto.p99_ms", ABS, "≤ 100"),
    Row("auto p99 / IDLE-only p99", "auto_vs_idle_p99"),
    Row("auto p99 / 1 s polling p99", "auto_vs_poll_p99"),
    Row("error bound covered the error (auto)", "strategies.auto.bound_covers", RATIO, "1.0"),
)

MATRIX: Table = (
    Row("paced: harness adds at p50 (ms, paired)", "paced.added_p50_ms", ABS, "< 5"),
    Row(
        "paced: harness CPU per delivery / httpx loop's",
        "paced.harness.cpu_ms_per_delivery / paced.baseline.cpu_ms_per_delivery",
    ),
    Row("harness peak RSS / httpx loop's", "harness_peak_rss_mb / baseline_peak_rss_mb"),
)

PREFLIGHT: Table = (
    Each(
        "ratio_cpu_tsunagari_vs_blackbox",
        "{key}: ",
        Row("CPU per probe, tsunagari / blackbox_exporter", "", RATIO, "≤ 1.0"),
    ),
)

READ_MODEL: Table = (
    Each(
        "figures",
        "{key}: ",
        Row("a year of history / one run", "ratio", RATIO, "≤ {target_ratio:g}"),
    ),
    Row("journal KiB per run", "size.bytes_per_run", ABS, how=_kib),
)

SURGE: Table = (
    Row("surge msg/s / plain Locust msg/s", "ratio", RATIO, "≥ 0.8"),
    Row("CPU per message, plain Locust / surge", "cpu_efficiency_ratio"),
)

JOURNAL_BACKENDS: Table = (
    Each("rows", "{key}: ", Row("PostgreSQL / SQLite", "ratio_pg_to_sqlite")),
)


def figures(table: Table, r: dict[str, Any]) -> list[Figure]:
    """The figures a benchmark's result says, read by its table."""
    out = []
    for entry in table:
        for fields, item in _items(entry, r):
            name = entry.name.format(**fields) if isinstance(entry, Each) else ""
            for row in entry.rows if isinstance(entry, Each) else (entry,):
                value = _find(item, row.path)
                if row.how is not None and value is not None:
                    value = row.how(value)
                target = row.target.format(**fields)
                met = None if not target or value is None else _meets(value, target)
                spread = _find(item, row.path.rstrip("?") + "_range?") if _plain(row) else None
                out.append(Figure(name + row.label, value, row.kind, target, met, spread))
    return out


def _items(entry: Row | Each, r: dict[str, Any]) -> list[tuple[dict[str, Any], Any]]:
    """(the format fields, the item) for each item ``entry`` reads: the result, or its items."""
    if isinstance(entry, Row):
        return [(r, r)]
    found = _find(r, entry.path)
    pairs = list(found.items() if isinstance(found, dict) else enumerate(found or ()))
    out = []
    for key, item in pairs[entry.skip :]:
        fields = {**r, **(entry.names(r) if entry.names else {})}
        fields.update(item if isinstance(item, dict) else {}, key=key)
        out.append((fields, item))
    return out


def _plain(row: Row) -> bool:
    """A row whose value is one key's, as the result has it (it may have a range)."""
    return bool(row.path) and " / " not in row.path and row.how is None


def _find(data: Any, path: str) -> Any:
    """The value at ``path`` (see :class:`Row`) in ``data``."""
    if " / " in path:
        top, bottom = path.split(" / ")
        return _find(data, top) / _find(data, bottom)
    optional = path.endswith("?")
    for key in path.rstrip("?").split(".") if path else ():
        if optional and (not isinstance(data, dict) or key not in data):
            return None
        data = data[key]
    return data


_COMPARE: dict[str, Callable[[Any, float], bool]] = {
    "≤": lambda v, t: v <= t,
    "<": lambda v, t: v < t,
    "≥": lambda v, t: v >= t,
}


def _meets(value: Any, target: str) -> bool:
    """Whether ``value`` meets ``target`` (``≤ 1.2``, ``< 5``, ``≥ 0.8``, ``0``, ``True``)."""
    op, _, bound = target.partition(" ")
    if op in _COMPARE:
        return bool(_COMPARE[op](value, float(bound)))
    try:
        return bool(value == float(target))
    except ValueError:
        return str(value) == target


@dataclass
class Spec:
    table: Table
    needs: list[str] = field(default_factory=list)  # programs on PATH (or absolute paths)
    synapse: bool = False

    def figures(self, r: dict[str, Any]) -> list[Figure]:
        return figures(self.table, r)


SPECS: dict[str, Spec] = {
    "bench_core_fanout": Spec(CORE_FANOUT),
    "bench_sms": Spec(SMS),
    "bench_exporter": Spec(EXPORTER),
    "bench_startup": Spec(STARTUP),
    "bench_registry_load": Spec(REGISTRY_LOAD),
    "bench_fanout": Spec(FANOUT),
    "bench_mail_observer": Spec(MAIL_OBSERVER, needs=["dovecot"]),
    "bench_matrix": Spec(MATRIX, synapse=True),
    "bench_preflight_vs_blackbox": Spec(
        PREFLIGHT, needs=["postfix", "prometheus-blackbox-exporter"]
    ),
    "bench_read_model": Spec(READ_MODEL),
    "bench_surge": Spec(SURGE),
    "bench_journal_backends": Spec(JOURNAL_BACKENDS, needs=["/usr/lib/postgresql/*/bin/initdb"]),
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
