"""``tsunagari_municipality_info`` and the CIO overview's Geomap panels.

The info series carries each registered municipality's office location (the
shipped table, drills.core.places); the Geomap panels join it with the
readiness score and the channels' reachability. The join is evaluated by the
real Prometheus of the metrics world (as every panel is in
test_prometheus_integration.py) and checked value by value here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from drills.core.journal import Journal
from drills.core.places import office_places
from drills.core.registry import parse_registry
from drills.metrics.collector import exposition
from tests.metrics.conftest import DASHBOARDS, World
from tests.metrics.promql import substitute
from tests.metrics.support import REGISTRY_YAML, sample_set

INFO = "tsunagari_municipality_info"
FOREIGN = REGISTRY_YAML.replace(
    'code: "131016"\n    name: 千代田区', 'code: "012025"\n    name: 函館市'
)


def _info(text: str) -> dict[str, dict[str, str]]:
    return {
        dict(labels)["municipality_code"]: dict(labels)
        for (name, labels), value in sample_set(text).items()
        if name == INFO and value == 1.0
    }


def test_info_for_every_registered_municipality_with_a_known_office(tmp_path: Path) -> None:
    registry = parse_registry(FOREIGN, tmp_path / "registry.yaml")
    with Journal(tmp_path / "journal.sqlite") as journal:  # no drill yet: the registry suffices
        info = _info(exposition(journal, registry).decode())
    assert set(info) == {"131211", "133086", "134210"}  # 函館市 is not in the Tokyo table
    okutama = office_places()["133086"]
    assert info["133086"] == {
        "municipality_code": "133086",
        "municipality_name": "奥多摩町",
        "latitude": f"{okutama.latitude:.3f}",
        "longitude": f"{okutama.longitude:.3f}",
        "region": "tama",
    }
    assert info["134210"]["region"] == "ogasawara"


def _geomap_targets() -> list[tuple[str, str, str]]:
    board = json.loads((DASHBOARDS / "grafana/cio-overview.json").read_text(encoding="utf-8"))
    return [
        (p["title"], t["refId"], t["expr"])
        for p in board["panels"]
        if p["type"] == "geomap"
        for t in p["targets"]
    ]


def test_cio_overview_has_the_mainland_and_island_maps() -> None:
    targets = _geomap_targets()
    assert {title for title, _r, _e in targets} == {
        "即応性マップ（23区・多摩）",
        "即応性マップ（島しょ）",
    }
    for _title, ref, expr in targets:
        metric = "tsunagari_readiness_score" if ref == "A" else "tsunagari_channel_reachable"
        assert metric in expr and INFO in expr
        assert "on (municipality_code) group_left (latitude, longitude, region)" in expr


@pytest.mark.servers
@pytest.mark.slow
@pytest.mark.parametrize("title,ref,expr", _geomap_targets(), ids=lambda x: str(x)[:20])
def test_geomap_join_on_the_real_prometheus(world: World, title: str, ref: str, expr: str) -> None:
    result = world.stack.prometheus.query(substitute(expr, {"scenario": ".*", "vantage": ".*"}))
    assert result, f"{title} [{ref}]: no data"
    samples = sample_set(world.exposition)
    islands = "島しょ" in title
    want: dict[str, float] = {}
    for (name, labels), value in samples.items():
        code = dict(labels)["municipality_code"] if "municipality_code" in dict(labels) else None
        place = office_places().get(code or "")
        if place is None or (place.region in ("izu", "ogasawara")) != islands:
            continue
        if ref == "A" and name == "tsunagari_readiness_score":
            want[place.code] = min(value, want.get(place.code, value))
        if ref == "B" and name == "tsunagari_channel_reachable":
            want[place.code] = max(value, want.get(place.code, value))
    got = {}
    for series in result:
        labels = series["metric"]
        place = office_places()[labels["municipality_code"]]
        # the office's position, as labels Grafana turns into numbers
        assert float(labels["latitude"]) == place.latitude
        assert float(labels["longitude"]) == place.longitude
        assert labels["municipality_name"] == place.name
        got[place.code] = float(series["value"][1])
    assert got == want and got  # every municipality with a score (A) or a verdict (B), exactly
