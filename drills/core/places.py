"""Where each Tokyo municipality's office is: the shipped table, read once.

``drills/data/municipal_offices.csv`` gives the latitude and longitude of the
office (役所・役場) of the 62 Tokyo municipalities and of 東京都庁, keyed by
全国地方公共団体コード, with a region (its source and precision are in its
header). The HTML map (:mod:`drills.reporting.map`) and the
``tsunagari_municipality_info`` metric both read it here; a municipality of the
registry that is not in the table simply has no place (the map lists it as
位置不明, the metric leaves it out).

    >>> place = office_places()["131211"]
    >>> place.name, place.region, REGIONS[place.region]
    ('足立区', 'ku', ('23区', '23 special wards'))
"""

from __future__ import annotations

import csv
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files

__all__ = ["OFFICES_FILE", "REGIONS", "Place", "office_places", "parse_places"]

OFFICES_FILE = "municipal_offices.csv"

# region key -> (Japanese, English); the order is the map's (mainland first)
REGIONS: dict[str, tuple[str, str]] = {
    "pref": ("東京都庁", "Tokyo Metropolitan Government"),
    "ku": ("23区", "23 special wards"),
    "tama": ("多摩", "Tama"),
    "izu": ("伊豆諸島", "Izu Islands"),
    "ogasawara": ("小笠原諸島", "Ogasawara Islands"),
}


@dataclass(frozen=True)
class Place:
    """The office of one municipality: code, Japanese name, position (degrees), region."""

    code: str
    name: str
    latitude: float
    longitude: float
    region: str


def parse_places(text: str, source: str = OFFICES_FILE) -> dict[str, Place]:
    """The places of a table in the shipped format (``#`` lines are comments), by code.

    >>> parse_places("# c\\ncode,name,latitude,longitude,region\\n130001,東京都,35.69,139.692,pref")
    {'130001': Place(code='130001', name='東京都', latitude=35.69, longitude=139.692, region='pref')}
    """
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if not line.startswith("#")]
    reader = csv.DictReader(line for _n, line in lines)
    out: dict[str, Place] = {}
    for (lineno, _line), row in zip(lines[1:], reader, strict=False):
        try:
            place = Place(
                row["code"],
                row["name"],
                float(row["latitude"]),
                float(row["longitude"]),
                row["region"],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"{source} {lineno} 行目: 読めません / line {lineno}: unreadable ({exc})"
            ) from exc
        if place.region not in REGIONS or place.code in out:
            raise ValueError(
                f"{source} {lineno} 行目: 地域か団体コードが不正です / line {lineno}: "
                f"unknown region {place.region!r} or repeated code {place.code}"
            )
        out[place.code] = place
    return out


@functools.cache
def office_places() -> Mapping[str, Place]:
    """The shipped table (read on first use, then kept)."""
    text = (files("drills") / "data" / OFFICES_FILE).read_text(encoding="utf-8")
    return parse_places(text)
