"""``tsunagari serve``: a Prometheus exporter that serves the journal's state.

Every scrape reads the journal (digests of ended runs are cached), so the
numbers survive a restart of the exporter, of the drill harness, or of
Prometheus: there is no state in this process worth losing.

Bound to 127.0.0.1 unless told otherwise; optional TLS (certificate and key
files) and HTTP basic auth (password as a secret reference, ``env:NAME`` or
``file:PATH``)::

    tsunagari serve --journal /var/lib/tsunagari/journal.sqlite --registry registry.yaml
    tsunagari serve --host 0.0.0.0 --tls-cert cert.pem --tls-key key.pem \\
        --basic-auth-user prometheus --basic-auth-password env:TSUNAGARI_EXPORTER_PW

The event loop runs the collection itself (SQLite connections belong to one
thread); scrapes are short and one at a time.

``/metrics?name[]=tsunagari_readiness_score&name[]=…`` returns only those metric
families (as prometheus-client's own exporter does). ``/probe?target=131211/mail``
checks one registered channel, blackbox_exporter style (:mod:`drills.metrics.probe`).
Limits, the idle timeout for slow clients and quiet error logs come from
:mod:`probes.serving`: a malformed request gets a 4xx and never a traceback on stderr.
"""

from __future__ import annotations

import asyncio
import hmac
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from aiohttp import BasicAuth, web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric

from drills.core.journal import Journal
from drills.core.preflight import PreflightRunner
from drills.core.registry import Registry
from drills.metrics.collector import JournalCollector
from drills.metrics.probe import probe_handler
from probes.serving import (
    CLIENT_MAX_SIZE,
    add_fallback_route,
    expect_handler,
    is_loopback,
    runner_settings,
)
from probes.settings import SecretRef

__all__ = ["DEFAULT_PORT", "ExporterOptions", "make_app", "serve"]

_MAX_NAMES = 200  # name[] filters per scrape

DEFAULT_PORT = 9470

_LANDING = """<!doctype html><meta charset="utf-8"><title>Tsunagari exporter</title>
<h1>繋がり (Tsunagari) exporter</h1><p><a href="metrics">metrics</a></p>
<p>probe: <code>probe?target=131211/mail</code></p>
"""


@dataclass(frozen=True)
class ExporterOptions:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    tls_cert: Path | None = None
    tls_key: Path | None = None
    username: str | None = None
    password: SecretRef | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"

    @property
    def exposed(self) -> bool:
        """Listening beyond loopback without both TLS and basic auth (warn the operator)."""
        return not is_loopback(self.host) and (self.tls_cert is None or self.password is None)

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.tls_cert is None:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(self.tls_cert), str(self.tls_key) if self.tls_key else None)
        return ctx


class _Only:
    """The metric families of *source* named in *names* (a family or one of its sample names,
    as prometheus-client's ``name[]`` filter matches: ``tsunagari_deliveries_total``)."""

    def __init__(self, source: CollectorRegistry, names: set[str]) -> None:
        self.source, self.names = source, names

    def collect(self) -> Iterator[Metric]:
        for family in self.source.collect():
            if family.name in self.names or any(s.name in self.names for s in family.samples):
                yield family


def _authorized(header: str | None, username: str, password: str) -> bool:
    if not header:
        return False
    try:
        auth = BasicAuth.decode(header)
    except ValueError:
        return False
    user_ok = hmac.compare_digest(auth.login.encode(), username.encode())
    pass_ok = hmac.compare_digest(auth.password.encode(), password.encode())
    return user_ok and pass_ok


def make_app(
    journal: Journal,
    registry: Registry | None = None,
    *,
    username: str | None = None,
    password: SecretRef | None = None,
    checker: PreflightRunner | None = None,
) -> web.Application:
    """The exporter's web application: ``/metrics``, ``/probe?target=…`` (with *registry*
    and *checker*, :mod:`drills.metrics.probe`) and a landing page at ``/``."""
    prom = CollectorRegistry()
    JournalCollector(journal, registry=registry, prom_registry=prom)
    secret = password.reveal() if (username is not None and password is not None) else None

    @web.middleware
    async def basic_auth(
        request: web.Request, handler: Callable[..., object]
    ) -> web.StreamResponse:
        if username is not None and not _authorized(
            request.headers.get("Authorization"), username, secret or ""
        ):
            return web.Response(
                status=401,
                text="401 認証が必要です / authentication required\n",
                headers={"WWW-Authenticate": 'Basic realm="tsunagari"'},
            )
        result = await handler(request)  # type: ignore[misc]
        assert isinstance(result, web.StreamResponse)
        return result

    async def metrics(request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        names = request.query.getall("name[]", [])
        if len(names) > _MAX_NAMES:
            raise web.HTTPBadRequest(
                text=f"name[] は {_MAX_NAMES} 個までです / at most {_MAX_NAMES} name[] filters\n"
            )
        body = encoder(_Only(prom, set(names)) if names else prom)
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def landing(_: web.Request) -> web.Response:
        return web.Response(text=_LANDING, content_type="text/html")

    app = web.Application(middlewares=[basic_auth], client_max_size=CLIENT_MAX_SIZE)
    app.router.add_get("/metrics", metrics, expect_handler=expect_handler)
    app.router.add_get("/probe", probe_handler(registry, checker), expect_handler=expect_handler)
    app.router.add_get("/", landing, expect_handler=expect_handler)
    add_fallback_route(app)
    return app


async def serve(
    journal: Journal,
    registry: Registry | None,
    options: ExporterOptions,
    *,
    started: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
    checker: PreflightRunner | None = None,
) -> None:
    """Serve until *stop* is set (or the task is cancelled)."""
    app = make_app(
        journal, registry, username=options.username, password=options.password, checker=checker
    )
    runner = web.AppRunner(app, **runner_settings("tsunagari.serve"))
    await runner.setup()
    site = web.TCPSite(runner, options.host, options.port, ssl_context=options.ssl_context())
    try:
        await site.start()
        if started is not None:
            started(f"{options.scheme}://{options.host}:{options.port}/metrics")
        await (stop or asyncio.Event()).wait()
    finally:
        await runner.cleanup()
