"""``/probe?target=131211/mail``: one channel's preflight check, for Prometheus.

In the style of blackbox_exporter's multi-target ``/probe``: Prometheus lists
the registry's targets (``131211/mail``) and relabels each into the
``target`` parameter of a scrape of ``tsunagari serve`` (see
``dashboards/prometheus/prometheus.preflight.yml``). Each scrape runs that
target's check (:mod:`probes.preflight`) through the checker's cache — within
the minimum interval the previous result is served again, and
``tsunagari_check_cache_age_seconds`` says how old it is — and answers the
``tsunagari_check_*`` families of :data:`drills.metrics.catalogue.CHECKS`.

The check's time limit is Prometheus's own scrape timeout (the
``X-Prometheus-Scrape-Timeout-Seconds`` header) minus :data:`TIMEOUT_MARGIN_S`,
so a slow channel is reported as failing in time rather than as a failed
scrape::

    >>> check_timeout("15"), check_timeout(None), check_timeout("0.4")
    (14.5, 10.0, 0.2)

The registry is the one ``tsunagari serve --registry`` loaded at start; an
unknown target is a 400 naming it, never a check.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import cast

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString

from drills.core.preflight import Checked, PreflightRunner
from drills.core.preflight_tls import MODULES
from drills.core.registry import Registry, Target
from drills.metrics.catalogue import CHECKS
from probes.preflight import NO_OBSERVER

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "TIMEOUT_HEADER",
    "TIMEOUT_MARGIN_S",
    "check_families",
    "check_timeout",
    "probe_handler",
    "render_check",
    "render_text",
    "target_labels",
]

TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"
TIMEOUT_MARGIN_S = 0.5  # left for the answer itself (blackbox_exporter's default offset)
DEFAULT_TIMEOUT_S = 10.0  # Prometheus's default scrape timeout, for callers without the header
_MAX_TIMEOUT_S = 300.0


def check_timeout(header: str | None) -> float:
    """The time a check may take, from Prometheus's scrape timeout header.

    Raises ValueError for a header that is not a positive number of seconds.
    """
    if header is None:
        return DEFAULT_TIMEOUT_S
    value = float(header)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(header)
    value = min(value, _MAX_TIMEOUT_S)
    # a very short scrape timeout: keep half of it rather than nothing
    return max(value - TIMEOUT_MARGIN_S, value / 2)


def _labels(target: Target) -> list[str]:
    m, c = target.municipality, target.channel
    return [m.code, m.name, c.id, c.kind]


def _family(name: str) -> GaugeMetricFamily:
    spec = CHECKS[name]
    return GaugeMetricFamily(name, spec.help, labels=list(spec.labels))


def check_families(target: Target, checked: Checked) -> list[Metric]:
    """The ``tsunagari_check_*`` families of one served check (pure)."""
    report, base = checked.report, _labels(target)
    out: dict[str, GaugeMetricFamily] = {name: _family(name) for name in CHECKS}
    out["tsunagari_check_skipped"].add_metric(base, 1.0 if report.skipped else 0.0)
    if report.skipped is None:
        out["tsunagari_check_up"].add_metric(base, 1.0 if report.ok else 0.0)
    for p in report.phases:
        out["tsunagari_check_phase_duration_seconds"].add_metric(
            [*base, p.phase, p.name], p.seconds
        )
        out["tsunagari_check_phase_ok"].add_metric([*base, p.phase, p.name], 1.0 if p.ok else 0.0)
    auth = [p for p in report.phases if p.phase == "auth"]
    if auth:
        out["tsunagari_check_auth_ok"].add_metric(base, 1.0 if all(p.ok for p in auth) else 0.0)
    expiry: dict[str, float] = {}
    for cert in report.certificates:  # the earliest per endpoint (one series each)
        expiry[cert.endpoint] = min(cert.not_after, expiry.get(cert.endpoint, math.inf))
    for endpoint, not_after in sorted(expiry.items()):
        out["tsunagari_check_tls_cert_expiry_timestamp_seconds"].add_metric(
            [*base, endpoint], not_after
        )
    for fact, name in (
        ("twilio_balance", "tsunagari_check_twilio_balance"),
        ("cost_cap", "tsunagari_check_twilio_cost_cap"),
    ):
        if fact in report.facts:
            out[name].add_metric(base, float(report.facts[fact]))
    out["tsunagari_check_duration_seconds"].add_metric(base, report.elapsed_s)
    age = checked.age_s if checked.cached else 0.0
    out["tsunagari_check_cache_age_seconds"].add_metric(base, max(0.0, age))
    return [f for f in out.values() if f.samples]


@functools.cache
def _head(name: str, documentation: str) -> str:
    doc = documentation.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {name} {doc}\n# TYPE {name} gauge\n"


_go_float = cast(Callable[[float], str], floatToGoString)  # the library's number format


def _escaped(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


@functools.lru_cache(maxsize=4096)
def _label_text(labels: tuple[tuple[str, str], ...]) -> str:
    # a target's label sets repeat scrape after scrape: escaped once each
    return ",".join(f'{k}="{_escaped(v)}"' for k, v in labels)


def render_text(families: Iterable[Metric]) -> bytes:
    """Gauge *families* in the Prometheus text format, byte for byte as
    ``prometheus_client.generate_latest`` writes them, at a fraction of its cost.

    The catalogue's names are valid legacy names, so none needs the library's
    per-label name checks and escaping; values use the library's
    ``floatToGoString``. Anything but a gauge without timestamps goes to the
    library itself.
    """
    given = list(families)
    if any(f.type != "gauge" or any(s.timestamp is not None for s in f.samples) for f in given):
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Families(given))
        return generate_latest(registry)
    out: list[str] = []
    for family in given:
        out.append(_head(family.name, family.documentation))
        for sample in family.samples:
            value = _go_float(sample.value)
            if sample.labels:
                labels = _label_text(tuple(sorted(sample.labels.items())))
                out.append(f"{sample.name}{{{labels}}} {value}\n")
            else:
                out.append(f"{sample.name} {value}\n")
    return "".join(out).encode()


def target_labels(target: Target) -> tuple[str, str]:
    """*target*'s label text, escaped once, in the two runs that sorted label sets put
    around a family's own labels: ``channel_id,channel_kind`` and the municipality's."""
    m, c = target.municipality, target.channel
    head = _label_text((("channel_id", c.id), ("channel_kind", c.kind)))
    tail = _label_text((("municipality_code", m.code), ("municipality_name", m.name)))
    return head, tail


def render_check(target: Target, checked: Checked, labels: tuple[str, str] | None = None) -> bytes:
    """``render_text(check_families(target, checked))``, byte for byte, written straight
    from the report: no metric objects, the target's labels (:func:`target_labels`)
    escaped once at start. A test holds the two equal for every shape of report."""
    head, tail = labels or target_labels(target)
    report, go = checked.report, _go_number
    base = f"{{{head},{tail}}}"
    out: list[str] = []

    def family(name: str, samples: list[str]) -> None:
        if samples:
            out.append(_head(name, CHECKS[name].help))
            out.extend(samples)

    def one(name: str, value: float) -> list[str]:
        return [f"{name}{base} {go(value)}\n"]

    family(
        "tsunagari_check_up",
        [] if report.skipped else one("tsunagari_check_up", 1.0 if report.ok else 0.0),
    )
    family(
        "tsunagari_check_skipped", one("tsunagari_check_skipped", 1.0 if report.skipped else 0.0)
    )
    staged = [(f"{{{head},{tail},{_phase_labels(p.phase, p.name)}}}", p) for p in report.phases]
    for name, value in (
        ("tsunagari_check_phase_duration_seconds", lambda p: p.seconds),
        ("tsunagari_check_phase_ok", lambda p: 1.0 if p.ok else 0.0),
    ):
        family(name, [f"{name}{labels_} {go(value(p))}\n" for labels_, p in staged])
    auth = [p.ok for p in report.phases if p.phase == "auth"]
    family(
        "tsunagari_check_auth_ok",
        one("tsunagari_check_auth_ok", 1.0 if all(auth) else 0.0) if auth else [],
    )
    expiry: dict[str, float] = {}
    for cert in report.certificates:  # the earliest per endpoint (one series each)
        expiry[cert.endpoint] = min(cert.not_after, expiry.get(cert.endpoint, math.inf))
    name = "tsunagari_check_tls_cert_expiry_timestamp_seconds"
    family(
        name,
        [
            f'{name}{{{head},endpoint="{_escaped(endpoint)}",{tail}}} {go(not_after)}\n'
            for endpoint, not_after in sorted(expiry.items())
        ],
    )
    for fact, name in (
        ("twilio_balance", "tsunagari_check_twilio_balance"),
        ("cost_cap", "tsunagari_check_twilio_cost_cap"),
    ):
        family(name, one(name, float(report.facts[fact])) if fact in report.facts else [])
    family(
        "tsunagari_check_duration_seconds",
        one("tsunagari_check_duration_seconds", report.elapsed_s),
    )
    age = max(0.0, checked.age_s if checked.cached else 0.0)
    family("tsunagari_check_cache_age_seconds", one("tsunagari_check_cache_age_seconds", age))
    return "".join(out).encode()


_ONE, _ZERO = _go_float(1.0), _go_float(0.0)  # the values most samples have


def _go_number(value: float) -> str:
    if value == 1.0:
        return _ONE
    if value == 0.0 and math.copysign(1.0, value) > 0:  # not -0.0, which prints its sign
        return _ZERO
    return _go_float(value)


@functools.lru_cache(maxsize=1024)
def _phase_labels(phase: str, stage: str) -> str:
    return f'phase="{phase}",stage="{_escaped(stage)}"'


class _Families:
    def __init__(self, families: Sequence[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def _comment(text: str) -> str:
    return "# " + " ".join(text.split()) + "\n"


@functools.lru_cache(maxsize=4096)
def _target_comment(key: str, kind: str) -> str:
    return _comment(f"target {key} ({kind})")


def _notes(target: Target, checked: Checked, interval_s: float) -> str:
    """Comment lines for a person reading the answer (Prometheus ignores them)."""
    report = checked.report
    lines = [_target_comment(target.key, target.channel.kind)]
    if checked.cached:
        lines.append(
            _comment(
                f"前回のチェック結果（{checked.age_s:.1f} 秒前、最小間隔 {interval_s:g} 秒）"
                f" / cached result, {checked.age_s:.1f} s old (minimum interval {interval_s:g} s)"
            )
        )
    why = report.skipped or report.reason
    if why is None and report.facts.get("observer_configured") == 0.0:
        why = NO_OBSERVER
    if why is not None:
        lines.append(_comment(str(why)))
    return "".join(lines)


def _bad_request(ja: str, en: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=f"400 {ja} / {en}\n")


def probe_handler(
    registry: Registry | None, checker: PreflightRunner | None
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The ``/probe`` handler over *registry*'s targets (looked up once, here)."""
    targets = (
        {t.key: t for t in registry.targets()} if registry is not None else {}
    )  # read once at start
    labels = {key: target_labels(t) for key, t in targets.items()}  # escaped once
    # named by its file name only: a scraper need not learn where the registry lives
    path = Path(registry.path).name if registry is not None else None

    async def probe(request: web.Request) -> web.Response:
        if checker is None or path is None:
            raise _bad_request(
                "/probe には tsunagari serve --registry が必要です",
                "/probe needs tsunagari serve --registry",
            )
        names = request.query.getall("target", [])
        if len(names) != 1 or not names[0]:
            raise _bad_request(
                "target パラメータを 1 つ指定してください（例: target=131211/mail）",
                "give exactly one target parameter (e.g. target=131211/mail)",
            )
        target = targets.get(names[0])
        if target is None:
            shown = names[0][:80].encode("unicode_escape").decode("ascii")
            raise _bad_request(
                f"対象 {shown} はレジストリ {path} にありません（団体コード/チャネル ID）",
                f"unknown target {shown}: not in the registry {path} (municipality code/channel id)",
            )
        modules = request.query.getall("module", ["full"])
        if len(modules) != 1 or modules[0] not in MODULES:
            shown = ",".join(modules)[:40].encode("unicode_escape").decode("ascii")
            raise _bad_request(
                f"module は {' か '.join(MODULES)} です（{shown}）",
                f"module is {' or '.join(MODULES)} (not {shown})",
            )
        try:
            timeout_s = check_timeout(request.headers.get(TIMEOUT_HEADER))
        except ValueError:
            raise _bad_request(
                f"{TIMEOUT_HEADER} は正の秒数にしてください",
                f"{TIMEOUT_HEADER} must be a positive number of seconds",
            ) from None
        checked = await checker.check(target, timeout_s=timeout_s, module=modules[0])
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        if content_type.startswith("text/plain"):
            body = _notes(target, checked, checker.interval_of(target)).encode()
            if modules[0] != "full":
                body += _comment(
                    f"module {modules[0]}: TLS のみ / TLS only, nothing logged in"
                ).encode()
            body += render_check(target, checked, labels[target.key])
        else:  # OpenMetrics, as Prometheus asks for it: the library's encoder
            prom = CollectorRegistry(auto_describe=False)
            prom.register(_Families(check_families(target, checked)))
            body = encoder(prom)
        return web.Response(body=body, headers={"Content-Type": content_type})

    return probe
