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
    "TargetText",
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


_SINGLE = (  # the families with one sample per target, labelled by the target alone
    "tsunagari_check_up",
    "tsunagari_check_skipped",
    "tsunagari_check_auth_ok",
    "tsunagari_check_twilio_balance",
    "tsunagari_check_twilio_cost_cap",
    "tsunagari_check_duration_seconds",
    "tsunagari_check_cache_age_seconds",
)
_STAGED = ("tsunagari_check_phase_duration_seconds", "tsunagari_check_phase_ok")
_EXPIRY = "tsunagari_check_tls_cert_expiry_timestamp_seconds"


class TargetText:
    """A target's part of the ``/probe`` text, escaped and written once (at start):
    its label runs, each one-sample family's lines up to the value, and each
    phase's labels as they are first seen. Sorted label sets put the target's
    labels in two runs around a family's own: ``channel_id,channel_kind`` (*head*)
    and the municipality's (*tail*)."""

    __slots__ = ("_staged", "head", "single", "tail")

    def __init__(self, target: Target) -> None:
        m, c = target.municipality, target.channel
        self.head = head = _label_text((("channel_id", c.id), ("channel_kind", c.kind)))
        self.tail = tail = _label_text(
            (("municipality_code", m.code), ("municipality_name", m.name))
        )
        self.single = {
            name: f"{_head(name, CHECKS[name].help)}{name}{{{head},{tail}}} " for name in _SINGLE
        }
        self._staged: dict[tuple[str, str], str] = {}

    def staged(self, phase: str, stage: str) -> str:
        """The label set of one phase's samples, with the braces."""
        text = self._staged.get((phase, stage))
        if text is None:
            text = f"{{{self.head},{self.tail},{_phase_labels(phase, stage)}}} "
            self._staged[(phase, stage)] = text
        return text


def target_labels(target: Target) -> TargetText:
    """*target*'s text for :func:`render_check`, to make once per target."""
    return TargetText(target)


def render_check(target: Target, checked: Checked, labels: TargetText | None = None) -> bytes:
    """``render_text(check_families(target, checked))``, byte for byte, written straight
    from the report: no metric objects, the target's text (:class:`TargetText`) made
    once at start. A test holds the two equal for every shape of report."""
    text = labels or TargetText(target)
    single = text.single
    report, go = checked.report, _go_number
    out: list[str] = []
    if not report.skipped:
        out += (single["tsunagari_check_up"], _ONE if report.ok else _ZERO, "\n")
    out += (single["tsunagari_check_skipped"], _ONE if report.skipped else _ZERO, "\n")
    phases = report.phases
    if phases:
        staged = [text.staged(p.phase, p.name) for p in phases]
        seconds, ok = _STAGED
        out.append(_head(seconds, CHECKS[seconds].help))
        for label, p in zip(staged, phases, strict=True):
            out += (seconds, label, go(p.seconds), "\n")
        out.append(_head(ok, CHECKS[ok].help))
        for label, p in zip(staged, phases, strict=True):
            out += (ok, label, _ONE if p.ok else _ZERO, "\n")
        auth = [p.ok for p in phases if p.phase == "auth"]
        if auth:
            out += (single["tsunagari_check_auth_ok"], _ONE if all(auth) else _ZERO, "\n")
    if report.certificates:
        expiry: dict[str, float] = {}
        for cert in report.certificates:  # the earliest per endpoint (one series each)
            expiry[cert.endpoint] = min(cert.not_after, expiry.get(cert.endpoint, math.inf))
        out.append(_head(_EXPIRY, CHECKS[_EXPIRY].help))
        for endpoint, not_after in sorted(expiry.items()):
            out.append(
                f'{_EXPIRY}{{{text.head},endpoint="{_escaped(endpoint)}",{text.tail}}} '
                f"{go(not_after)}\n"
            )
    facts = report.facts
    if facts:
        for fact, name in (
            ("twilio_balance", "tsunagari_check_twilio_balance"),
            ("cost_cap", "tsunagari_check_twilio_cost_cap"),
        ):
            if fact in facts:
                out += (single[name], go(float(facts[fact])), "\n")
    out += (single["tsunagari_check_duration_seconds"], go(report.elapsed_s), "\n")
    age = max(0.0, checked.age_s if checked.cached else 0.0)
    out += (single["tsunagari_check_cache_age_seconds"], go(age), "\n")
    return "".join(out).encode()


_ONE, _ZERO = _go_float(1.0), _go_float(0.0)  # the values most samples have


def _go_number(value: float) -> str:
    if value == 1.0:
        return _ONE
    if value == 0.0 and math.copysign(1.0, value) > 0:  # not -0.0, which prints its sign
        return _ZERO
    if -math.inf < value < 1e6:  # floatToGoString's own answer for these: Python's repr
        return repr(value)
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


@functools.lru_cache(maxsize=64)  # a scraper sends the same Accept header every time
def _encoder(accept: str) -> tuple[Callable[[CollectorRegistry], bytes], str]:
    return choose_encoder(accept)


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
        encoder, content_type = _encoder(request.headers.get("Accept", ""))
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
