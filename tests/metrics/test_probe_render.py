"""The cheap text rendering of ``/probe`` answers equals prometheus_client's, byte for byte."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from drills.metrics.probe import render_text


class _Fixed:
    def __init__(self, families: list[GaugeMetricFamily | CounterMetricFamily]) -> None:
        self.families = families

    def collect(self):  # type: ignore[no-untyped-def]
        yield from self.families


def _library(families: list[GaugeMetricFamily | CounterMetricFamily]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(families))
    return generate_latest(registry)


def test_gauges_render_as_the_library_does() -> None:
    tricky = GaugeMetricFamily("tsunagari_x", "help with \\ and\nnewline", labels=["b", "a"])
    tricky.add_metric(['say "hi"\\\n', "足立区"], 1.5)
    tricky.add_metric(["", "z"], float("inf"))
    tricky.add_metric(["n", "m"], float("nan"))
    tricky.add_metric(["big", "small"], 1.7e9)
    plain = GaugeMetricFamily("tsunagari_y", "no labels", value=0.0)
    families = [tricky, plain]
    assert render_text(families) == _library(families)


def test_other_types_go_to_the_library() -> None:
    counter = CounterMetricFamily("tsunagari_c", "a counter", value=3.0)
    assert render_text([counter]) == _library([counter])
