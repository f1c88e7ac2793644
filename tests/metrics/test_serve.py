"""``tsunagari serve``: the exporter, restarted, killed, behind TLS and basic auth."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trustme

from drills.cli import build_parser
from drills.core.journal import Journal
from drills.core.registry import Registry
from drills.metrics.collector import exposition
from probes.sim.base import free_port
from tests.metrics.support import one_drill, sample_set, write_registry

pytestmark = pytest.mark.slow


@dataclass
class Served:
    journal_path: Path
    registry: Registry


@pytest.fixture(scope="module")
def drilled(tmp_path_factory: pytest.TempPathFactory) -> Served:
    folder = tmp_path_factory.mktemp("serve")
    registry = write_registry(folder)
    with Journal(folder / "journal.sqlite") as journal:
        one_drill(registry, journal)
        one_drill(registry, journal, second=True)
    return Served(folder / "journal.sqlite", registry)


def serve_command(port: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "drills.cli", "--lang", "en", "serve", "--port", str(port), *args]


class Exporter:
    """``tsunagari serve`` in its own process."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.args = serve_command(self.port, *args)
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[str] | None = None

    def start(self, scheme: str = "http", **client: object) -> Exporter:
        self.proc = subprocess.Popen(
            self.args, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(self.proc.stderr.read() if self.proc.stderr else "exited")
            try:
                httpx.get(f"{scheme}://127.0.0.1:{self.port}/", timeout=1.0, **client)  # type: ignore[arg-type]
                return self
            except httpx.TransportError:
                time.sleep(0.05)
        raise TimeoutError("tsunagari serve did not start")

    def scrape(self, scheme: str = "http", **client: object) -> httpx.Response:
        return httpx.get(f"{scheme}://127.0.0.1:{self.port}/metrics", timeout=10.0, **client)  # type: ignore[arg-type]

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            for stream in (self.proc.stdout, self.proc.stderr):
                if stream is not None:
                    stream.close()


@pytest.fixture
def exporters() -> Iterator[list[Exporter]]:
    started: list[Exporter] = []
    yield started
    for e in started:
        e.kill()


def test_a_scrape_after_a_restart_returns_the_same_values(
    drilled: Served, exporters: list[Exporter]
) -> None:
    args = ("--journal", str(drilled.journal_path), "--registry", drilled.registry.path)
    first = Exporter(*args)
    exporters.append(first)
    first.start()
    before = sample_set(first.scrape().text)
    first.kill()  # SIGKILL: nothing is flushed, nothing needs to be
    second = Exporter(*args)
    exporters.append(second)
    second.start()
    after = sample_set(second.scrape().text)
    assert before == after
    assert len(before) > 100
    with Journal(drilled.journal_path) as journal:
        assert after == sample_set(exposition(journal, drilled.registry).decode())
        total = len(journal.deliveries())
    counted = sum(v for (name, _), v in after.items() if name == "tsunagari_deliveries_total")
    assert counted == total


def test_openmetrics_is_negotiated(drilled: Served, exporters: list[Exporter]) -> None:
    e = Exporter("--journal", str(drilled.journal_path))
    exporters.append(e)
    e.start()
    resp = e.scrape(
        headers={
            "Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
        }
    )
    assert resp.headers["content-type"].startswith("application/openmetrics-text")
    assert resp.text.rstrip().endswith("# EOF")
    assert "tsunagari_deliveries_total{" in resp.text
    plain = e.scrape()
    assert plain.headers["content-type"].startswith("text/plain")


DRILL_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from drills.core.journal import Journal
    from drills.core.registry import load_registry
    from drills.core.runner import Drill

    async def main():
        registry = load_registry(sys.argv[1])
        with Journal(sys.argv[2]) as journal:
            async with Drill(registry, journal, scenario="killed", vantage="hq") as drill:
                await drill.broadcast("参集してください", timeout=120, repeat=3)

    asyncio.run(main())
    """
)


def test_a_killed_drill_loses_nothing(tmp_path: Path, exporters: list[Exporter]) -> None:
    registry = tmp_path / "registry.yaml"
    registry.write_text(
        textwrap.dedent(
            """
            municipalities:
              - code: "131211"
                name: 足立区
                channels:
                  - {id: fast, kind: webhook, sim: {latency: 20ms}}
                  - {id: slow, kind: webhook, sim: {latency: 60s}}
            """
        ),
        encoding="utf-8",
    )
    journal_path = tmp_path / "journal.sqlite"
    Journal(journal_path).close()
    e = Exporter("--journal", str(journal_path))
    exporters.append(e)
    e.start()
    drill = subprocess.Popen([sys.executable, "-c", DRILL_SCRIPT, str(registry), str(journal_path)])
    try:
        deadline = time.monotonic() + 30
        key = "tsunagari_deliveries_total"
        while time.monotonic() < deadline:
            during = sample_set(e.scrape().text)
            if sum(v for (n, _), v in during.items() if n == key) == 3:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the fast channel's deliveries never showed up")
        assert [v for (n, _), v in during.items() if n == "tsunagari_drill_running"] == [1.0]
    finally:
        drill.send_signal(signal.SIGKILL)
        drill.wait(timeout=10)
    after = sample_set(e.scrape().text)
    assert {k: v for k, v in after.items() if k[0] == key} == {
        k: v for k, v in during.items() if k[0] == key
    }
    assert [v for (n, _), v in after.items() if n == "tsunagari_drill_running"] == [0.0]
    assert not any(n == "tsunagari_drill_last_success_timestamp_seconds" for n, _ in after)
    assert any(
        n == "tsunagari_readiness_score" for n, _ in after
    )  # the dead run's deliveries are scored


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    folder = tmp_path_factory.mktemp("certs")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    cert.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    for pem in cert.cert_chain_pems[1:]:
        pem.write_to_path(str(folder / "cert.pem"), append=True)
    cert.private_key_pem.write_to_path(str(folder / "key.pem"))
    return folder / "ca.pem", folder / "cert.pem", folder / "key.pem"


def test_tls_and_basic_auth(
    drilled: Served, exporters: list[Exporter], certs: tuple[Path, Path, Path]
) -> None:
    ca_file, cert, key = certs
    ca = ssl.create_default_context(cafile=str(ca_file))
    e = Exporter(
        "--journal",
        str(drilled.journal_path),
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
        "--basic-auth-user",
        "prometheus",
        "--basic-auth-password",
        "env:TSG_TEST_EXPORTER_PW",
        env={"TSG_TEST_EXPORTER_PW": "s3cret-for-tests"},
    )
    exporters.append(e)
    e.start("https", verify=ca)
    assert e.scrape("https", verify=ca).status_code == 401
    assert e.scrape("https", verify=ca, auth=("prometheus", "wrong")).status_code == 401
    ok = e.scrape("https", verify=ca, auth=("prometheus", "s3cret-for-tests"))
    assert ok.status_code == 200 and "tsunagari_readiness_score{" in ok.text
    with pytest.raises(httpx.TransportError):
        e.scrape("http")  # no plain HTTP on a TLS port
    assert "s3cret" not in (ok.text + " ".join(e.args))


def test_defaults_bind_loopback() -> None:
    args = build_parser("en").parse_args(["serve"])
    assert args.host == "127.0.0.1"
    assert args.tls_cert is None and args.basic_auth_user is None


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--journal", "/nonexistent/journal.sqlite"], "no journal"),
        (["--basic-auth-user", "u"], "go together"),
        (
            ["--basic-auth-user", "u", "--basic-auth-password", "env:TSG_TEST_UNSET_PW"],
            "cannot resolve",
        ),
        (["--basic-auth-user", "u", "--basic-auth-password", "literal-password"], "references"),
        (["--tls-cert", "c.pem"], "go together"),
    ],
)
def test_refuses_bad_options(drilled: Served, extra: list[str], message: str) -> None:
    args = ["--journal", str(drilled.journal_path), *extra]
    done = subprocess.run(
        serve_command(free_port(), *args),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert message in done.stderr
    assert "literal-password" not in done.stderr
