"""The preflight half of the metrics world: ``tsunagari serve`` answering ``/probe``.

A registry of its own (the drills' registry stays as it is), checked through
the documented Prometheus job (``dashboards/prometheus/prometheus.preflight.yml``,
relabelling and all) by the world's real Prometheus:

- 131211/chat  — a healthy webhook (simulator): ``tsunagari_check_up 1``;
- 131211/sms   — Twilio (simulator) with a cost cap: balance and cap;
- 133086/slack — Slack (simulator) refusing the token: failing at
  ``sender.auth``, ``tsunagari_check_auth_ok 0`` (TsunagariPreflightFailing);
- 131016/web   — a webhook whose ``health_url`` is served over HTTPS by
  :class:`TlsHealth` with a certificate expiring in 10 days
  (TsunagariTLSCertificateExpiring from a check, for a never-drilled
  municipality); its requests are counted (one check per minimum interval);
- 131016/hole  — a health URL that accepts connections and never answers
  (:class:`BlackHole`), for the scrape-timeout header; not in Prometheus's list.
"""

from __future__ import annotations

import datetime as dt
import http.server
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import trustme
import yaml

from drills.core.journal import Journal
from probes.sim.base import free_port

ROOT = Path(__file__).resolve().parents[2]
PREFLIGHT_CONFIG = ROOT / "dashboards" / "prometheus" / "prometheus.preflight.yml"
CERT_DAYS_LEFT = 10

REGISTRY = """\
municipalities:
  - code: "131211"
    name: 足立区
    channels:
      - {{id: chat, kind: webhook, sim: {{latency: 10ms}}}}
      - {{id: sms, kind: twilio, to: ["+819011110001"], caps: {{max_cost: 5.0}}, sim: {{latency: 10ms}}}}
  - code: "133086"
    name: 奥多摩町
    channels:
      - {{id: slack, kind: slack, sim: {{reject: auth}}}}
  - code: "131016"
    name: 千代田区
    channels:
      - {{id: web, kind: webhook, url: "{health}", health_url: "{health}"}}
      - {{id: hole, kind: webhook, url: "{hole}", health_url: "{hole}"}}
"""
TARGETS = ("131211/chat", "131211/sms", "133086/slack", "131016/web")
HEALTHY, FAILING = "131211/chat", "133086/slack"


class _Health(http.server.BaseHTTPRequestHandler):
    hits = 0  # GETs served (by this process's TlsHealth)

    def do_GET(self) -> None:
        type(self).hits += 1
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class TlsHealth:
    """An HTTPS ``/health`` on 127.0.0.1 whose certificate expires in *days* days."""

    def __init__(self, folder: Path, days: int = CERT_DAYS_LEFT) -> None:
        self.ca = trustme.CA()
        self.not_after = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=days)
        cert = self.ca.issue_cert("127.0.0.1", not_after=self.not_after)
        self.ca_file = folder / "health-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(ctx)
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}/health"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> TlsHealth:
        self.thread.start()
        return self

    @property
    def hits(self) -> int:
        return _Health.hits

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class BlackHole:
    """A listening socket that is never accepted from: connects, then silence."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/health"

    def close(self) -> None:
        self.sock.close()


def preflight_job(address: str, targets: tuple[str, ...] = TARGETS) -> dict[str, Any]:
    """The documented job, pointed at this test's ``tsunagari serve`` and targets."""
    config = yaml.safe_load(PREFLIGHT_CONFIG.read_text(encoding="utf-8"))
    (job,) = config["scrape_configs"]
    job["static_configs"] = [{"targets": list(targets)}]
    job["scrape_interval"] = job["scrape_timeout"] = "1s"
    (to_address,) = [r for r in job["relabel_configs"] if r.get("target_label") == "__address__"]
    to_address["replacement"] = address
    return dict(job)


class ProbeServer:
    """``tsunagari serve --registry`` (with ``/probe``) in its own process."""

    def __init__(self, folder: Path, health: TlsHealth) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.hole = BlackHole()
        self.registry = folder / "preflight.yaml"
        text = REGISTRY.format(health=health.url, hole=self.hole.url)
        self.registry.write_text(text, encoding="utf-8")
        self.journal = journal = folder / "journal.sqlite"
        Journal(journal).close()
        self.port = free_port()
        self.args = [
            *(sys.executable, "-m", "drills.cli", "--lang", "en", "serve"),
            *("--port", str(self.port), "--journal", str(journal)),
            # longer than any test session: every check after the first is from the cache
            *("--registry", str(self.registry), "--check-interval", "3600"),
        ]
        self.env = {**os.environ, "SSL_CERT_FILE": str(health.ca_file)}
        self.stderr = folder / "serve.stderr"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> ProbeServer:
        with self.stderr.open("wb") as err:
            self.proc = subprocess.Popen(
                self.args, env=self.env, stdout=subprocess.DEVNULL, stderr=err
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(self.stderr.read_text(encoding="utf-8"))
            try:
                httpx.get(f"http://{self.address}/", timeout=1.0)
                return self
            except httpx.TransportError:
                time.sleep(0.05)
        raise TimeoutError("tsunagari serve did not start")

    def probe(self, *params: tuple[str, str], **headers: str) -> httpx.Response:
        return httpx.get(
            f"http://{self.address}/probe", params=list(params), headers=headers, timeout=10.0
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.hole.close()
