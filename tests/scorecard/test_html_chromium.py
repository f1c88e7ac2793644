"""The HTML scorecard in a real headless Chromium (Debian ``chromium``), over CDP.

The test reads the rendered DOM (table rows, scores, the "worse since last
time" section), checks ``lang`` and the table headers, records every network
request (anything but the file itself fails), checks that the page fits A4
when printed, and saves a PNG screenshot and the A4 PDF under
``test-artifacts/scorecard/``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import struct
from pathlib import Path

import pytest
import pytest_asyncio
from scorecard_cdp import Chromium, Page
from standing_sample import fill_standing_drill

from drills.core.journal import Journal
from drills.reporting.html import render_html
from drills.reporting.scorecard import build_scorecard
from drills.surge.report import curve_columns, curve_rows, verdict
from probes.sim.base import closed_port

pytestmark = [
    pytest.mark.servers,
    pytest.mark.asyncio(loop_scope="module"),
]

ARTIFACTS = (
    Path(
        os.environ.get(
            "TSUNAGARI_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"
        )
    )
    / "scorecard"
)
A4_PRINTABLE_PX = 703  # (210 mm − 2 × 12 mm margins) at 96 px per inch

READ_DOM = r"""
(() => {
  const text = e => e ? e.textContent.trim().replace(/\s+/g, ' ') : null;
  const rows = sel => [...document.querySelectorAll(sel)];
  return {
    lang: document.documentElement.lang,
    title: document.title,
    sections: rows('main > section').map(s => s.id),
    headers: rows('#readiness thead th').map(text),
    rows: rows('#readiness tbody tr').map(tr => ({
      code: tr.dataset.code, grade: tr.dataset.grade, score: text(tr.querySelector('.score')),
      cells: [...tr.querySelectorAll('td')].map(text),
      statuses: [...tr.querySelectorAll('td.ch')].map(td => td.dataset.status)})),
    worseHeading: text(document.querySelector('#worse h2')),
    worse: rows('#worse tbody tr').map(tr => ({code: tr.dataset.code, channel: tr.dataset.channel,
                                               cells: [...tr.querySelectorAll('td')].map(text)})),
    overall: text(document.querySelector('#overall .big')),
    charts: rows('svg.chart').map(s => ({label: s.getAttribute('aria-label'),
                                         w: s.getBoundingClientRect().width,
                                         h: s.getBoundingClientRect().height})),
    notDrilled: rows('#not-drilled tbody tr').map(tr => [tr.dataset.code, tr.dataset.freshness]),
    scripts: document.scripts.length,
  };
})()
"""

# The map (drills.reporting.map): its dots as drawn, with their boxes on the page.
READ_MAP = r"""
(() => {
  const svg = document.querySelector('#map svg.map');
  if (!svg) return null;
  const box = e => { const r = e.getBoundingClientRect();
                     return {x0: r.left, y0: r.top, x1: r.right, y1: r.bottom}; };
  const frames = {};
  for (const g of svg.querySelectorAll('g.frame')) frames[g.dataset.frame] = box(g.querySelector('rect'));
  return {
    points: svg.closest('section').dataset.points, svg: box(svg), frames,
    dots: [...svg.querySelectorAll('g.muni')].map(g => ({
      code: g.dataset.code, state: g.dataset.state, region: g.dataset.region,
      title: g.querySelector('title').textContent, box: box(g.querySelector('circle')),
      fill: g.querySelector('circle').getAttribute('fill'),
      ring: !!g.querySelector('circle.ring')})),
    unlocated: [...document.querySelectorAll('#map-unlocated span')].map(e => e.dataset.code),
  };
})()
"""
FRAME_OF = {"pref": "mainland", "ku": "mainland", "tama": "mainland", "izu": "izu"}


def inside(inner: dict, outer: dict) -> bool:
    return (
        outer["x0"] <= inner["x0"] < inner["x1"] <= outer["x1"]
        and outer["y0"] <= inner["y0"] < inner["y1"] <= outer["y1"]
    )


WIDEST = (
    "Math.max(...[...document.querySelectorAll('body *')]"
    ".map(e => e.getBoundingClientRect().right))"
)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser(tmp_path_factory):
    # No skip when chromium is missing: the README's test command installs it.
    async with Chromium.launch(tmp_path_factory.mktemp("chromium")) as b:
        yield b


@pytest.fixture
def card(sample_journal, registry):
    journal, run_id = sample_journal
    return build_scorecard(journal, run_id, registry)


def outside_activity(page: Page, own_url: str) -> list[str]:
    """Requests to anything but the page itself, and errors such as CSP violations."""
    found = [f"request {r['url']}" for r in page.requests if r["url"] != own_url]
    found += [
        f"log {e.get('level')}: {e.get('text')}"
        for e in page.logs
        if e.get("level") in ("error", "warning")
    ]
    return found


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


EXPECTED_HEADERS = {
    "ja": ["団体コード", "団体名", "点数", "評価", "前回比", "chat", "mail", "sms"],
    "en": ["Code", "Municipality", "Score", "Grade", "vs last", "chat", "mail", "sms"],
}


@pytest.mark.parametrize("lang", ["ja", "en"])
async def test_rendered_dom_and_no_requests(browser, card, tmp_path, lang):
    path = tmp_path / f"scorecard.{lang}.html"
    path.write_text(render_html(card, lang), encoding="utf-8")
    url = path.as_uri()
    async with browser.page() as page:
        await page.goto(url)
        dom = await page.evaluate(READ_DOM)
        tokyo = await page.evaluate(READ_MAP)
        shot = await page.screenshot()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / f"scorecard.{lang}.png").write_bytes(shot)
        shutil.copy(path, ARTIFACTS / path.name)

        assert outside_activity(page, url) == []
        assert [r["url"] for r in page.requests] == [url]

    assert dom["lang"] == lang
    assert dom["headers"] == EXPECTED_HEADERS[lang]
    assert dom["sections"][0] == "worse", "the report must open with what got worse"
    assert (
        dom["worseHeading"]
        == {"ja": "前回から悪化した項目", "en": "What got worse since the last drill"}[lang]
    )
    assert dom["scripts"] == 0
    # rows and scores as in the card
    assert [(r["code"], r["grade"], r["score"]) for r in dom["rows"]] == [
        (m["code"], m["grade"], f"{m['score']:.1f}") for m in card["municipalities"]
    ]
    adachi = dom["rows"][0]
    assert adachi["statuses"] == ["ok", "partial", "unconfirmed"]
    sms_cell = adachi["cells"][-1]
    assert (
        sms_cell.startswith("? 0/10")
        and ("未確認10" if lang == "ja" else "unconfirmed 10") in sms_cell
    )
    # the worse section lists exactly the worsened entries, largest fall first
    assert [(w["code"], w["channel"] or None) for w in dom["worse"]] == [
        (e["code"], e["channel"]) for e in card["comparison"]["worsened"]
    ]
    assert dom["worse"][1]["cells"][5] == "−100.0"
    assert dom["overall"] == "79.5"
    assert dom["notDrilled"] == [["132012", "overdue"], ["133086", "never"]]
    assert len(dom["charts"]) == 2 and all(c["w"] > 300 and c["h"] > 100 for c in dom["charts"])
    width, height = png_size(shot)
    assert width >= 1000 and height > 1000
    # the map: one dot per municipality of the registry (all five are Tokyo codes), drawn
    drilled = {m["code"]: m["grade"] for m in card["municipalities"]}
    assert {d["code"]: d["state"] for d in tokyo["dots"]} == {
        **{c: "graded" for c in drilled},
        "132012": "untested",
        "133086": "untested",
    }
    assert tokyo["points"] == "5" and tokyo["unlocated"] == []
    assert all(inside(d["box"], tokyo["svg"]) for d in tokyo["dots"])


async def test_map_of_all_tokyo_renders_and_stays_offline(browser, card, tmp_path):
    """Every Tokyo municipality on the map (the sample's five plus the rest, not drilled),
    one unreachable, one with no known office: drawn in its frame, nothing fetched."""
    from drills.core.places import office_places

    template = card["not_drilled"][0]
    known = {m["code"] for m in card["municipalities"] + card["not_drilled"]}
    for code, place in office_places().items():
        if code not in known:
            card["not_drilled"].append({**template, "code": code, "name": place.name})
    card["not_drilled"].append({**template, "code": "012025", "name": "<b>函館市</b>"})
    ogasawara = next(m for m in card["municipalities"] if m["code"] == "134210")
    for ch in ogasawara["channels"]:  # as if nothing had reached 小笠原村
        ch.update(delivered=0, late=0, status="down")
    path = tmp_path / "scorecard-tokyo.html"
    path.write_text(render_html(card, "ja", charts=False), encoding="utf-8")
    async with browser.page() as page:
        await page.goto(path.as_uri())
        tokyo = await page.evaluate(READ_MAP)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "scorecard-map.ja.png").write_bytes(await page.screenshot())
        assert outside_activity(page, path.as_uri()) == []
        assert [r["url"] for r in page.requests] == [path.as_uri()]
    assert tokyo["points"] == "63" and len(tokyo["dots"]) == 63
    assert len({d["code"] for d in tokyo["dots"]}) == 63
    assert tokyo["unlocated"] == ["012025"]
    for dot in tokyo["dots"]:
        frame = tokyo["frames"][FRAME_OF.get(dot["region"], "ogasawara")]
        assert inside(dot["box"], frame), dot
    marked = {d["code"]: (d["state"], d["ring"]) for d in tokyo["dots"] if d["ring"]}
    assert marked == {"134210": ("unreachable", True)}
    assert next(d for d in tokyo["dots"] if d["code"] == "134210")["title"].startswith(
        "小笠原村 134210: 評価 C"
    )


@pytest.mark.parametrize("name", ["scorecard", "scorecard-surge", "scorecard-standing"])
async def test_prints_on_a4(browser, card, surge_journal, registry, tmp_path, name):
    if name == "scorecard-surge":  # a run with surges: two ramp tables more
        card = build_scorecard(*surge_journal, registry)
    if name == "scorecard-standing":  # 12 compared: the comparison's table per channel kind
        with Journal(tmp_path / "standing.sqlite") as journal:
            card = build_scorecard(journal, fill_standing_drill(journal))
    path = tmp_path / f"{name}.print.html"
    path.write_text(render_html(card, "ja"), encoding="utf-8")
    async with browser.page(width=A4_PRINTABLE_PX, height=1000) as page:
        await page.send("Emulation.setEmulatedMedia", {"media": "print"})
        await page.goto(path.as_uri())
        widest = await page.evaluate(WIDEST)
        client = await page.evaluate("document.documentElement.clientWidth")
        pdf = await page.print_pdf()
        assert outside_activity(page, path.as_uri()) == []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"{name}.ja.pdf").write_bytes(pdf)
    assert widest <= client, f"content {widest}px is wider than the A4 printable width {client}px"
    assert pdf.startswith(b"%PDF")
    boxes = re.findall(rb"/MediaBox \[0 0 ([\d.]+) ([\d.]+)\]", pdf)
    assert boxes and all(
        abs(float(w) - 595) < 1 and abs(float(h) - 842) < 1 for w, h in boxes
    )  # A4 in pt
    pages = int(re.findall(rb"/Count (\d+)", pdf)[0])
    # 13 municipalities: 3 pages without the comparison, whose three tables take one more
    assert 1 <= pages <= (4 if name == "scorecard-standing" else 3)


READ_SURGE = r"""
(() => {
  const text = e => e ? e.textContent.trim().replace(/\s+/g, ' ') : null;
  return [...document.querySelectorAll('#surge .surge')].map(d => ({
    code: d.dataset.code, channel: d.dataset.channel, held: d.dataset.held,
    heading: text(d.querySelector('h3')), verdict: text(d.querySelector('.verdict')),
    headers: [...d.querySelectorAll('thead th')].map(text),
    rows: [...d.querySelectorAll('tbody tr')].map(tr => ({
      met: tr.dataset.sloMet, cells: [...tr.querySelectorAll('td')].map(text),
      background: getComputedStyle(tr.lastElementChild).backgroundColor}))}));
})()
"""


@pytest.mark.parametrize("lang", ["ja", "en"])
async def test_surge_section_renders_each_ramp(browser, surge_journal, registry, tmp_path, lang):
    journal, run_id = surge_journal
    card = build_scorecard(journal, run_id, registry)
    path = tmp_path / f"scorecard-surge.{lang}.html"
    path.write_text(render_html(card, lang), encoding="utf-8")
    async with browser.page() as page:
        await page.goto(path.as_uri())
        dom = await page.evaluate(READ_DOM)
        surges = await page.evaluate(READ_SURGE)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / f"scorecard-surge.{lang}.png").write_bytes(await page.screenshot())
        assert outside_activity(page, path.as_uri()) == []
    assert dom["sections"][:4] == ["worse", "failures", "readiness", "surge"]
    assert [(s["code"], s["channel"], s["held"]) for s in surges] == [
        ("131211", "chat", "false"),
        ("131016", "chat", "true"),
    ]
    for shown, entry in zip(surges, card["surge"], strict=True):
        assert shown["headers"] == [h for h, _ in curve_columns(lang)]
        assert [r["cells"] for r in shown["rows"]] == curve_rows(entry, lang, words=True)
        assert [r["met"] for r in shown["rows"]] == [
            json.dumps(s["slo_met"]) for s in entry["steps"]
        ]
        assert shown["verdict"] == verdict(entry, lang)
    broke = surges[0]["rows"]
    # the missed step is marked by colour *and* by symbol and word
    assert broke[-1]["background"] != broke[0]["background"]
    assert broke[-1]["cells"][-1] == {"ja": "✘ 未達", "en": "✘ missed"}[lang]


@pytest.mark.parametrize("with_csp", [True, False])
async def test_the_request_check_can_fail(browser, card, tmp_path, with_csp):
    """Control: a page that reaches out is caught, blocked by CSP or not."""
    html = render_html(card, "en", charts=False)
    if not with_csp:
        html = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", html)
    beacon = f"http://127.0.0.1:{closed_port()}/beacon.png"
    html = html.replace("</main>", f'<img src="{beacon}" alt=""></main>')
    path = tmp_path / f"leaky-{with_csp}.html"
    path.write_text(html, encoding="utf-8")
    async with browser.page() as page:
        await page.goto(path.as_uri())
        deadline = asyncio.get_running_loop().time() + 5.0
        while (
            not (found := outside_activity(page, path.as_uri()))
            and asyncio.get_running_loop().time() < deadline
        ):
            await asyncio.sleep(0.05)  # events may trail the load event a little
    assert any(beacon in f or "Content Security Policy" in f for f in found), found
    if not with_csp:
        assert f"request {beacon}" in found
