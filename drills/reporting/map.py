"""A map of Tokyo for the HTML scorecard: one dot per municipality, coloured by grade.

Pure: the card and the office table (:func:`drills.core.places.office_places`)
in, an inline SVG string out — no tiles, no fonts, no network. Each
municipality of the card (drilled or not) with a known office is a dot at its
office, in the grade colours of the report (:data:`~drills.reporting.charts.GRADE_COLOURS`)
with the grade letter inside (never colour alone); not tested this drill is
grey; *unreachable* (:func:`unreachable`: no message reached on any channel,
and at least one channel was not reached) gets a black ring and a cross. The
mainland (23区・多摩) is the main frame; the 伊豆諸島 and the 小笠原諸島, far
to the south, are insets. A municipality without a known office is not drawn:
:attr:`TokyoMap.unlocated` lists it, for the report to show under the map.

Projection: equirectangular, longitudes scaled by cos(mid-latitude) of the
frame, each frame fitted into its box keeping the aspect ratio (north up).
Every text that comes from a registry is escaped.

    >>> card = {"municipalities": [{"code": "131211", "name": "足立区", "score": 92.0,
    ...          "grade": "A", "channels": []}], "not_drilled": [
    ...         {"code": "999999", "name": "どこか町"}]}
    >>> m = map_model(card)
    >>> [(p.code, p.grade) for p in m.points], m.unlocated
    ([('131211', 'A')], (('999999', 'どこか町'),))
    >>> map_svg(m, "en").count('class="muni"')
    1
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from html import escape
from typing import Any

from drills.core.i18n import Text
from drills.core.places import Place, office_places
from drills.core.scoring import GRADES, grade_label
from drills.reporting.charts import GRADE_COLOURS

__all__ = ["FRAMES", "Frame", "MapPoint", "TokyoMap", "map_model", "map_svg", "unreachable"]

UNTESTED_COLOUR = "#999999"  # the report's .grade-none
_DARK_TEXT = {"B", "C"}  # letters drawn black on the lighter grade colours (as the report's badges)
WIDTH, HEIGHT = 820, 364
_PAD = 14.0  # inside a frame, around the points
_LABEL_H = 16.0  # the frame's title, above the points
_DOT_R = 6.5
_NAMES_UP_TO = 12  # draw names next to the dots when a frame has at most this many


@dataclass(frozen=True)
class Frame:
    """A part of the map: which regions it shows, its bounds (degrees) and its box (px)."""

    key: str
    ja: str
    en: str
    regions: frozenset[str]
    south: float
    north: float
    west: float
    east: float
    x: float
    y: float
    width: float
    height: float
    grid: float | None = None  # graticule step in degrees (None: no graticule)

    @property
    def _fit(self) -> tuple[float, float, float, float]:
        """(scale px per degree of latitude, cos factor, left, top) of the fitted projection."""
        k = math.cos(math.radians((self.south + self.north) / 2))
        w = (self.east - self.west) * k
        h = self.north - self.south
        inner_w = self.width - 2 * _PAD
        inner_h = self.height - 2 * _PAD - _LABEL_H
        scale = min(inner_w / w, inner_h / h)
        left = self.x + _PAD + (inner_w - w * scale) / 2
        top = self.y + _PAD + _LABEL_H + (inner_h - h * scale) / 2
        return scale, k, left, top

    def project(self, latitude: float, longitude: float) -> tuple[float, float]:
        """SVG (x, y) of a point: east to the right, north up.

        >>> f = FRAMES[0]
        >>> x1, y1 = f.project(35.7, 139.5); x2, y2 = f.project(35.7, 139.6)
        >>> x2 > x1 and y2 == y1
        True
        """
        scale, k, left, top = self._fit
        return (
            round(left + (longitude - self.west) * k * scale, 1),
            round(top + (self.north - latitude) * scale, 1),
        )

    def holds(self, latitude: float, longitude: float) -> bool:
        return self.south <= latitude <= self.north and self.west <= longitude <= self.east


_MAIN_H = 300.0
FRAMES: tuple[Frame, ...] = (
    Frame(
        "mainland",
        "23区・多摩",
        "23 wards and Tama",
        frozenset({"pref", "ku", "tama"}),
        35.50,
        35.86,
        139.04,
        139.92,
        0,
        0,
        590,
        _MAIN_H,
        grid=0.1,
    ),
    Frame(
        "izu",
        "伊豆諸島",
        "Izu Islands",
        frozenset({"izu"}),
        32.40,
        34.82,
        139.08,
        139.86,
        598,
        0,
        128,
        _MAIN_H,
    ),
    Frame(
        "ogasawara",
        "小笠原諸島",
        "Ogasawara",
        frozenset({"ogasawara"}),
        26.55,
        27.75,
        142.05,
        142.30,
        734,
        0,
        86,
        _MAIN_H / 2,
    ),
)


@dataclass(frozen=True)
class MapPoint:
    """One dot: the municipality, its grade and score this drill, and where it is."""

    code: str
    name: str
    grade: str | None
    score: float | None
    unreachable: bool
    place: Place
    name_en: str | None = None


@dataclass(frozen=True)
class TokyoMap:
    """The dots, and the municipalities with no known office (code, name)."""

    points: tuple[MapPoint, ...]
    unlocated: tuple[tuple[str, str], ...]


def unreachable(municipality: Mapping[str, Any]) -> bool:
    """No message of this drill reached the municipality on any channel.

    Not one delivered or late message on any channel, and at least one channel
    not reached (status ``down``): a channel only accepted (unconfirmed) does
    not prove the municipality unreachable on its own. The metric's view is the
    same: ``max by (municipality_code) (tsunagari_channel_reachable) == 0``.

    >>> unreachable({"channels": [{"delivered": 0, "late": 0, "status": "down"},
    ...                           {"delivered": 0, "late": 0, "status": "unconfirmed"}]})
    True
    >>> unreachable({"channels": [{"delivered": 0, "late": 0, "status": "unconfirmed"}]})
    False
    """
    channels = municipality.get("channels") or []
    reached = sum(c["delivered"] + c["late"] for c in channels)
    return reached == 0 and any(c["status"] == "down" for c in channels)


def map_model(card: Mapping[str, Any], places: Mapping[str, Place] | None = None) -> TokyoMap:
    """The dots of *card*'s municipalities (drilled ones first, then those not drilled)."""
    places = office_places() if places is None else places
    points: list[MapPoint] = []
    unlocated: list[tuple[str, str]] = []
    rows = [(m, True) for m in card["municipalities"]]
    rows += [(m, False) for m in card.get("not_drilled") or []]
    for m, drilled in rows:
        place = places.get(m["code"])
        if place is None:
            unlocated.append((m["code"], m["name"]))
            continue
        points.append(
            MapPoint(
                m["code"],
                m["name"],
                m.get("grade") if drilled else None,
                m.get("score") if drilled else None,
                drilled and unreachable(m),
                place,
                m.get("name_en"),
            )
        )
    return TokyoMap(tuple(points), tuple(unlocated))


def _frame_of(place: Place) -> Frame:
    return next(f for f in FRAMES if place.region in f.regions)


def _title(p: MapPoint, t: Text) -> str:
    name = p.name if t.lang == "ja" or not p.name_en else f"{p.name_en} ({p.name})"
    if p.grade is None:
        state = t("未測定（今回の訓練で測っていない）", "not tested in this drill")
    else:
        score = "—" if p.score is None else f"{p.score:.1f}"
        state = t(
            f"評価 {p.grade} {grade_label(p.grade, 'ja')}・{score} 点",
            f"grade {p.grade} {grade_label(p.grade, 'en')}, score {score}",
        )
    if p.unreachable:
        state += t("・不通（どのチャネルにも届かず）", "; unreachable (nothing reached)")
    return f"{name} {p.code}: {state}"


def _marker(x: float, y: float, letter: str, colour: str, dark: bool, cut: bool) -> list[str]:
    ink = "#000" if dark else "#fff"
    out = [
        f'<circle cx="{x}" cy="{y}" r="{_DOT_R}" fill="{colour}" stroke="#fff" stroke-width="1"/>',
        f'<text x="{x}" y="{y + 3}" text-anchor="middle" font-size="8.5" font-weight="700" '
        f'fill="{ink}">{escape(letter)}</text>',
    ]
    if cut:  # unreachable: a ring and a cross
        r, c = _DOT_R + 3, _DOT_R + 1
        out += [
            f'<circle class="ring" cx="{x}" cy="{y}" r="{r}" fill="none" stroke="#000" '
            'stroke-width="2"/>',
            f'<path d="M{x + c} {y - c - 6}l6 6m0 -6l-6 6" stroke="#000" stroke-width="2"/>',
        ]
    return out


_Box = tuple[float, float, float, float]  # x0, y0, x1, y1


def _text_width(text: str, size: float) -> float:
    """Rough width of *text* at *size* px: full width for CJK, about 0.6 em for the rest."""
    return sum(size if ord(ch) > 0x2E7F else 0.6 * size for ch in text)


def _overlaps(a: _Box, b: _Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _name_spot(
    x: float, y: float, text: str, frame: Frame, taken: list[_Box]
) -> tuple[float, float, str]:
    """Where the name of the dot at (x, y) goes: right, left, below or above it —
    the first spot inside the frame that covers no other name or dot."""
    w, size, gap = _text_width(text, 10), 10.0, _DOT_R + 3
    spots = (
        (x + gap, y + 3.5, "start", (x + gap, y - 6, x + gap + w, y + 5)),
        (x - gap, y + 3.5, "end", (x - gap - w, y - 6, x - gap, y + 5)),
        (x, y + gap + size, "middle", (x - w / 2, y + gap, x + w / 2, y + gap + size + 1)),
        (x, y - gap - 2, "middle", (x - w / 2, y - gap - size - 1, x + w / 2, y - gap)),
    )
    inside = [
        s
        for s in spots
        if frame.x <= s[3][0]
        and s[3][2] <= frame.x + frame.width
        and frame.y + _LABEL_H <= s[3][1]
        and s[3][3] <= frame.y + frame.height
    ]
    free = [s for s in inside if not any(_overlaps(s[3], b) for b in taken)]
    tx, ty, anchor, box = (free or inside or spots)[0]
    taken.append(box)
    return tx, ty, anchor


def _point(p: MapPoint, t: Text, taken: list[_Box] | None) -> list[str]:
    """The dot of *p*; with *taken* (boxes already covered), its name next to it."""
    frame = _frame_of(p.place)
    x, y = frame.project(p.place.latitude, p.place.longitude)
    colour = GRADE_COLOURS.get(p.grade or "", UNTESTED_COLOUR)
    state = "unreachable" if p.unreachable else ("graded" if p.grade else "untested")
    out = [
        f'<g class="muni" data-code="{escape(p.code)}" data-grade="{escape(p.grade or "")}" '
        f'data-state="{state}" data-region="{escape(p.place.region)}">',
        f"<title>{escape(_title(p, t))}</title>",
        *_marker(x, y, p.grade or "–", colour, p.grade in _DARK_TEXT, p.unreachable),
    ]
    if taken is not None:
        tx, ty, anchor = _name_spot(x, y, p.name, frame, taken)
        out.append(
            f'<text x="{tx}" y="{ty}" text-anchor="{anchor}" font-size="10" '
            f'fill="#1a1a1a">{escape(p.name)}</text>'
        )
    out.append("</g>")
    return out


def _frame(frame: Frame, t: Text) -> list[str]:
    out = [
        f'<g class="frame" data-frame="{frame.key}">',
        f'<rect x="{frame.x + 0.5}" y="{frame.y + 0.5}" width="{frame.width - 1}" '
        f'height="{frame.height - 1}" fill="#f7f9fb" stroke="#8a8a8a"/>',
        f'<text x="{frame.x + 6}" y="{frame.y + 14}" font-size="11" font-weight="600" '
        f'fill="#333">{escape(t(frame.ja, frame.en))}</text>',
    ]
    if frame.grid:
        out += _graticule(frame)
    out.append("</g>")
    return out


def _graticule(frame: Frame) -> list[str]:
    step = frame.grid or 1.0
    out = []
    lon = math.ceil(frame.west / step) * step
    while lon <= frame.east:
        (x, y1), (_x, y2) = frame.project(frame.north, lon), frame.project(frame.south, lon)
        out.append(f'<line x1="{x}" y1="{y1}" x2="{x}" y2="{y2}" stroke="#dde3ea"/>')
        out.append(
            f'<text x="{x}" y="{frame.y + frame.height - 4}" text-anchor="middle" '
            f'font-size="8" fill="#777">{lon:.1f}°E</text>'
        )
        lon = round(lon + step, 6)
    lat = math.ceil(frame.south / step) * step
    while lat <= frame.north:
        (x1, y), (x2, _y) = frame.project(lat, frame.west), frame.project(lat, frame.east)
        out.append(f'<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" stroke="#dde3ea"/>')
        out.append(
            f'<text x="{frame.x + 4}" y="{y - 2}" font-size="8" fill="#777">{lat:.1f}°N</text>'
        )
        lat = round(lat + step, 6)
    return out


def _legend(y: float) -> list[str]:
    """Both languages, whatever the page's: the map may be cut out and shared."""
    items = [
        (letter, GRADE_COLOURS[letter], letter in _DARK_TEXT, False, f"{letter} {ja} / {en}")
        for _b, letter, ja, en in GRADES
    ]
    items.append(("–", UNTESTED_COLOUR, False, False, "未測定 / not tested"))
    items.append(("", "#ffffff", True, True, "不通（どのチャネルにも届かず）/ unreachable"))
    out = ['<g class="legend">']
    for i, (letter, colour, dark, cut, text) in enumerate(items):
        col, row = i % 3, i // 3
        x, yy = 14 + col * 270, y + 14 + row * 24
        out += _marker(x, yy, letter, colour, dark, cut)
        out.append(
            f'<text x="{x + 18}" y="{yy + 4}" font-size="11" fill="#1a1a1a">{escape(text)}</text>'
        )
    out.append("</g>")
    return out


def map_svg(model: TokyoMap, lang: str = "ja") -> str:
    """The map as one ``<svg>`` element (inline in the HTML report)."""
    t = Text(lang)
    label = t(
        "東京都の地図：団体ごとの評価（役所・役場の位置）",
        "Map of Tokyo: each municipality's grade, at its office",
    )
    per_frame = {f.key: sum(_frame_of(p.place) is f for p in model.points) for f in FRAMES}
    dots: list[_Box] = []
    for p in model.points:
        x, y = _frame_of(p.place).project(p.place.latitude, p.place.longitude)
        dots.append((x - _DOT_R, y - _DOT_R, x + _DOT_R, y + _DOT_R))
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="map" role="img" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'aria-label="{escape(label)}" font-family="sans-serif">',
        f"<title>{escape(label)}</title>",
    ]
    for frame in FRAMES:
        out += _frame(frame, t)
    for p in model.points:
        named = per_frame[_frame_of(p.place).key] <= _NAMES_UP_TO
        out += _point(p, t, dots if named else None)
    out += _legend(_MAIN_H + 4)
    out.append("</svg>")
    return "\n".join(out)
