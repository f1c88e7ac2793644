"""The scorecard as one self-contained HTML file, for the CIO meeting.

Everything is inline — styles, and the charts as SVG — and a
Content-Security-Policy forbids the page to fetch anything, so it opens the
same from a mail attachment, a file share or a USB stick, with no request
leaving the machine. Japanese or English (``lang``), a colour-blind-safe
palette (Okabe–Ito, and never colour alone: every status also has a symbol
and a word), and print CSS for A4 portrait. It opens with what got worse, then where
the chain broke (:mod:`drills.reporting.failures`); a run with surges also
shows each surge's ramp table and breaking point, and the harness's own wait before
sending is shown apart from latency (:mod:`drills.reporting.send_wait`). The municipalities are also drawn on a map of Tokyo (:mod:`drills.reporting.map`).

    html = render_html(build_scorecard(journal, run_id, registry), lang="ja")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

from drills.core.i18n import Text
from drills.core.journal import Journal
from drills.core.registry import Registry
from drills.core.scoring import STATUS_LABELS, WEIGHTS, grade_label, round_score
from drills.reporting.charts import latency_svg, trend_svg
from drills.reporting.comparison import CHANGE_LABELS
from drills.reporting.failures import failure_list
from drills.reporting.map import map_model, map_svg
from drills.reporting.scorecard import build_scorecard
from drills.reporting.send_wait import send_wait_table
from drills.reporting.standing import standing_table
from drills.reporting.text import (
    FRESHNESS_LABELS,
    STATUS_SYMBOL,
    change_cell,
    channel_cell,
    channel_ids,
    evidence_note,
    human_time,
    surge_heading,
    worse_entries,
)
from drills.surge.report import curve_columns, curve_legend, curve_rows, verdict
from probes.base import DEFAULT_MARKER

__all__ = ["render_html", "write_html", "write_scorecard_html"]

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("drills.reporting", "templates"),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
    undefined=jinja2.StrictUndefined,
)


def _num(x: float | None) -> str:
    return "—" if x is None else f"{x:.1f}"


def _signed(x: float | None) -> str:
    return "—" if x is None else f"{x:+.1f}".replace("-", "−")


def _tokyo_map(card: dict[str, Any], lang: str) -> dict[str, Any] | None:
    """The map section (:mod:`drills.reporting.map`): None when no municipality has a place."""
    model = map_model(card)
    if not model.points:
        return None
    return {"svg": map_svg(model, lang), "points": len(model.points), "unlocated": model.unlocated}


def render_html(
    card: dict[str, Any], lang: str = "ja", *, marker: str = DEFAULT_MARKER, charts: bool = True
) -> str:
    """The card as a complete HTML document (a string)."""
    t = Text(lang)
    comparison = card.get("comparison") or {}
    prev_score = comparison.get("previous_score")
    score = card["summary"]["score"]
    statuses = {
        "finished": ("完了", "finished"),
        "incomplete": ("中断", "incomplete"),
        "interrupted": (
            "シグナルで中断・途中までの結果",
            "interrupted by a signal, partial results",
        ),
        "failed": ("失敗", "failed"),
    }
    legend = (
        " ".join(f"{STATUS_SYMBOL[s]} {t(*STATUS_LABELS[s])}" for s in STATUS_SYMBOL)
        + t("。", ". ")
        + evidence_note(card, t)
    )
    by_id = {m["code"]: {c["id"]: c for c in m["channels"]} for m in card["municipalities"]}
    template = _ENV.get_template("scorecard.html.j2")
    return template.render(
        card=card,
        lang=t.lang,
        t=t,
        marker=marker,
        w={**WEIGHTS.as_dict(), **card["model"]["weights"]},
        comparison={"previous_run_id": None, **comparison},
        worse=worse_entries(card),
        better=[*comparison.get("improved", []), *comparison.get("new", [])],
        previous_score=prev_score,
        overall_delta=_signed(
            None if prev_score is None or score is None else round_score(score - prev_score)
        ),
        run_status=t(*statuses.get(card["status"], (card["status"], card["status"]))),
        channel_ids=channel_ids(card),
        channel_of=lambda m, cid: by_id[m["code"]].get(cid),
        channel_cell=lambda ch: channel_cell(ch, t),
        change_cell=lambda change: change_cell(change, t),
        change_symbol=lambda status: CHANGE_LABELS[status][0] + " " + t(*CHANGE_LABELS[status][1:]),
        status_label=lambda status: t(*STATUS_LABELS[status]),
        freshness_label=lambda status: t(*FRESHNESS_LABELS[status]),
        reasons=lambda e: (
            "; ".join(r[t.lang] for r in e["reasons"]) or t(*CHANGE_LABELS[e["status"]][1:])
        ),
        grade_label=lambda letter: grade_label(letter, t.lang),
        human_time=human_time,
        num=_num,
        signed=_signed,
        legend=legend,
        surges=card.get("surge") or [],
        surge_heading=lambda s: surge_heading(s, t),
        surge_verdict=lambda s: verdict(s, t.lang),
        surge_columns=curve_columns(t.lang),
        surge_rows=lambda s: zip(s["steps"], curve_rows(s, t.lang, words=True), strict=True),
        surge_legend=lambda s: curve_legend(s, t.lang),
        latency_chart=latency_svg(card, t.lang) if charts else None,
        trend_chart=trend_svg(card, t.lang) if charts else None,
        tokyo_map=_tokyo_map(card, t.lang),
        standing=standing_table(card, t.lang),
        failures=failure_list(card, t.lang),
        send_wait=send_wait_table(card, t.lang),
    )


def write_html(
    card: dict[str, Any], path: Path, lang: str = "ja", marker: str = DEFAULT_MARKER
) -> Path:
    """Write the HTML scorecard atomically; return the path."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(render_html(card, lang, marker=marker), encoding="utf-8")
    tmp.replace(path)
    return path


def write_scorecard_html(
    *, journal: Journal, run_id: str, registry: Registry | None, out_dir: Path, lang: str
) -> Path:
    """Demo output writer: ``scorecard.html`` next to ``scorecard.json``."""
    card = build_scorecard(journal, run_id, registry)
    marker = registry.marker if registry is not None else DEFAULT_MARKER
    return write_html(card, Path(out_dir) / "scorecard.html", lang, marker)
