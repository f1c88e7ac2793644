"""The shipped office-location table (drills/data/municipal_offices.csv): gross errors caught.

The coordinates were entered by hand; these checks catch a swapped latitude and
longitude, a digit slip of 0.1° or more that moves a point out of its part of
Tokyo, a ward placed on the wrong side of another, and a wrong code.
"""

from __future__ import annotations

import pytest

from drills.core.places import REGIONS, office_places, parse_places
from drills.core.registry import check_digit_ok
from drills.core.registry.loader import load_registry
from drills.operator.demo import demo_registry_path

# (south, north, west, east) of each region, generous but tight enough to catch slips
AREAS = {
    "pref": (35.52, 35.82, 139.56, 139.92),
    "ku": (35.52, 35.82, 139.56, 139.92),
    "tama": (35.53, 35.90, 138.94, 139.60),  # 町田市 reaches south of 35.6 (office 35.548)
    "izu": (32.4, 34.8, 139.1, 140.0),
    "ogasawara": (26.5, 27.8, 142.0, 142.4),
}

# (a, b): a is east of b / north of b — well-known relative positions of the offices
EAST_OF = [
    ("江戸川区", "千代田区"),
    ("葛飾区", "足立区"),
    ("千代田区", "新宿区"),
    ("新宿区", "杉並区"),
    ("三鷹市", "府中市"),
    ("八王子市", "奥多摩町"),
    ("立川市", "青梅市"),
    ("御蔵島村", "神津島村"),
]
NORTH_OF = [
    ("練馬区", "品川区"),
    ("足立区", "江東区"),
    ("北区", "大田区"),
    ("青梅市", "町田市"),
    ("清瀬市", "調布市"),
    ("大島町", "八丈町"),
    ("八丈町", "青ヶ島村"),
    ("青ヶ島村", "小笠原村"),
]


@pytest.fixture(scope="module")
def by_name():
    return {p.name: p for p in office_places().values()}


def test_every_tokyo_municipality_and_the_prefecture_once():
    places = office_places()
    assert len(places) == 63
    counts = {r: sum(p.region == r for p in places.values()) for r in REGIONS}
    # 23 wards; 26 cities + 3 towns + 1 village in Tama; 9 island towns and villages
    assert counts == {"pref": 1, "ku": 23, "tama": 30, "izu": 8, "ogasawara": 1}
    assert len({p.name for p in places.values()}) == 63


def test_codes_are_tokyo_codes_with_valid_check_digits():
    for code, place in office_places().items():
        assert code == place.code and code.startswith("13"), code
        assert check_digit_ok(code), f"{code} {place.name}: bad check digit"
    assert office_places()["130001"].name == "東京都"
    assert office_places()["131016"].name == "千代田区"
    assert office_places()["134210"].name == "小笠原村"


def test_every_point_lies_in_its_region():
    for place in office_places().values():
        south, north, west, east = AREAS[place.region]
        assert south <= place.latitude <= north, place
        assert west <= place.longitude <= east, place
        # given to 0.001° as the header says
        assert round(place.latitude, 3) == place.latitude, place
        assert round(place.longitude, 3) == place.longitude, place


@pytest.mark.parametrize("east,west", EAST_OF)
def test_east_of(by_name, east, west):
    assert by_name[east].longitude > by_name[west].longitude


@pytest.mark.parametrize("north,south", NORTH_OF)
def test_north_of(by_name, north, south):
    assert by_name[north].latitude > by_name[south].latitude


def test_the_demo_registry_is_on_the_map():
    registry = load_registry(demo_registry_path(), check_secrets=False)
    assert all(m.code in office_places() for m in registry.municipalities)


@pytest.mark.parametrize(
    "row,words",
    [
        ("131016,千代田区,north,139.754,ku", "line 3"),
        ("131016,千代田区,35.694,139.754,kanto", "unknown region"),
        ("131016,千代田区,35.694", "line 3"),
    ],
)
def test_a_bad_row_names_its_line(row, words):
    text = "# comment\ncode,name,latitude,longitude,region\n" + row + "\n"
    with pytest.raises(ValueError) as err:
        parse_places(text, "offices.csv")
    message = str(err.value)
    assert message.startswith("offices.csv 3 行目") and words in message


def test_the_all_tokyo_registry_is_on_the_map_name_for_name():
    from drills.core.prefectures import prefecture_registry
    from drills.core.registry import parse_registry

    tokyo = parse_registry(prefecture_registry("13"), "tokyo.yaml", check_secrets=False)
    assert {m.code: m.name for m in tokyo.municipalities} == {
        code: place.name for code, place in office_places().items()
    }
