"""Preflight probes: ``tsunagari serve /probe`` vs Debian's blackbox_exporter, side by side.

Both exporters run as their own processes and probe the same local targets, at
the same concurrency, in one run (alternating rounds, so a slow moment of the
machine hits both):

- **SMTP with STARTTLS**: a real Postfix (STARTTLS, a trustme certificate).
  blackbox_exporter's ``tcp`` prober with the usual ``smtp_starttls`` dialogue
  (banner, EHLO, STARTTLS, handshake, EHLO, QUIT); tsunagari's mail check
  (banner, EHLO, STARTTLS, handshake, EHLO, NOOP, QUIT, and the observer's
  Maildir) — at least the same work.
- **HTTPS**: a local aiohttp server over TLS answering ``/health``.
  blackbox_exporter's ``http`` prober (GET, 2xx, TLS verified against the
  test CA); tsunagari's webhook check of a ``health_url`` (DNS, connect, TLS
  and the GET).

Measured per exporter and target kind: CPU seconds per probe — the exporter
process's CPU clock (``clock_gettime`` of its process CPU-time clock: all its
threads, user + system, in nanoseconds, the same reading for both exporters; the
user/system split from ``/proc/<pid>/stat``, in clock ticks) of the exporter
process only (the targets and this load generator run elsewhere) — and probes
per second. Rounds alternate which exporter goes first, so a drift of the
machine's load between the two halves of a round favours neither. Every answer
is parsed and must say the probe succeeded (``probe_success 1`` /
``tsunagari_check_up 1``). tsunagari's check cache is off (``serve
--check-interval 0``) and each round probes registry targets no earlier round
probed (distinct channel ids on the same servers): every scrape runs a full check.

Target (issue 14): tsunagari's CPU per probe ≤ blackbox_exporter's.

    .venv/bin/python benchmarks/bench_preflight_vs_blackbox.py [--probes 300] [--rounds 5] [--concurrency 8]

Prints a table and writes benchmarks/results/bench_preflight_vs_blackbox.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BLACKBOX = shutil.which("prometheus-blackbox-exporter") or "/usr/bin/prometheus-blackbox-exporter"
TICKS = os.sysconf("SC_CLK_TCK")

HTTPS_SCRIPT = textwrap.dedent(
    """
    import asyncio, signal, ssl, sys
    from aiohttp import web

    async def health(_):
        return web.Response(text="ok")

    async def main():
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(sys.argv[2], sys.argv[3])
        app = web.Application()
        app.router.add_get("/health", health)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", int(sys.argv[1]), ssl_context=ctx).start()
        print("ready", flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()

    asyncio.run(main())
    """
)

BLACKBOX_CONFIG = """\
modules:
  smtp_starttls:
    prober: tcp
    timeout: 10s
    tcp:
      preferred_ip_protocol: ip4
      query_response:
        - expect: "^220 ([^ ]+) ESMTP (.+)$"
        - send: "EHLO prober\\r"
        - expect: "^250-STARTTLS"
        - send: "STARTTLS\\r"
        - expect: "^220"
        - starttls: true
        - send: "EHLO prober\\r"
        - expect: "^250"
        - send: "QUIT\\r"
      tls_config:
        ca_file: {ca}
        server_name: localhost
  https_2xx:
    prober: http
    timeout: 10s
    http:
      preferred_ip_protocol: ip4
      fail_if_not_ssl: true
      tls_config:
        ca_file: {ca}
"""


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(utime, stime) of *pid*, all its threads (fields 14 and 15 of /proc/<pid>/stat)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS


def cpu_clock(pid: int) -> float:
    """CPU seconds used by *pid* so far, all its threads (also those ended), user and
    system, to the nanosecond: the process's CPU-time clock, as Linux names it for
    another process (``MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)``). /proc's utime
    and stime count 10 ms ticks: ±3 % of a round of 300 probes."""
    return time.clock_gettime_ns(((~pid) << 3) | 2) / 1e9


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise TimeoutError(url)


def mail_channel(i: int, port: int, ca: Path, maildir: Path) -> str:
    return (
        f"      - {{id: mail{i}, kind: mail, smtp: {{host: 127.0.0.1, port: {port}, "
        f'security: starttls, ca_file: "{ca}"}}, from: drill@example.lg.jp, '
        f'to: drill@example.lg.jp, maildir: "{maildir}"}}\n'
    )


def web_channel(i: int, url: str) -> str:
    return f"      - {{id: web{i}, kind: webhook, url: '{url}', health_url: '{url}'}}\n"


@dataclass
class Round:
    exporter: str
    kind: str
    probes: int
    ok: int
    wall_s: float
    user_s: float  # /proc's utime and stime (10 ms ticks): the split only
    sys_s: float
    cpu_s: float  # the process CPU clock (ns): the figure compared


def success(exporter: str, body: str) -> bool:
    metric = "probe_success" if exporter == "blackbox" else "tsunagari_check_up"
    for line in body.splitlines():
        if line.startswith(metric + " ") or line.startswith(metric + "{"):
            return float(line.rsplit(" ", 1)[1]) == 1.0
    return False


async def load(urls: list[str], concurrency: int, exporter: str) -> tuple[int, float]:
    """Scrape every URL once, *concurrency* at a time; (successes, wall seconds)."""
    import aiohttp

    queue: asyncio.Queue[str] = asyncio.Queue()
    for url in urls:
        queue.put_nowait(url)
    ok = 0
    headers = {"X-Prometheus-Scrape-Timeout-Seconds": "10"}

    async def worker(http: aiohttp.ClientSession) -> None:
        nonlocal ok
        while not queue.empty():
            url = queue.get_nowait()
            async with http.get(url, headers=headers) as resp:
                body = await resp.text()
            ok += resp.status == 200 and success(exporter, body)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        t0 = time.monotonic()
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
        return ok, time.monotonic() - t0


def measure(exporter: str, kind: str, pid: int, urls: list[str], concurrency: int) -> Round:
    u0, s0 = cpu_seconds(pid)
    c0 = cpu_clock(pid)
    ok, wall = asyncio.run(load(urls, concurrency, exporter))
    c1 = cpu_clock(pid)
    u1, s1 = cpu_seconds(pid)
    return Round(exporter, kind, len(urls), ok, wall, u1 - u0, s1 - s0, c1 - c0)


def main() -> None:
    import trustme

    from drills.core.journal import Journal
    from probes.sim.base import free_port
    from tests.servers.postfix import Postfix

    ap = argparse.ArgumentParser()
    ap.add_argument("--probes", type=int, default=300, help="probes per round and target kind")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()
    n, rounds = args.probes, args.rounds
    procs: list[subprocess.Popen[bytes]] = []
    postfix: Postfix | None = None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        ca = trustme.CA()
        cert = ca.issue_cert("localhost", "127.0.0.1")
        ca.cert_pem.write_to_path(str(out / "ca.pem"))
        cert.cert_chain_pems[0].write_to_path(str(out / "cert.pem"))
        cert.private_key_pem.write_to_path(str(out / "key.pem"))
        (out / "maildir" / "new").mkdir(parents=True)
        try:
            postfix = Postfix(
                lmtp_port=free_port(), cert_file=out / "cert.pem", key_file=out / "key.pem"
            ).start()
            https_port = free_port()
            pems = (str(out / "cert.pem"), str(out / "key.pem"))
            web = subprocess.Popen(
                [*(sys.executable, "-c", HTTPS_SCRIPT, str(https_port)), *pems],
                stdout=subprocess.PIPE,
            )
            procs.append(web)
            assert web.stdout is not None and web.stdout.readline().strip() == b"ready"
            health = f"https://127.0.0.1:{https_port}/health"

            # tsunagari: one registry target per probe, so no probe is served from the cache
            lines = ['municipalities:\n  - code: "131211"\n    name: 足立区\n    channels:\n']
            for i in range(n * rounds):
                lines.append(mail_channel(i, postfix.port, out / "ca.pem", out / "maildir"))
                lines.append(web_channel(i, health))
            (out / "registry.yaml").write_text("".join(lines), encoding="utf-8")
            Journal(out / "journal.sqlite").close()
            tsg_port = free_port()
            env = {**os.environ, "SSL_CERT_FILE": str(out / "ca.pem")}
            tsg = subprocess.Popen(
                [
                    *(sys.executable, "-m", "drills.cli", "serve", "--port", str(tsg_port)),
                    *("--journal", str(out / "journal.sqlite")),
                    *("--registry", str(out / "registry.yaml"), "--check-interval", "0"),
                ],
                env=env,
                stdout=subprocess.DEVNULL,
            )
            procs.append(tsg)
            wait_http(f"http://127.0.0.1:{tsg_port}/", tsg)

            (out / "blackbox.yml").write_text(BLACKBOX_CONFIG.format(ca=out / "ca.pem"))
            bb_port = free_port()
            bb = subprocess.Popen(
                [
                    *(BLACKBOX, f"--config.file={out / 'blackbox.yml'}"),
                    *(f"--web.listen-address=127.0.0.1:{bb_port}", "--log.level=warn"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            procs.append(bb)
            wait_http(f"http://127.0.0.1:{bb_port}/", bb)

            smtp = f"127.0.0.1:{postfix.port}"
            bb_urls = {
                "smtp": f"http://127.0.0.1:{bb_port}/probe?module=smtp_starttls&target={smtp}",
                "https": f"http://127.0.0.1:{bb_port}/probe?module=https_2xx&target={health}",
            }
            tsg_url = f"http://127.0.0.1:{tsg_port}/probe?target=131211/"
            # warm-up: imports, TLS contexts, Go's GC — not measured
            measure("blackbox", "smtp", bb.pid, [bb_urls["smtp"]] * 20, args.concurrency)
            measure("blackbox", "https", bb.pid, [bb_urls["https"]] * 20, args.concurrency)
            results: list[Round] = []
            for r in range(rounds):
                ids = range(r * n, (r + 1) * n)
                for kind, prefix in (("smtp", "mail"), ("https", "web")):
                    runs = {
                        "blackbox": (bb.pid, [bb_urls[kind]] * n),
                        "tsunagari": (tsg.pid, [f"{tsg_url}{prefix}{i}" for i in ids]),
                    }
                    order = ("blackbox", "tsunagari") if r % 2 == 0 else ("tsunagari", "blackbox")
                    for exporter in order:
                        pid, urls = runs[exporter]
                        results.append(measure(exporter, kind, pid, urls, args.concurrency))
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
            if postfix is not None:
                postfix.stop()
    report(results, args)


def version() -> str:
    done = subprocess.run([BLACKBOX, "--version"], capture_output=True, text=True, timeout=10)
    return (done.stdout + done.stderr).strip().splitlines()[0]


def report(results: list[Round], args: argparse.Namespace) -> None:
    table: dict[str, dict[str, dict[str, float]]] = {}
    for exporter in ("blackbox", "tsunagari"):
        for kind in ("smtp", "https"):
            mine = [r for r in results if r.exporter == exporter and r.kind == kind]
            table.setdefault(kind, {})[exporter] = {
                "cpu_ms_per_probe": statistics.median(1000 * r.cpu_s / r.probes for r in mine),
                "user_ms_per_probe": statistics.median(1000 * r.user_s / r.probes for r in mine),
                "sys_ms_per_probe": statistics.median(1000 * r.sys_s / r.probes for r in mine),
                "cpu_ms_per_probe_rounds": [round(1000 * r.cpu_s / r.probes, 3) for r in mine],
                "probes_per_s": statistics.median(r.probes / r.wall_s for r in mine),
                "ok": sum(r.ok for r in mine),
                "probes": sum(r.probes for r in mine),
            }
    print(
        f"\n{args.probes} probes × {args.rounds} rounds per exporter and target, "
        f"concurrency {args.concurrency} (median of rounds)\n"
    )
    print(
        f"{'target':8}{'exporter':12}{'CPU ms/probe':>14}{'(user':>8}{'sys)':>7}"
        f"{'probes/s':>10}{'ok':>10}"
    )
    ratios: dict[str, float] = {}
    spreads: dict[str, list[float]] = {}
    for kind, row in table.items():
        for exporter, v in row.items():
            print(
                f"{kind:8}{exporter:12}{v['cpu_ms_per_probe']:14.3f}{v['user_ms_per_probe']:8.3f}"
                f"{v['sys_ms_per_probe']:7.3f}{v['probes_per_s']:10.1f}"
                f"{int(v['ok']):>6}/{int(v['probes'])}"
            )
        ratio = row["tsunagari"]["cpu_ms_per_probe"] / row["blackbox"]["cpu_ms_per_probe"]
        ratios[kind] = round(ratio, 2)
        # each round's pair (the two exporters back to back): the spread of the ratio
        pairs = zip(
            row["tsunagari"]["cpu_ms_per_probe_rounds"],
            row["blackbox"]["cpu_ms_per_probe_rounds"],
            strict=True,
        )
        per_round = sorted(round(t / b, 2) for t, b in pairs)
        spreads[kind] = per_round
        verdict = "meets" if ratio <= 1.0 else "MISSES"
        print(
            f"{'':8}{'ratio':12}{ratio:14.2f}  tsunagari/blackbox CPU: {verdict} target ≤ 1.00"
            f"  (rounds: {', '.join(f'{x:.2f}' for x in per_round)})"
        )
    print(
        "\nwhat only tsunagari checks (blackbox_exporter cannot): SMTP AUTH and IMAP login with "
        "the drill's credentials, the observed mailbox (read-only EXAMINE), chat who-am-I of "
        "sender and observer and room/channel membership, Twilio number SMS capability and "
        "balance against the cost cap, and a bilingual reason naming the failing phase"
    )
    from benchlib import results_dir  # the results folder ($TSUNAGARI_BENCH_RESULTS)

    dest = results_dir()
    dest.mkdir(parents=True, exist_ok=True)
    result = {
        "probes_per_round": args.probes,
        "rounds": args.rounds,
        "concurrency": args.concurrency,
        "blackbox_exporter": version(),
        "table": table,
        "ratio_cpu_tsunagari_vs_blackbox": ratios,
        "ratio_per_round": spreads,
        "cpu_clock_ticks_per_s": TICKS,  # /proc's user/sys split is counted in these ticks
        "cpu_source": "process CPU-time clock (clock_gettime, ns), all threads, user + sys",
        "target": "tsunagari CPU per probe <= blackbox_exporter's",
    }
    (dest / "bench_preflight_vs_blackbox.json").write_text(
        json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8"
    )


if __name__ == "__main__":
    main()
