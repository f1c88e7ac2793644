"""Real Prometheus and Pushgateway (Debian packages) on loopback, for tests.

Both run from the test's temp dir on free ports, in the foreground, and are
stopped (then killed if needed) by :meth:`stop`. Prometheus scrapes every
second and evaluates rules every second; FIELD-NOTES: its first scrape comes
a few seconds after start — wait with :meth:`Prometheus.wait_for`.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

from probes.sim.base import free_port

PROMETHEUS = "/usr/bin/prometheus"
PUSHGATEWAY = "/usr/bin/prometheus-pushgateway"
PROMTOOL = "/usr/bin/promtool"


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{url} exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        time.sleep(0.05)
    raise TimeoutError(
        f"{url} not ready after {timeout} s:\n{log.read_text(errors='replace')[-3000:]}"
    )


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


class Pushgateway:
    """``prometheus-pushgateway`` on 127.0.0.1, persistence in the run dir."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def start(self) -> Pushgateway:
        log = self.dir / "pushgateway.log"
        with log.open("wb") as out:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [
                    PUSHGATEWAY,
                    f"--web.listen-address={self.address}",
                    f"--persistence.file={self.dir / 'pushgateway.data'}",
                    "--log.level=warn",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        _wait_ready(self.url + "/-/ready", self.proc, log)
        return self

    def groups(self) -> list[dict[str, Any]]:
        """The ``data`` of ``/api/v1/metrics``: one entry per group."""
        resp = httpx.get(self.url + "/api/v1/metrics", timeout=5.0)
        resp.raise_for_status()
        return list(resp.json()["data"])

    def stop(self) -> None:
        _stop(self.proc)


class Prometheus:
    """``prometheus`` on 127.0.0.1 with a generated config, TSDB in the run dir."""

    def __init__(
        self,
        run_dir: Path,
        targets: dict[str, str],
        rule_files: list[Path] | None = None,
        interval: str = "1s",
    ) -> None:
        self.dir = run_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.targets = targets  # job name -> host:port (scraped with honor_labels)
        self.rule_files = [str(p) for p in rule_files or []]
        self.interval = interval
        self.jobs: list[dict[str, Any]] = []  # further scrape configs, as written
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> dict[str, Any]:
        return {
            "global": {"scrape_interval": self.interval, "evaluation_interval": self.interval},
            "rule_files": self.rule_files,
            "scrape_configs": [
                {"job_name": job, "honor_labels": True, "static_configs": [{"targets": [target]}]}
                for job, target in self.targets.items()
            ]
            + self.jobs,
        }

    def start(self) -> Prometheus:
        config = self.dir / "prometheus.yml"
        config.write_text(yaml.safe_dump(self.config()), encoding="utf-8")
        log = self.dir / "prometheus.log"
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self.dir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--storage.tsdb.retention.time=1d",
                    "--log.level=warn",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        _wait_ready(self.url + "/-/ready", self.proc, log)
        return self

    def _api(self, path: str, **params: Any) -> Any:
        resp = httpx.get(self.url + "/api/v1/" + path, params=params, timeout=10.0)
        body = resp.json()
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query; the result vector (a scalar comes back as one sample)."""
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self._api("query", **params)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def query_range(
        self, expr: str, start: float, end: float, step: float = 1.0
    ) -> list[dict[str, Any]]:
        data = self._api(
            "query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=step
        )
        return list(data["result"])

    def series(self, match: str, start: float | None = None) -> list[dict[str, str]]:
        params: dict[str, Any] = {"match[]": match}
        if start is not None:
            params["start"] = f"{start:.3f}"
        return list(self._api("series", **params))

    def alerts(self) -> list[dict[str, Any]]:
        return list(self._api("alerts")["alerts"])

    def rules(self) -> list[dict[str, Any]]:
        return [r for g in self._api("rules")["groups"] for r in g["rules"]]

    def wait_for(
        self,
        expr: str,
        check: Callable[[list[dict[str, Any]]], bool] = bool,
        timeout: float = 30.0,
    ) -> list[dict[str, Any]]:
        """Poll an instant query until *check* accepts its result (deadline *timeout*)."""
        deadline = time.monotonic() + timeout
        result: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            result = self.query(expr)
            if check(result):
                return result
            time.sleep(0.2)
        raise TimeoutError(f"{expr!r} not satisfied after {timeout} s; last result: {result}")

    def stop(self) -> None:
        _stop(self.proc)
