"""Charts for the HTML scorecard, as inline SVG made by matplotlib.

Only the object-oriented API is used (``Figure`` + the SVG canvas): no pyplot,
no global backend switch, nothing drawn at import time. Text is turned into
paths, so the SVG needs no font in the reader's browser; Japanese glyphs come
from a CJK font installed on this machine (Debian ``fonts-ipaexfont-gothic``
or ``fonts-noto-cjk``). Without one, chart text falls back to English and
codes instead of names — never tofu boxes. Colours are the Okabe–Ito
colour-blind-safe palette, and every series also differs by marker or label.
"""

from __future__ import annotations

import contextlib
import functools
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from drills.core.i18n import Text
from drills.core.scoring import GRADES
from drills.reporting.text import human_time

__all__ = ["OKABE_ITO", "cjk_font", "latency_svg", "trend_svg"]

# Okabe & Ito (2008), "Color Universal Design": distinguishable with any colour vision.
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
GRADE_COLOURS = {"A": "#0072B2", "B": "#56B4E9", "C": "#E69F00", "D": "#D55E00"}
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_CJK_FONTS = (
    "IPAexGothic",
    "IPAGothic",
    "Noto Sans CJK JP",
    "Noto Sans JP",
    "VL Gothic",
    "TakaoGothic",
)
_CJK_FILES = {
    "ipaexg.ttf",
    "ipag.ttf",
    "notosanscjk-regular.ttc",
    "vl-gothic-regular.ttf",
    "takaogothic.ttf",
}
_MAX_LINES = 8


@functools.cache
def cjk_font() -> str | None:
    """The first installed font that has Japanese glyphs, if any.

    matplotlib caches its font list; a font installed after that cache was
    built is found on disk and added.
    """
    from matplotlib import font_manager

    def known() -> str | None:
        installed = {f.name for f in font_manager.fontManager.ttflist}
        return next((name for name in _CJK_FONTS if name in installed), None)

    if (name := known()) is None:
        for path in font_manager.findSystemFonts():
            if Path(path).name.lower() in _CJK_FILES:
                font_manager.fontManager.addfont(path)
        name = known()
    return name


def _text(lang: str) -> tuple[Text, bool]:
    """Chart language (English when Japanese glyphs are unavailable) and CJK support."""
    cjk = cjk_font() is not None
    return Text(lang if cjk else "en"), cjk


def _svg(fig: Any, prefix: str, label: str) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight")
    svg = buf.getvalue()
    svg = svg[svg.index("<svg") :]
    # Two SVGs inline in one page must not share element ids.
    svg = re.sub(r'(\bid="|url\(#|href="#)', rf"\1{prefix}-", svg)
    label = label.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
    return svg.replace("<svg ", f'<svg role="img" aria-label="{label}" class="chart" ', 1)


@contextlib.contextmanager
def _style(prefix: str) -> Iterator[None]:
    """matplotlib settings for one chart: fonts, SVG text as paths, stable ids."""
    from matplotlib import rc_context

    font = cjk_font()
    with rc_context(
        {
            "font.family": [font, "DejaVu Sans"] if font else ["DejaVu Sans"],
            "svg.fonttype": "path",
            "svg.hashsalt": prefix,
            "axes.spines.top": False,
            "axes.spines.right": False,
        }
    ):
        yield


def latency_svg(card: dict[str, Any], lang: str = "ja") -> str | None:
    """Box plot of confirmed latency per channel kind (whiskers p5–p95), SLO marked."""
    kinds = [(k, v) for k, v in card.get("latency_by_kind", {}).items() if v["count"] > 0]
    if not kinds:
        return None
    from matplotlib.figure import Figure

    t, _cjk = _text(lang)
    title = t("チャネル種別ごとの遅延分布", "Latency distribution by channel kind")
    with _style("lat"):
        fig = Figure(figsize=(7.0, 0.55 * len(kinds) + 1.4))
        ax = fig.add_subplot()
        stats = [
            {
                "label": f"{kind} (n={v['count']})",
                "med": v["p50_s"],
                "q1": v["p25_s"],
                "q3": v["p75_s"],
                "whislo": v["p5_s"],
                "whishi": v["p95_s"],
                "fliers": [v["p0_s"], v["p100_s"]],
            }
            for kind, v in kinds
        ]
        drawn = ax.bxp(
            stats,
            orientation="horizontal",
            patch_artist=True,
            widths=0.5,
            flierprops={"marker": "|", "markersize": 9, "markeredgecolor": "#444444"},
            medianprops={"color": "#000000", "linewidth": 2},
        )
        for i, patch in enumerate(drawn["boxes"]):
            patch.set_facecolor(OKABE_ITO[i % len(OKABE_ITO)])
            patch.set_alpha(0.75)
        first = True
        for i, (_kind, v) in enumerate(kinds, start=1):
            for slo in v["slo_latency_s"]:
                label = t("SLO（遅延目標）", "latency SLO") if first else None
                ax.plot(
                    [slo, slo],
                    [i - 0.4, i + 0.4],
                    color="#D55E00",
                    linestyle="--",
                    linewidth=1.5,
                    label=label,
                )
                first = False
        lo = min(v["p0_s"] for _k, v in kinds)
        hi = max(max(v["p100_s"], *v["slo_latency_s"]) for _k, v in kinds)
        if lo > 0 and hi / lo > 20:
            from matplotlib.ticker import FuncFormatter

            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{x:g}"))
        ax.set_xlabel(
            t(
                "着信確認までの遅延（秒）　箱 = 25〜75%、ひげ = 5〜95%、| = 最小・最大",
                "latency to confirmed arrival (s): box 25–75 %, whiskers 5–95 %, | min and max",
            )
        )
        ax.set_title(title, loc="left")
        ax.grid(axis="x", color="#dddddd")
        ax.legend(loc="lower right", fontsize=8)
        return _svg(fig, "lat", title)


def trend_svg(card: dict[str, Any], lang: str = "ja") -> str | None:
    """Readiness over the drills of this scenario: overall score and per municipality."""
    points = [p for p in card.get("trend", []) if p.get("score") is not None]
    if not points:
        return None
    from matplotlib.figure import Figure

    t, cjk = _text(lang)
    title = t(
        "即応性の推移（同じシナリオの訓練ごと）", "Readiness over time (drills of this scenario)"
    )
    names = {
        m["code"]: m["name"] if cjk else (m.get("name_en") or m["code"])
        for m in card["municipalities"]
    }
    codes = [m["code"] for m in card["municipalities"]]
    if len(codes) > _MAX_LINES:  # too many lines for one chart: those that fell the most
        codes = sorted(codes, key=lambda c: _fall(points, c))[:_MAX_LINES]
    xs = list(range(len(points)))
    with _style("trend"):
        fig = Figure(figsize=(7.0, 3.0))
        ax = fig.add_subplot()
        tops = [100.0] + [bound for bound, *_ in GRADES[:-1]]
        for (bound, letter, ja, en), top in zip(GRADES, tops, strict=True):
            ax.axhspan(bound, top, color=GRADE_COLOURS[letter], alpha=0.10, linewidth=0)
            ax.annotate(
                f"{letter} {t(ja, en)}",
                xy=(1.0, (bound + top) / 2),
                xycoords=("axes fraction", "data"),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
                color="#333333",
            )
        for i, code in enumerate(codes):
            ys = [p["municipalities"].get(code) for p in points]
            ax.plot(
                xs,
                [float("nan") if y is None else y for y in ys],
                marker=_MARKERS[i % len(_MARKERS)],
                markersize=4,
                linewidth=1,
                color=OKABE_ITO[i % (len(OKABE_ITO) - 1)],
                label=names.get(code, code),
            )
        ax.plot(
            xs,
            [p["score"] for p in points],
            color="#000000",
            linewidth=2.5,
            marker="o",
            label=t("総合", "overall"),
        )
        ax.set_ylim(0, 100)
        ax.set_xlim(-0.5, len(points) - 0.5)
        ax.set_xticks(
            xs, [human_time(p["started_at"]).replace(" ", "\n") for p in points], fontsize=7
        )
        ax.set_ylabel(t("点数", "score"))
        ax.set_title(title, loc="left")
        ax.grid(axis="y", color="#dddddd")
        ax.legend(loc="upper left", bbox_to_anchor=(1.13, 1.0), fontsize=8, frameon=False)
        return _svg(fig, "trend", title)


def _fall(points: list[dict[str, Any]], code: str) -> float:
    known = [s for p in points if (s := p["municipalities"].get(code)) is not None]
    return known[-1] - known[0] if len(known) > 1 else 0.0
