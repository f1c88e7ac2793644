"""Getting a run's metrics out without a running exporter: Pushgateway and textfile.

Cron runs push to a Pushgateway::

    push_run(journal, run_id, "http://127.0.0.1:9091", registry=reg)

Each push replaces (HTTP PUT) these groups of job ``tsunagari``:

- ``{scenario, vantage}`` — the run-level metrics (``tsunagari_drill_*``) and
  every municipality's ``drill_interval`` from the registry;
- ``{scenario, vantage, municipality_code}`` — one per municipality in the run,
  with all its channel and municipality metrics.

So municipalities, scenarios and vantage points never overwrite each other, and
a run that drills only some municipalities leaves the others' groups alone.
Everything pushed is recomputed from the journal (counters are journal totals,
not this run's), so a push after a lost push repairs it. Groups of
municipalities that left the registry, or that were not pushed for a long
time, are removed with :func:`prune_gateway`.

On hosts with node_exporter, :func:`write_textfile` writes the same metrics
atomically for its textfile collector.
"""

from __future__ import annotations

import time
import urllib.error
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from prometheus_client import (
    CollectorRegistry,
    delete_from_gateway,
    push_to_gateway,
    write_to_textfile,
)
from prometheus_client.exposition import basic_auth_handler, default_handler

from drills.core.errors import HarnessError
from drills.core.journal import Journal
from drills.core.registry import Registry
from drills.metrics.collector import JournalCollector, Scope
from drills.metrics.state import JournalView
from probes.settings import SecretRef

__all__ = [
    "JOB",
    "PushFailed",
    "grouping_keys",
    "prune_gateway",
    "push_run",
    "stale_groups",
    "write_metrics_file",
    "write_textfile",
]

JOB = "tsunagari"


class PushFailed(HarnessError):
    """The Pushgateway could not be reached or refused the push."""


def _redact(url: str) -> str:
    """*url* without user:password (never put credentials into messages)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def _handler(username: str | None, password: SecretRef | None) -> Callable[..., Callable[[], None]]:
    if username is None:
        return default_handler
    secret = password.reveal() if password is not None else ""

    def handler(
        url: str, method: str, timeout: float | None, headers: Any, data: bytes
    ) -> Callable[[], None]:
        return basic_auth_handler(url, method, timeout, headers, data, username, secret)

    return handler


def grouping_keys(view: JournalView, run_id: str) -> list[tuple[dict[str, str], Scope]]:
    """The Pushgateway groups one run is pushed to, each with what goes into it."""
    run = view.digest_of(run_id)  # KeyError for an unknown run
    base = {"scenario": run.scenario, "vantage": run.vantage}
    groups = [(base, Scope(run.scenario, run.vantage, municipality_level=False))]
    for code in sorted(run.municipalities):
        groups.append(
            (
                {**base, "municipality_code": code},
                Scope(
                    run.scenario, run.vantage, frozenset({code}), drill_level=False, schedule=False
                ),
            )
        )
    return groups


def push_run(
    journal: Journal,
    run_id: str,
    gateway_url: str,
    registry: Registry | None = None,
    *,
    job: str = JOB,
    timeout: float = 10.0,
    username: str | None = None,
    password: SecretRef | None = None,
) -> list[dict[str, str]]:
    """Push the state of *run_id*'s scenario and vantage point; return the grouping keys pushed."""
    view = JournalView(journal, registry)
    handler = _handler(username, password)
    pushed = []
    keys = grouping_keys(view, run_id)
    run = view.digest_of(run_id)
    groups = view.groups(run.scenario, run.vantage)  # read once, rendered per group
    for key, scope in keys:
        prom = CollectorRegistry()
        JournalCollector(journal, scope=scope, prom_registry=prom, view=view, groups=groups)
        try:
            push_to_gateway(
                gateway_url,
                job=job,
                registry=prom,
                grouping_key=key,
                timeout=timeout,
                handler=handler,
            )
        except (OSError, urllib.error.URLError) as exc:
            where = _redact(gateway_url)
            raise PushFailed(f"Pushgateway {where} への送信に失敗 / push failed: {exc}") from exc
        pushed.append(key)
    return pushed


def _push_time(group: Mapping[str, Any]) -> float | None:
    try:
        return float(group["push_time_seconds"]["metrics"][0]["value"])
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def stale_groups(
    groups: Iterable[Mapping[str, Any]],
    *,
    job: str = JOB,
    municipalities: set[str] | None = None,
    runs: set[tuple[str, str]] | None = None,
    older_than_s: float | None = None,
    now: float | None = None,
) -> list[dict[str, str]]:
    """Grouping keys (job included) of *job*'s groups that should go.

    *groups* is the ``data`` list of the Pushgateway's ``/api/v1/metrics``.
    A group is stale when its ``municipality_code`` is not in *municipalities*,
    its (scenario, vantage) not in *runs*, or its last push is older than
    *older_than_s* — each test only when given.

    >>> labels = {"job": "tsunagari", "scenario": "s", "vantage": "v", "municipality_code": "1"}
    >>> stale_groups([{"labels": labels}], municipalities={"131211"})
    [{'job': 'tsunagari', 'scenario': 's', 'vantage': 'v', 'municipality_code': '1'}]
    """
    now = time.time() if now is None else now
    out = []
    for group in groups:
        labels = {str(k): str(v) for k, v in (group.get("labels") or {}).items()}
        if labels.get("job") != job:
            continue
        code = labels.get("municipality_code")
        stale = municipalities is not None and code is not None and code not in municipalities
        if runs is not None and (labels.get("scenario", ""), labels.get("vantage", "")) not in runs:
            stale = True
        pushed_at = _push_time(group)
        if older_than_s is not None and pushed_at is not None and now - pushed_at > older_than_s:
            stale = True
        if stale:
            out.append(labels)
    return out


def prune_gateway(
    gateway_url: str,
    *,
    registry: Registry | None = None,
    journal: Journal | None = None,
    older_than_s: float | None = None,
    job: str = JOB,
    timeout: float = 10.0,
    username: str | None = None,
    password: SecretRef | None = None,
) -> list[dict[str, str]]:
    """Delete *job*'s stale groups from the Pushgateway; return their grouping keys.

    Stale: a municipality no longer in *registry*, a scenario/vantage with no
    run in *journal*, or no push for *older_than_s* seconds.
    """
    auth = (username, password.reveal() if password else "") if username else None
    try:
        resp = httpx.get(gateway_url.rstrip("/") + "/api/v1/metrics", timeout=timeout, auth=auth)
        resp.raise_for_status()
        groups = resp.json().get("data") or []
    except (httpx.HTTPError, ValueError) as exc:
        where = _redact(gateway_url)
        raise PushFailed(
            f"Pushgateway {where} の一覧を取得できません / cannot list groups: {exc}"
        ) from exc
    munis = {m.code for m in registry.municipalities} if registry is not None else None
    runs = {(r["scenario"], r["vantage"]) for r in journal.runs()} if journal is not None else None
    stale = stale_groups(
        groups, job=job, municipalities=munis, runs=runs, older_than_s=older_than_s
    )
    handler = _handler(username, password)
    for labels in stale:
        key = {k: v for k, v in labels.items() if k != "job"}
        try:
            delete_from_gateway(
                gateway_url, job=job, grouping_key=key, timeout=timeout, handler=handler
            )
        except (OSError, urllib.error.URLError) as exc:
            where = _redact(gateway_url)
            raise PushFailed(
                f"Pushgateway {where} で削除できません / cannot delete a group: {exc}"
            ) from exc
    return stale


def write_textfile(
    journal: Journal, run_id: str, path: str | Path, registry: Registry | None = None
) -> Path:
    """Write *run_id*'s scenario and vantage point state for node_exporter's textfile collector.

    Atomic: written to a temporary file in the same folder, then renamed, so
    the collector never reads half a file. The name must end in ``.prom``;
    use one file per scenario and vantage point (or per journal).
    """
    run = journal.run(run_id)
    prom = CollectorRegistry()
    JournalCollector(
        journal, registry=registry, scope=Scope(run["scenario"], run["vantage"]), prom_registry=prom
    )
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(target), prom)
    return target


def write_metrics_file(
    *, journal: Journal, run_id: str, registry: Registry | None, out_dir: Path, lang: str = "ja"
) -> Path:
    """``OUTPUT_WRITERS`` entry: ``metrics.prom`` (textfile format) in the demo's output folder."""
    del lang  # metric names and help are fixed, whatever the language
    return write_textfile(journal, run_id, Path(out_dir) / "metrics.prom", registry)
