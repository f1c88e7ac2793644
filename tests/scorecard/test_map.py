"""The map of the HTML scorecard (drills.reporting.map): projection, insets, marks, escaping."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest

from drills.core.places import Place, office_places
from drills.reporting.charts import GRADE_COLOURS
from drills.reporting.html import render_html
from drills.reporting.map import (
    FRAMES,
    HEIGHT,
    UNTESTED_COLOUR,
    WIDTH,
    map_model,
    map_svg,
    unreachable,
)
from drills.reporting.scorecard import build_scorecard

SVG = "{http://www.w3.org/2000/svg}"


def _card(rows, not_drilled=()):
    return {"municipalities": list(rows), "not_drilled": list(not_drilled)}


def _muni(code, name, score, grade, channels=None):
    ch = channels if channels is not None else [{"delivered": 5, "late": 0, "status": "ok"}]
    return {"code": code, "name": name, "score": score, "grade": grade, "channels": ch}


def _every_place_card():
    grades = [(95.0, "A"), (80.0, "B"), (60.0, "C"), (20.0, "D")]
    rows = [
        _muni(code, p.name, *grades[i % 4]) for i, (code, p) in enumerate(office_places().items())
    ]
    return _card(rows)


def _dots(svg: str) -> list[ET.Element]:
    root = ET.fromstring(svg)  # well-formed XML: every text was escaped
    return [g for g in root.iter(f"{SVG}g") if g.get("class") == "muni"]


def _xy(dot: ET.Element) -> tuple[float, float]:
    circle = dot.find(f"{SVG}circle")
    assert circle is not None
    return float(circle.get("cx")), float(circle.get("cy"))


def test_projection_scales_longitude_by_the_cosine_of_latitude():
    main = FRAMES[0]
    lat0 = (main.south + main.north) / 2
    x0, y0 = main.project(lat0, 139.5)
    x1, _ = main.project(lat0, 139.6)  # 0.1° east
    _, y1 = main.project(lat0 - 0.1, 139.5)  # 0.1° south
    assert y1 > y0 and x1 > x0  # north up, east right
    assert (x1 - x0) / (y1 - y0) == pytest.approx(math.cos(math.radians(lat0)), abs=0.02)


def test_each_frame_fits_its_box_and_the_boxes_do_not_overlap():
    for f in FRAMES:
        corners = [f.project(lat, lon) for lat in (f.south, f.north) for lon in (f.west, f.east)]
        assert all(f.x <= x <= f.x + f.width and f.y <= y <= f.y + f.height for x, y in corners)
        assert f.x + f.width <= WIDTH and f.y + f.height <= HEIGHT
    for a in FRAMES:
        for b in FRAMES:
            if a is not b:
                assert (
                    a.x + a.width <= b.x
                    or b.x + b.width <= a.x
                    or (a.y + a.height <= b.y or b.y + b.height <= a.y)
                ), (a.key, b.key)


def test_every_office_lands_in_its_frame_and_the_islands_in_insets():
    svg = map_svg(map_model(_every_place_card()), "ja")
    dots = _dots(svg)
    assert len(dots) == 63
    frames = {f.key: f for f in FRAMES}
    where = {"pref": "mainland", "ku": "mainland", "tama": "mainland", "izu": "izu"}
    for dot in dots:
        frame = frames[where.get(dot.get("data-region"), "ogasawara")]
        x, y = _xy(dot)
        assert frame.x < x < frame.x + frame.width and frame.y < y < frame.y + frame.height
    # the mainland is drawn big, the islands small: 23区 is wider than the Izu islands' inset
    by_code = {d.get("data-code"): _xy(d) for d in dots}
    assert by_code["131237"][0] - by_code["131016"][0] > 50  # 江戸川区 well east of 千代田区
    assert by_code["133612"][1] < by_code["134015"][1]  # 大島町 above (north of) 八丈町
    # every inset is labelled
    root = ET.fromstring(svg)
    labels = {
        g.get("data-frame"): g.find(f"{SVG}text").text
        for g in root.iter(f"{SVG}g")
        if g.get("class") == "frame"
    }
    assert labels == {"mainland": "23区・多摩", "izu": "伊豆諸島", "ogasawara": "小笠原諸島"}


def test_dots_are_coloured_by_grade_unreachable_marked_untested_grey():
    down = [{"delivered": 0, "late": 0, "status": "down"}]
    card = _card(
        [
            _muni("131016", "千代田区", 95.0, "A"),
            _muni("131211", "足立区", 10.0, "D", down),
            _muni(
                "131041",
                "新宿区",
                30.0,
                "D",
                [{"delivered": 0, "late": 0, "status": "unconfirmed"}],
            ),
        ],
        [{"code": "132012", "name": "八王子市"}],
    )
    dots = {d.get("data-code"): d for d in _dots(map_svg(map_model(card), "en"))}
    fill = {c: d.find(f"{SVG}circle").get("fill") for c, d in dots.items()}
    assert fill == {
        "131016": GRADE_COLOURS["A"],
        "131211": GRADE_COLOURS["D"],
        "131041": GRADE_COLOURS["D"],
        "132012": UNTESTED_COLOUR,
    }
    states = {c: d.get("data-state") for c, d in dots.items()}
    assert states == {
        "131016": "graded",
        "131211": "unreachable",
        "131041": "graded",  # accepted only: not known to be unreachable
        "132012": "untested",
    }
    rings = {c for c, d in dots.items() if any(e.get("class") == "ring" for e in d)}
    assert rings == {"131211"}
    titles = {c: d.find(f"{SVG}title").text for c, d in dots.items()}
    assert titles["131016"] == "千代田区 131016: grade A ready, score 95.0"
    assert "unreachable" in titles["131211"]
    assert titles["132012"].endswith("not tested in this drill")


def test_unreachable_needs_a_channel_that_was_not_reached():
    assert not unreachable({"channels": []})
    assert not unreachable(
        {"channels": [{"delivered": 0, "late": 1, "status": "partial"}, _down()]}
    )
    assert unreachable({"channels": [_down(), _down()]})


def _down():
    return {"delivered": 0, "late": 0, "status": "down"}


def test_registry_text_is_escaped():
    evil = '<script>alert("x")</script>&区'
    card = _card([_muni("131016", evil, 95.0, "A")], [{"code": "999999", "name": evil}])
    model = map_model(card)
    assert model.unlocated == (("999999", evil),)
    svg = map_svg(model, "ja")
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    (dot,) = _dots(svg)
    assert dot.find(f"{SVG}title").text.startswith(evil)  # the parser reads back the original
    # a place table with a hostile region or code cannot break out either
    odd = {'1"><x': Place('1"><x', "x", 35.7, 139.7, "ku")}
    svg = map_svg(map_model(_card([_muni('1"><x', "x", 50.0, "C")]), odd))
    assert _dots(svg)[0].get("data-code") == '1"><x'


def test_the_legend_is_bilingual_whatever_the_language():
    for lang in ("ja", "en"):
        svg = map_svg(map_model(_every_place_card()), lang)
        legend = next(g for g in ET.fromstring(svg).iter(f"{SVG}g") if g.get("class") == "legend")
        texts = [t.text for t in legend.iter(f"{SVG}text") if t.text and len(t.text) > 2]
        assert texts == [
            "A 良好 / ready",
            "B 概ね良好 / mostly ready",
            "C 要改善 / needs work",
            "D 危険 / at risk",
            "未測定 / not tested",
            "不通（どのチャネルにも届かず）/ unreachable",
        ]


def test_names_are_drawn_only_where_they_fit():
    few = _card([_muni("131016", "千代田区", 95.0, "A"), _muni("134210", "小笠原村", 60.0, "C")])
    svg = map_svg(map_model(few), "ja")
    assert ">千代田区</text>" in svg and ">小笠原村</text>" in svg
    crowded = map_svg(map_model(_every_place_card()), "ja")
    assert ">千代田区</text>" not in crowded  # 54 on the mainland: hover titles only
    assert ">八丈町</text>" in crowded  # 8 in the Izu inset: named


def test_report_has_the_map_and_lists_the_unlocated(sample_journal, registry):
    card = build_scorecard(*sample_journal, registry)
    card["not_drilled"].append({**card["not_drilled"][0], "code": "012025", "name": "函館市"})
    html = render_html(card, "ja", charts=False)
    assert '<section id="map" data-points="5">' in html
    assert html.count('class="muni"') == 5
    flat = " ".join(html.split())
    assert '位置不明（地図にない団体）: <span data-code="012025">012025 函館市</span>' in flat
    # a registry with no Tokyo municipality: no empty map
    for m in card["municipalities"] + card["not_drilled"]:
        m["code"] = "01" + m["code"][2:]
    assert 'id="map"' not in render_html(card, "en", charts=False)


@pytest.mark.parametrize("module", ["drills.reporting.map", "drills.core.places"])
def test_docstring_examples(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
