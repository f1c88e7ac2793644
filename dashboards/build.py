"""Dashboards and alert rules as code: ``python dashboards/build.py [--check]``.

Generates, next to this file:

- ``grafana/*.json`` — three Grafana dashboards (CIO overview, municipality
  detail, drill run), built with Grafana Labs' grafana-foundation-sdk; the
  Prometheus data source is the ``datasource`` variable;
- ``prometheus/tsunagari.rules.yml`` — the alert rules.

``--check`` writes nothing and exits 1 if a committed file differs from what
this script generates (the test suite runs it). Every metric and label used
here is one ``drills.metrics.collector`` exports; the integration test proves it by
evaluating every expression against a real Prometheus.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml
from grafana_foundation_sdk.builders import (
    bargauge,
    geomap,
    heatmap,
    piechart,
    stat,
    statetimeline,
    table,
    timeseries,
)
from grafana_foundation_sdk.builders.common import (
    FrameGeometrySource,
    MapLayerOptions,
    TableSortByFieldState,
)
from grafana_foundation_sdk.builders.dashboard import (
    AnnotationQuery,
    Dashboard,
    DashboardLink,
    DatasourceVariable,
    QueryVariable,
    Row,
    ThresholdsConfig,
)
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import geomap as gm
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

HERE = Path(__file__).resolve().parent
DS = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
TAGS = ["tsunagari"]

READINESS_THRESHOLD = 75  # below grade B (README, scoring): 要改善
TLS_WARNING_DAYS = 21

# Grade bands of drills.core.scoring.GRADES as Grafana thresholds.
GRADE_STEPS = [
    dm.Threshold(None, "red"),
    dm.Threshold(50, "orange"),
    dm.Threshold(75, "yellow"),
    dm.Threshold(90, "green"),
]

SEL = 'scenario=~"$scenario", vantage=~"$vantage"'
SEL_M = SEL + ', municipality_name=~"$municipality"'
MUNI = "municipality_code, municipality_name"


# --------------------------------------------------------------------------- helpers


def q(
    expr: str,
    legend: str | None = None,
    *,
    instant: bool = False,
    fmt: str | None = None,
    ref: str = "A",
) -> Dataquery:
    query = Dataquery().expr(expr).ref_id(ref).datasource(DS)
    if legend is not None:
        query = query.legend_format(legend)
    if instant:
        query = query.instant()
    else:
        query = query.range()
    if fmt is not None:
        query = query.format(PromQueryFormat(fmt))
    return query


def panel(kind: Any, title: str, w: int, h: int) -> Any:
    """A panel of *kind* (a builders module) with the Prometheus variable as data source."""
    return kind.Panel().datasource(DS).title(title).span(w).height(h)


def thresholds(steps: list[dm.Threshold]) -> ThresholdsConfig:
    return ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps(steps)


def value_text(mapping: dict[str, tuple[str, str]]) -> list[dm.ValueMapping]:
    return [
        dm.ValueMap(
            {
                value: dm.ValueMappingResult(text=text, color=color, index=i)
                for i, (value, (text, color)) in enumerate(mapping.items())
            }
        )
    ]


REACHABLE = value_text({"1": ("到達", "green"), "0": ("不通", "red")})


def variables(board: Dashboard, *, municipality: bool = False) -> Dashboard:
    board = board.with_variable(
        DatasourceVariable("datasource").label("データソース").type("prometheus")
    )
    for name, label in (("scenario", "シナリオ"), ("vantage", "拠点")):
        board = board.with_variable(
            QueryVariable(name)
            .label(label)
            .datasource(DS)
            .query(
                {
                    "query": f"label_values(tsunagari_drill_last_start_timestamp_seconds, {name})",
                    "refId": name,
                }
            )
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(dm.VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            .all_value(".*")
            .current(dm.VariableOption(selected=True, text="All", value="$__all"))
        )
    if municipality:
        board = board.with_variable(
            QueryVariable("municipality")
            .label("団体")
            .datasource(DS)
            .query(
                {
                    "query": f"label_values(tsunagari_readiness_score{{{SEL}}}, municipality_name)",
                    "refId": "municipality",
                }
            )
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(dm.VariableSort.ALPHABETICAL_ASC)
        ).with_variable(
            QueryVariable("channel")
            .label("チャネル")
            .datasource(DS)
            .query(
                {
                    "query": f"label_values(tsunagari_channel_reachable{{{SEL_M}}}, channel_id)",
                    "refId": "channel",
                }
            )
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(dm.VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            .all_value(".*")
            .current(dm.VariableOption(selected=True, text="All", value="$__all"))
        )
    return board


def board(title: str, uid: str, description: str) -> Dashboard:
    return (
        Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .timezone("Asia/Tokyo")
        .refresh("1m")
        .editable()
        .link(
            DashboardLink("繋がり")
            .type(dm.DashboardLinkType.DASHBOARDS)
            .tags(TAGS)
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
    )


def tls_left(
    title: str, by: str, legend: str, selector: str, w: int, h: int, check_selector: str = ""
) -> Any:
    """Time left until the earliest TLS certificate expiry, per *by*: the certificates seen
    in drills and those the preflight checks see (every kind, every endpoint)."""
    expr = (
        f"min by ({by}) (tsunagari_tls_cert_expiry_timestamp_seconds{{{selector}}} "
        f"or tsunagari_check_tls_cert_expiry_timestamp_seconds{{{check_selector}}}) - time()"
    )
    return (
        panel(bargauge, title, w, h)
        .with_target(q(expr, legend, instant=True))
        .unit("s")
        .thresholds(
            thresholds([dm.Threshold(None, "red"), dm.Threshold(TLS_WARNING_DAYS * 86400, "green")])
        )
        .orientation(common.VizOrientation.HORIZONTAL)
    )


# Where a municipality stands among the latest drill's participants (drills.core.standing):
# rank, percentile and 偏差値 of its readiness score, or of each channel kind's p50/p95
# latency (``quantile``); absent when fewer than 10 municipalities are compared.
STANDING = (
    ("rank", "順位 / rank"),
    ("percentile", "パーセンタイル / percentile"),
    ("deviation_score", "偏差値 / deviation score"),
)
STANDING_COLUMNS = {
    "municipality_name": "団体 / municipality",
    "channel_kind": "種別 / kind",
    "stat": "分位 / quantile",
    "scenario": "シナリオ / scenario",
    "vantage": "拠点 / vantage",
}


def standing_table(
    title: str, figure: str, by: str, selector: str, description: str, w: int
) -> Any:
    """One row per municipality (and *by*'s other labels) of the latest drill: the
    ``tsunagari_<figure>_{rank,percentile,deviation_score}`` gauges as three columns — one
    query each, aggregated to the same labels so that the merge makes one row of them —
    best rank first."""
    p = panel(table, title, w, 10).description(description)
    for ref, (gauge, _) in zip("ABC", STANDING, strict=True):
        expr = f"max by ({by}) (tsunagari_{figure}_{gauge}{{{selector}}})"
        p = p.with_target(q(expr, fmt="table", instant=True, ref=ref))
    columns = [c.strip() for c in by.split(",")]
    values = {f"Value #{r}": text for r, (_, text) in zip("ABC", STANDING, strict=True)}
    order = [c for c in STANDING_COLUMNS if c in columns] + list(values)
    return (
        p.with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(
            dm.DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": {"Time": True, "municipality_code": True},
                    "indexByName": {name: i for i, name in enumerate(order)},
                    "renameByName": {
                        **{c: t for c, t in STANDING_COLUMNS.items() if c in columns},
                        **values,
                    },
                },
            )
        )
        .decimals(1)
        .override_by_name(STANDING[0][1], [dm.DynamicConfigValue(id_val="decimals", value=0)])
        .sort_by([TableSortByFieldState().display_name(STANDING[0][1])])
    )


LATENCY_STANDING_ABOUT = (
    "最新の訓練の参加団体の中での、種別ごとの遅延（p50・p95、団体のチャネルの到着を合わせる）の"
    "順位（1 が最速）・パーセンタイル（高いほど速い）・偏差値（50 が平均、高いほど速い）。"
    "到着を確認できた団体が 10 未満の種別は比較しない（行がない） / Where each municipality's "
    "p50 and p95 latency of a channel kind stands among the latest drill's municipalities: "
    "rank (1 is fastest), percentile and deviation score (higher is faster; 50 is the mean). "
    "A kind is compared only when 10 or more municipalities have a confirmed arrival."
)


# --------------------------------------------------------------------------- CIO overview


def cio_overview() -> Dashboard:
    d = variables(
        board(
            "繋がり 即応性 総覧（都・区市町村）",
            "tsunagari-cio-overview",
            "Readiness of every municipality at a glance / 全団体の即応性を一目で",
        )
    ).time("now-7d", "now")
    d = d.with_row(Row("いまの状態"))
    d = d.with_panel(
        panel(bargauge, "即応性スコア（団体別・最新の訓練）", 12, 10)
        .description("最新の訓練の即応性スコア（0〜100）。複数のシナリオ・拠点を選ぶと最も低い値。")
        .with_target(
            q(
                f"min by ({MUNI}) (tsunagari_readiness_score{{{SEL}}})",
                "{{municipality_name}}",
                instant=True,
            )
        )
        .min(0)
        .max(100)
        .unit("none")
        .decimals(1)
        .thresholds(thresholds(GRADE_STEPS))
        .orientation(common.VizOrientation.HORIZONTAL)
    )
    d = d.with_panel(
        panel(stat, "不通のチャネル数", 4, 10)
        .description("最新の訓練で 1 通も受け手側に届かなかったチャネルの数")
        .with_target(
            q(f"count(tsunagari_channel_reachable{{{SEL}}} == 0) or vector(0)", instant=True)
        )
        .thresholds(thresholds([dm.Threshold(None, "green"), dm.Threshold(1, "red")]))
    )
    d = d.with_panel(
        panel(bargauge, "最後の訓練からの経過時間", 8, 10)
        .description("その団体を含む最新の訓練が終わってからの時間")
        .with_target(
            q(
                f"time() - max by ({MUNI}) (tsunagari_municipality_last_drill_timestamp_seconds{{{SEL}}})",
                "{{municipality_name}}",
                instant=True,
            )
        )
        .unit("s")
        .orientation(common.VizOrientation.HORIZONTAL)
    )
    d = d.with_panel(
        panel(table, "いま不通のチャネル", 12, 8)
        .description("最新の訓練で 1 通も届かなかったチャネル（連続回数つき）")
        .with_target(
            q(f"tsunagari_channel_unreachable_streak{{{SEL}}} > 0", fmt="table", instant=True)
        )
    )
    d = d.with_panel(
        panel(table, "前回の訓練から悪化した団体", 12, 8)
        .description("即応性スコアが前回の訓練より下がった団体（値は変化幅）")
        .with_target(q(f"tsunagari_readiness_score_change{{{SEL}}} < 0", fmt="table", instant=True))
    )
    d = d.with_panel(
        panel(table, "新たに不通になったチャネル", 12, 8)
        .description("前回の訓練では届いていた（または初めての訓練で）、今回届かなかったチャネル")
        .with_target(
            q(f"tsunagari_channel_unreachable_streak{{{SEL}}} == 1", fmt="table", instant=True)
        )
    )
    d = d.with_panel(
        panel(bargauge, "点呼（安否確認）の回答率", 12, 8)
        .with_target(
            q(
                f"min by ({MUNI}) (tsunagari_roll_call_answered_ratio{{{SEL}}})",
                "{{municipality_name}}",
                instant=True,
            )
        )
        .unit("percentunit")
        .min(0)
        .max(1)
        .thresholds(
            thresholds(
                [dm.Threshold(None, "red"), dm.Threshold(0.9, "yellow"), dm.Threshold(1, "green")]
            )
        )
        .orientation(common.VizOrientation.HORIZONTAL)
    )
    d = map_row(d)
    d = comparison_row(d)
    d = d.with_row(Row("推移"))
    d = d.with_panel(
        panel(timeseries, "即応性スコアの推移（90 日）", 16, 10)
        .with_target(
            q(f"min by ({MUNI}) (tsunagari_readiness_score{{{SEL}}})", "{{municipality_name}}")
        )
        .time_from("90d")
        .min(0)
        .max(100)
    )
    d = d.with_panel(
        tls_left(
            "TLS 証明書の期限までの残り時間（最短）",
            f"{MUNI}, channel_id",
            "{{municipality_name}} {{channel_id}}",
            SEL,
            8,
            10,
        )
    )
    return preflight_row(d)


# tsunagari_municipality_info: one series per municipality whose office is known (labels
# latitude, longitude, region); pushed once per scenario × vantage, hence the max by.
PLACE = "latitude, longitude, region"


def on_map(expr: str, regions: str) -> str:
    """*expr* (one series per municipality) with the office's latitude and longitude."""
    return (
        f"{expr}\n  * on (municipality_code) group_left ({PLACE})\n"
        f"max by (municipality_code, {PLACE}) "
        f'(tsunagari_municipality_info{{region=~"{regions}"}})'
    )


def map_layer(name: str, ref: str, symbol: str, size: int, names: bool) -> MapLayerOptions:
    """Markers at each office, coloured by the value of query *ref* (its thresholds)."""
    text = (
        {"field": "municipality_name", "mode": "field"} if names else {"fixed": "", "mode": "fixed"}
    )
    return (
        MapLayerOptions()
        .type("markers")
        .name(name)
        .location(
            FrameGeometrySource()
            .mode(common.FrameGeometrySourceMode.COORDS)
            .latitude("latitude")
            .longitude("longitude")
        )
        .filter_data({"id": "byRefId", "options": ref})
        .tooltip(True)
        .config(
            {
                "showLegend": True,
                "style": {
                    "color": {"field": f"Value #{ref}", "fixed": "dark-green"},
                    "opacity": 0.9,
                    "size": {"fixed": size, "min": size, "max": size},
                    "symbol": {"fixed": f"img/icons/marker/{symbol}.svg", "mode": "fixed"},
                    "text": text,
                    "textConfig": {"fontSize": 10, "offsetY": -12, "textAlign": "center"},
                },
            }
        )
    )


def map_panel(title: str, regions: str, lat: float, lon: float, zoom: int, w: int) -> Any:
    """A Geomap of the municipalities in *regions*: grade colours, and a cross where every
    channel was unreachable in the latest drill (as the HTML report's map)."""
    score = f"min by ({MUNI}) (tsunagari_readiness_score{{{SEL}}})"
    reached = f"max by ({MUNI}) (tsunagari_channel_reachable{{{SEL}}})"
    return (
        panel(geomap, title, w, 12)
        .description(
            "各団体の役所・役場の位置に最新の訓練の即応性スコア（色は評価の区分: 90 以上 A、"
            "75 以上 B、50 以上 C）。✕ はどのチャネルにも届かなかった団体（不通）。"
            "位置は tsunagari_municipality_info（国土地理院の役所・役場の経緯度）"
        )
        .with_target(q(on_map(score, regions), fmt="table", instant=True))
        .with_target(q(on_map(reached, regions), fmt="table", instant=True, ref="B"))
        .with_transformation(
            dm.DataTransformerConfig(
                id_val="convertFieldType",
                options={
                    "conversions": [
                        {"targetField": "latitude", "destinationType": "number"},
                        {"targetField": "longitude", "destinationType": "number"},
                    ],
                    "fields": {},
                },
            )
        )
        .min(0)
        .max(100)
        .decimals(1)
        .thresholds(thresholds(GRADE_STEPS))
        .override_by_query(
            "B",
            [
                dm.DynamicConfigValue(
                    id_val="thresholds",
                    value={
                        "mode": "absolute",
                        "steps": [
                            {"value": None, "color": "dark-red"},
                            {"value": 1, "color": "transparent"},
                        ],
                    },
                )
            ],
        )
        .basemap(MapLayerOptions().type("default").name("背景地図"))
        .view(geomap.MapViewConfig().id("coords").lat(lat).lon(lon).zoom(zoom))
        .layers(
            [
                map_layer("評価（即応性スコア）", "A", "circle", 12, names=True),
                map_layer("不通（全チャネル）", "B", "x-mark", 20, names=False),
            ]
        )
        .tooltip(geomap.TooltipOptions().mode(gm.TooltipMode.DETAILS))
    )


def map_row(d: Dashboard) -> Dashboard:
    """The municipalities on a map: the mainland, and the islands far to the south."""
    d = d.with_row(Row("地図"))
    d = d.with_panel(map_panel("即応性マップ（23区・多摩）", "pref|ku|tama", 35.69, 139.45, 9, 16))
    return d.with_panel(map_panel("即応性マップ（島しょ）", "izu|ogasawara", 30.6, 140.6, 5, 8))


def comparison_row(d: Dashboard) -> Dashboard:
    """How the municipalities compare in the latest drill: latency by channel kind, and
    the readiness score (the scorecard's 参加団体間の比較)."""
    d = d.with_row(Row("参加団体間の比較 / Comparison among municipalities"))
    d = d.with_panel(
        panel(
            bargauge,
            "比較の母数: 到着を確認できた団体数（種別別）/ Municipalities compared, by kind",
            6,
            10,
        )
        .description(
            "最新の訓練でその種別の到着を確認できた団体の数。10 未満の種別は遅延を比較しない"
            " / Municipalities with a confirmed arrival of the kind in the latest drill; a kind "
            "with fewer than 10 is not compared"
        )
        .with_target(
            q(
                f"max by (channel_kind) (tsunagari_drill_latency_measured_municipalities{{{SEL}}})",
                "{{channel_kind}}",
                instant=True,
            )
        )
        .min(0)
        .decimals(0)
        .thresholds(thresholds([dm.Threshold(None, "text"), dm.Threshold(10, "green")]))
        .orientation(common.VizOrientation.HORIZONTAL)
    )
    d = d.with_panel(
        standing_table(
            "遅延の比較: 順位・パーセンタイル・偏差値（種別・分位別、最新の訓練）"
            " / Latency standing by channel kind and quantile",
            "latency_standing",
            f"{MUNI}, scenario, vantage, channel_kind, stat",
            SEL,
            LATENCY_STANDING_ABOUT,
            18,
        )
    )
    return d.with_panel(
        standing_table(
            "即応性スコアの比較: 順位・パーセンタイル・偏差値（最新の訓練）"
            " / Readiness score standing",
            "readiness",
            f"{MUNI}, scenario, vantage",
            SEL,
            "最新の訓練の参加団体の中での即応性スコアの順位（1 が最上位）・パーセンタイル・偏差値"
            "（50 が平均）。点数のついた団体が 10 未満なら比較しない / Where each municipality's "
            "readiness score stands among the latest drill's municipalities (none below 10)",
            24,
        )
    )


def preflight_row(d: Dashboard) -> Dashboard:
    """The preflight checks (``/probe``): can each channel work now, between drills."""
    d = d.with_row(Row("プリフライト（送信しないチェック）"))
    d = d.with_panel(
        panel(stat, "チェックに失敗しているチャネル数", 4, 8)
        .description(
            "送信せずに行うチェック（接続・TLS・ログイン・受け手側の読み取り）で失敗している"
            "チャネルの数。Prometheus が /probe をスクレイプした最新の結果"
        )
        .with_target(q("count(tsunagari_check_up == 0) or vector(0)", instant=True))
        .thresholds(thresholds([dm.Threshold(None, "green"), dm.Threshold(1, "red")]))
    )
    d = d.with_panel(
        panel(stat, "ログインできない資格情報", 4, 8)
        .description("送信側または受け手側の資格情報が拒否されたチャネルの数")
        .with_target(q("count(tsunagari_check_auth_ok == 0) or vector(0)", instant=True))
        .thresholds(thresholds([dm.Threshold(None, "green"), dm.Threshold(1, "red")]))
    )
    d = d.with_panel(
        panel(table, "失敗したチェックの段階", 16, 8)
        .description("失敗した段階（phase: dns・connect・tls・auth・read・account）と名前（stage）")
        .with_target(
            q(
                f"max by ({MUNI}, channel_id, channel_kind, phase, stage) "
                "(tsunagari_check_phase_ok == 0)",
                fmt="table",
                instant=True,
            )
        )
    )
    d = d.with_panel(
        panel(statetimeline, "チェックの結果（チャネル別）", 12, 8)
        .with_target(
            q(
                f"max by ({MUNI}, channel_id) (tsunagari_check_up)",
                "{{municipality_name}} {{channel_id}}",
            )
        )
        .mappings(value_text({"1": ("正常", "green"), "0": ("失敗", "red")}))
        .thresholds(thresholds([dm.Threshold(None, "red"), dm.Threshold(1, "green")]))
    )
    d = d.with_panel(
        panel(timeseries, "チェックの段階別の所要時間", 12, 8)
        .description("段階の種類（dns・connect・tls・auth・read・account）ごとの所要時間の合計")
        .with_target(
            q(
                "sum by (municipality_name, channel_id, phase) "
                "(tsunagari_check_phase_duration_seconds)",
                "{{municipality_name}} {{channel_id}} {{phase}}",
            )
        )
        .unit("s")
    )
    return d


# --------------------------------------------------------------------------- municipality detail


def municipality_detail() -> Dashboard:
    d = variables(
        board(
            "繋がり 団体の詳細",
            "tsunagari-municipality",
            "One municipality, channel by channel / 団体ごと・チャネルごとの詳細",
        ),
        municipality=True,
    ).time("now-30d", "now")
    d = d.with_row(Row("$municipality"))
    d = d.with_panel(
        panel(stat, "即応性スコア", 6, 6)
        .with_target(q(f"min(tsunagari_readiness_score{{{SEL_M}}})", instant=True))
        .min(0)
        .max(100)
        .decimals(1)
        .thresholds(thresholds(GRADE_STEPS))
    )
    d = d.with_panel(
        panel(stat, "前回の訓練からの変化", 6, 6)
        .with_target(q(f"min(tsunagari_readiness_score_change{{{SEL_M}}})", instant=True))
        .decimals(1)
        .thresholds(thresholds([dm.Threshold(None, "red"), dm.Threshold(0, "green")]))
    )
    d = d.with_panel(
        panel(stat, "最後の訓練からの経過時間", 6, 6)
        .with_target(
            q(
                f"time() - max(tsunagari_municipality_last_drill_timestamp_seconds{{{SEL_M}}})",
                instant=True,
            )
        )
        .unit("s")
    )
    d = d.with_panel(
        panel(stat, "訓練間隔（レジストリ）", 6, 6)
        .with_target(
            q(
                'max(tsunagari_municipality_drill_interval_seconds{municipality_name=~"$municipality"})',
                instant=True,
            )
        )
        .unit("s")
    )
    d = d.with_row(Row("チャネル"))
    d = d.with_panel(
        panel(statetimeline, "到達できたか（チャネル・拠点別）", 12, 8)
        .with_target(
            q(
                f"max by (channel_id, vantage) (tsunagari_channel_reachable{{{SEL_M}}})",
                "{{channel_id}} @ {{vantage}}",
            )
        )
        .mappings(REACHABLE)
        .thresholds(thresholds([dm.Threshold(None, "red"), dm.Threshold(1, "green")]))
    )
    d = d.with_panel(
        panel(timeseries, "到達率（チャネル・拠点別、最新の訓練）", 12, 8)
        .with_target(
            q(
                f"max by (channel_id, vantage) (tsunagari_channel_reachability_ratio{{{SEL_M}}})",
                "{{channel_id}} @ {{vantage}}",
            )
        )
        .unit("percentunit")
        .min(0)
        .max(1)
    )
    d = d.with_panel(
        panel(heatmap, "遅延ヒートマップ: $channel", 24, 8)
        .description("受け手側で確認されるまでの遅延の分布（期間内の全送信）")
        .with_target(
            q(
                f'sum by (le) (increase(tsunagari_delivery_latency_seconds_bucket{{{SEL_M}, channel_id=~"$channel"}}[$__rate_interval]))',
                "{{le}}",
                fmt="heatmap",
            )
        )
        .calculate(False)
        .repeat("channel")
        .repeat_direction("h")
        .max_per_row(3)
    )
    d = d.with_panel(
        panel(timeseries, "遅延 p50・p95（最新の訓練、チャネル・拠点別）", 12, 8)
        .with_target(
            q(
                f"max by (channel_id, vantage) (tsunagari_channel_latency_p50_seconds{{{SEL_M}}})",
                "{{channel_id}} p50 @ {{vantage}}",
            )
        )
        .with_target(
            q(
                f"max by (channel_id, vantage) (tsunagari_channel_latency_p95_seconds{{{SEL_M}}})",
                "{{channel_id}} p95 @ {{vantage}}",
                ref="B",
            )
        )
        .unit("s")
    )
    d = d.with_panel(
        panel(bargauge, "遅延 p95（表示期間内の全送信）", 12, 8)
        .with_target(
            q(
                "histogram_quantile(0.95, sum by (le, channel_id, vantage) "
                f"(increase(tsunagari_delivery_latency_seconds_bucket{{{SEL_M}}}[$__range])))",
                "{{channel_id}} @ {{vantage}}",
                instant=True,
            )
        )
        .unit("s")
        .orientation(common.VizOrientation.HORIZONTAL)
    )
    d = d.with_panel(
        standing_table(
            "この団体の遅延の比較（種別・分位別、最新の訓練）/ Latency standing of this municipality",
            "latency_standing",
            f"{MUNI}, scenario, vantage, channel_kind, stat",
            SEL_M,
            LATENCY_STANDING_ABOUT,
            24,
        )
    )
    d = d.with_panel(
        panel(timeseries, "観測の誤差の上限", 12, 8)
        .description("受け手側の観測が申告した、着信時刻の誤差の上限")
        .with_target(
            q(
                f"max by (channel_id, vantage) (tsunagari_observer_error_bound_seconds{{{SEL_M}}})",
                "{{channel_id}} @ {{vantage}}",
            )
        )
        .unit("s")
    )
    d = d.with_panel(
        tls_left(
            "TLS 証明書の期限までの残り時間",
            "channel_id",
            "{{channel_id}}",
            SEL_M,
            12,
            8,
            'municipality_name=~"$municipality"',
        )
    )
    d = d.with_row(Row("結果の内訳"))
    d = d.with_panel(
        panel(piechart, "結果の内訳（最新の訓練）", 8, 8).with_target(
            q(
                f"sum by (outcome) (tsunagari_last_drill_deliveries{{{SEL_M}}})",
                "{{outcome}}",
                instant=True,
            )
        )
    )
    d = d.with_panel(
        panel(table, "チャネル別の結果と証拠（最新の訓練）", 16, 8)
        .description(
            "証拠: seen = 受け手側で着信確認、receipt = 事業者・携帯会社の受信報告のみ（着信は未確認）、"
            "accepted = 受付のみ、none = 届かなかったもの。drill_outage = 訓練自身が起こした停止中の送信（採点しない）"
        )
        .with_target(
            q(
                f"sum by (channel_id, channel_kind, vantage, outcome, evidence) (tsunagari_last_drill_deliveries{{{SEL_M}}})",
                fmt="table",
                instant=True,
            )
        )
    )
    d = d.with_panel(
        panel(timeseries, "結果の推移（送信数）", 24, 8)
        .with_target(
            q(
                f"sum by (outcome) (increase(tsunagari_deliveries_total{{{SEL_M}}}[$__rate_interval]))",
                "{{outcome}}",
            )
        )
        .draw_style(common.GraphDrawStyle.BARS)
    )
    d = d.with_row(Row("代替経路と点呼"))
    d = d.with_panel(
        panel(stat, "代替経路（フォールバック）で届いたか", 6, 6)
        .with_target(
            q(
                f"max by (vantage) (tsunagari_fallback_reached{{{SEL_M}}})",
                "{{vantage}}",
                instant=True,
            )
        )
        .mappings(value_text({"1": ("届いた", "green"), "0": ("届かず", "red")}))
    )
    d = d.with_panel(
        panel(stat, "代替経路で届くまで", 6, 6)
        .with_target(
            q(
                f"max by (vantage) (tsunagari_fallback_latency_seconds{{{SEL_M}}})",
                "{{vantage}}",
                instant=True,
            )
        )
        .unit("s")
    )
    d = d.with_panel(
        panel(stat, "点呼の回答（人）", 6, 6)
        .with_target(q(f"sum(tsunagari_roll_call_answered{{{SEL_M}}})", "回答", instant=True))
        .with_target(
            q(f"sum(tsunagari_roll_call_expected{{{SEL_M}}})", "対象", instant=True, ref="B")
        )
    )
    d = d.with_panel(
        panel(stat, "点呼の回答率", 6, 6)
        .with_target(q(f"min(tsunagari_roll_call_answered_ratio{{{SEL_M}}})", instant=True))
        .unit("percentunit")
        .thresholds(thresholds([dm.Threshold(None, "red"), dm.Threshold(1, "green")]))
    )
    return surge_rows(d)


def surge_query(metric: str, legend: str = "", agg: str = "max", **kw: Any) -> Dataquery:
    """``tsunagari_surge_<metric>`` of the municipality, per channel and vantage point."""
    return q(
        f"{agg} by (channel_id, vantage) (tsunagari_surge_{metric}{{{SEL_M}}})",
        "{{channel_id}} " + (legend + " " if legend else "") + "@ {{vantage}}",
        **kw,
    )


def surge_rows(d: Dashboard) -> Dashboard:
    """The latest surge of each channel: where the SLO broke, and the load it carried."""
    d = d.with_row(Row("負荷試験（サージ）"))
    d = d.with_panel(
        panel(bargauge, "SLO を保てた負荷と破綻点（通/秒、最新のサージ）", 12, 8)
        .description(
            "最新のサージで SLO を満たした最大の負荷と、初めて SLO を割った負荷（破綻点）。"
            "破綻点がなければ最後まで SLO を満たした。"
        )
        .with_target(surge_query("held_up_to_messages_per_second", "保てた負荷", instant=True))
        .with_target(
            surge_query("breaking_point_messages_per_second", "破綻点", instant=True, ref="B")
        )
        .unit("none")
        .min(0)
        .orientation(common.VizOrientation.HORIZONTAL)
    )
    d = d.with_panel(
        panel(stat, "負荷下で SLO を保てたか（最新のサージ）", 6, 8)
        .with_target(surge_query("slo_held", agg="min", instant=True))
        .mappings(value_text({"1": ("保てた", "green"), "0": ("破綻", "red")}))
    )
    d = d.with_panel(
        panel(stat, "サージの負荷の失敗率", 6, 8)
        .description("最新のサージで失敗した（拒否・429・エラー）負荷メッセージの割合")
        .with_target(surge_query("failure_ratio", instant=True))
        .unit("percentunit")
        .thresholds(
            thresholds(
                [
                    dm.Threshold(None, "green"),
                    dm.Threshold(0.01, "yellow"),
                    dm.Threshold(0.1, "red"),
                ]
            )
        )
    )
    d = d.with_panel(
        panel(timeseries, "サージでかけた負荷と実測（通/秒、最大の段）", 12, 8)
        .with_target(surge_query("offered_peak_messages_per_second", "負荷"))
        .with_target(surge_query("achieved_messages_per_second", "実測", ref="B"))
    )
    d = d.with_panel(
        panel(timeseries, "サージの負荷メッセージの応答時間 p50・p95", 12, 8)
        .with_target(surge_query("load_latency_p50_seconds", "p50"))
        .with_target(surge_query("load_latency_p95_seconds", "p95", ref="B"))
        .unit("s")
    )
    return d


# --------------------------------------------------------------------------- drill run


def drill_run() -> Dashboard:
    d = variables(
        board(
            "繋がり 訓練の実行",
            "tsunagari-drill-run",
            "One drill run from start to finish / 1 回の訓練の経過",
        )
    ).time("now-1h", "now")
    d = d.annotation(
        AnnotationQuery()
        .name("訓練開始")
        .datasource(DS)
        .enable(True)
        .icon_color("blue")
        .expr(f"changes(tsunagari_drill_last_start_timestamp_seconds{{{SEL}}}[2m]) > 0")
    ).annotation(
        AnnotationQuery()
        .name("訓練終了")
        .datasource(DS)
        .enable(True)
        .icon_color("green")
        .expr(f"changes(tsunagari_drill_last_finish_timestamp_seconds{{{SEL}}}[2m]) > 0")
    )
    d = d.with_panel(
        panel(stat, "開始", 6, 5)
        .with_target(
            q(f"max(tsunagari_drill_last_start_timestamp_seconds{{{SEL}}}) * 1000", instant=True)
        )
        .unit("dateTimeAsIso")
    )
    d = d.with_panel(
        panel(stat, "終了", 6, 5)
        .with_target(
            q(f"max(tsunagari_drill_last_finish_timestamp_seconds{{{SEL}}}) * 1000", instant=True)
        )
        .unit("dateTimeAsIso")
    )
    d = d.with_panel(
        panel(stat, "所要時間", 6, 5)
        .with_target(q(f"max(tsunagari_drill_duration_seconds{{{SEL}}})", instant=True))
        .unit("s")
    )
    d = d.with_panel(
        panel(stat, "状態", 6, 5)
        .with_target(q(f"max(tsunagari_drill_running{{{SEL}}})", instant=True))
        .mappings(value_text({"1": ("実行中", "blue"), "0": ("終了", "green")}))
    )
    d = d.with_panel(
        panel(statetimeline, "実行中の訓練", 24, 5)
        .with_target(
            q(
                f"max by (scenario, vantage) (tsunagari_drill_running{{{SEL}}})",
                "{{scenario}} @ {{vantage}}",
            )
        )
        .mappings(value_text({"1": ("実行中", "blue"), "0": ("待機", "transparent")}))
    )
    d = d.with_panel(
        panel(timeseries, "送達の推移（結果別）", 12, 9)
        .description("スクレイプ間隔ごとに journal に記録された訓練メッセージの数")
        .with_target(
            q(
                f"sum by (outcome) (increase(tsunagari_deliveries_total{{{SEL}}}[$__rate_interval]))",
                "{{outcome}}",
            )
        )
        .draw_style(common.GraphDrawStyle.BARS)
    )
    d = d.with_panel(
        panel(timeseries, "到達した訓練メッセージ（団体別）", 12, 9)
        .with_target(
            q(
                f'sum by (municipality_name) (increase(tsunagari_deliveries_total{{{SEL}, outcome=~"delivered|late"}}[$__rate_interval]))',
                "{{municipality_name}}",
            )
        )
        .draw_style(common.GraphDrawStyle.BARS)
    )
    d = d.with_panel(
        panel(timeseries, "累計の訓練メッセージ（結果別）", 24, 8).with_target(
            q(f"sum by (outcome) (tsunagari_deliveries_total{{{SEL}}})", "{{outcome}}")
        )
    )
    d = d.with_panel(  # where the chain broke and why (drills.core.taxonomy)
        panel(bargauge, "届かなかった記録（段階・原因別、最新の訓練）", 24, 8)
        .description(
            "最新の訓練で届かなかった記録（遅延を含む）。段階: registry 登録・設定 / send 送信 / "
            "transit 伝達経路 / far_end 受け手側の確認。原因: auth 認証・権限 / config 設定誤り / "
            "connection 接続不良 / congestion 混雑・制限 / delay 遅延 / unknown 不明"
        )
        .with_target(
            q(
                f"sum by (stage, cause) (tsunagari_drill_failures{{{SEL}}})",
                "{{stage}} · {{cause}}",
                instant=True,
            )
        )
        .orientation(common.VizOrientation.HORIZONTAL)
    )
    return send_wait_panels(d)


SEND_WAIT_ABOUT = (
    "ハーネス自身が各メッセージを送り出すまで待たせた時間（送信ペースの調整・空き接続の待ち・"
    "混み合ったイベントループ）。チャネルの遅延ではなく（遅延は実際に送り出した時点から測る）、"
    "点数にも含めない。待ち時間の記録がない訓練ではなし / The harness's own wait before each "
    "message left (pacing, a free connection, a busy event loop): not the channel's latency "
    "(latencies are timed from the moment a message left) and not scored"
)


def send_wait_panels(d: Dashboard) -> Dashboard:
    """The harness's own send-side wait of the latest drill, apart from any latency."""
    wait = "tsunagari_drill_send_queue_seconds"
    d = d.with_panel(
        panel(
            stat,
            "ハーネスの送信待ち（最新の訓練・遅延ではない）/ Harness send wait (not latency)",
            8,
            8,
        )
        .description(SEND_WAIT_ABOUT)
        .with_target(q(f'max({wait}{{{SEL}, stat="p50"}})', "p50", instant=True))
        .with_target(q(f'max({wait}{{{SEL}, stat="p95"}})', "p95", instant=True, ref="B"))
        .with_target(q(f'max({wait}{{{SEL}, stat="max"}})', "最大 / max", instant=True, ref="C"))
        .unit("s")
        .thresholds(thresholds([dm.Threshold(None, "blue")]))  # a measure, not a verdict
    )
    return d.with_panel(
        panel(
            timeseries,
            "ハーネスの送信待ちの推移（p50・p95・最大）/ Harness send wait over drills",
            16,
            8,
        )
        .description(SEND_WAIT_ABOUT)
        .with_target(
            q(
                f"max by (scenario, vantage, stat) ({wait}{{{SEL}}})",
                "{{scenario}} @ {{vantage}} {{stat}}",
            )
        )
        .unit("s")
    )


DASHBOARDS = {
    "grafana/cio-overview.json": cio_overview,
    "grafana/municipality-detail.json": municipality_detail,
    "grafana/drill-run.json": drill_run,
}


# --------------------------------------------------------------------------- alert rules


def _alert(
    name: str, expr: str, for_: str, severity: str, ja: str, en: str, **extra: str
) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": for_,
        "labels": {"severity": severity, "team": "tsunagari"},
        "annotations": {"summary": f"{ja} / {en}", **extra},
    }


MUNI_RULE_LABELS = "municipality_code, municipality_name"
# Failing for this long before it pages: a minute's blip (a server restart) does not.
PREFLIGHT_FOR = "5m"

ALERT_RULES: dict[str, Any] = {
    "groups": [
        {
            "name": "tsunagari",
            "rules": [
                _alert(
                    "TsunagariReadinessLow",
                    f"tsunagari_readiness_score < {READINESS_THRESHOLD}",
                    "5m",
                    "warning",
                    f"{{{{ $labels.municipality_name }}}} の即応性スコアが {{{{ $value }}}}（{READINESS_THRESHOLD} 未満）",
                    f"readiness of {{{{ $labels.municipality_code }}}} is {{{{ $value }}}} (below {READINESS_THRESHOLD})",
                    scenario="{{ $labels.scenario }} @ {{ $labels.vantage }}",
                ),
                _alert(
                    "TsunagariChannelUnreachableTwice",
                    "tsunagari_channel_unreachable_streak >= 2",
                    "5m",
                    "critical",
                    "{{ $labels.municipality_name }} の {{ $labels.channel_id }} が {{ $value }} 回続けて不通",
                    "channel {{ $labels.channel_id }} of {{ $labels.municipality_code }} unreachable in {{ $value }} consecutive drills",
                ),
                _alert(
                    "TsunagariDrillOverdue",
                    (
                        f"(time() - max by ({MUNI_RULE_LABELS}) (tsunagari_municipality_last_drill_timestamp_seconds))\n"
                        f"  > on (municipality_code) group_left\n"
                        f"max by (municipality_code) (tsunagari_municipality_drill_interval_seconds)\n"
                        f"or on (municipality_code)\n"
                        f"(max by ({MUNI_RULE_LABELS}) (tsunagari_municipality_drill_interval_seconds)\n"
                        f"  unless on (municipality_code)\n"
                        f"max by (municipality_code) (tsunagari_municipality_last_drill_timestamp_seconds))"
                    ),
                    "0m",
                    "warning",
                    "{{ $labels.municipality_name }} が訓練間隔を超えて訓練されていません",
                    "{{ $labels.municipality_code }} has not been drilled within its drill_interval",
                ),
                _alert(
                    "TsunagariTLSCertificateExpiring",
                    (
                        "min by (municipality_code, municipality_name, channel_id, channel_kind) (\n"
                        "  tsunagari_tls_cert_expiry_timestamp_seconds\n"
                        "  or tsunagari_check_tls_cert_expiry_timestamp_seconds\n"
                        f") - time() < {TLS_WARNING_DAYS} * 86400"
                    ),
                    "5m",
                    "warning",
                    "{{ $labels.municipality_name }} の {{ $labels.channel_id }} の TLS 証明書が {{ $value | humanizeDuration }} 後に期限切れ",
                    "TLS certificate of {{ $labels.channel_id }} ({{ $labels.municipality_code }}) expires in {{ $value | humanizeDuration }}",
                ),
                _alert(
                    "TsunagariPreflightFailing",
                    f"max by ({MUNI_RULE_LABELS}, channel_id, channel_kind) (tsunagari_check_up) == 0",
                    PREFLIGHT_FOR,
                    "critical",
                    "{{ $labels.municipality_name }} の {{ $labels.channel_id }} がチェックに失敗しています（送信できない可能性）",
                    "preflight check of {{ $labels.channel_id }} ({{ $labels.municipality_code }}) is failing: the channel may not deliver",
                ),
                _alert(
                    "TsunagariRollCallIncomplete",
                    "tsunagari_roll_call_answered < tsunagari_roll_call_expected",
                    "5m",
                    "warning",
                    "{{ $labels.municipality_name }} の点呼で未回答者がいます（回答 {{ $value }} 人）",
                    "roll call of {{ $labels.municipality_code }} incomplete ({{ $value }} answered)",
                ),
            ],
        }
    ]
}

RULES_FILE = "prometheus/tsunagari.rules.yml"


# --------------------------------------------------------------------------- output


def dashboard_json(d: Dashboard) -> str:
    raw = json.loads(JSONEncoder().encode(d.build()))
    return json.dumps(raw, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


class _RulesDumper(yaml.SafeDumper):
    """Multi-line expressions as ``|`` blocks, so the rules file reads like PromQL."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_RulesDumper.add_representer(str, _str)


def rules_yaml() -> str:
    header = "# Generated by dashboards/build.py — edit there, then run it.\n"
    return header + yaml.dump(
        ALERT_RULES, Dumper=_RulesDumper, allow_unicode=True, sort_keys=False, width=200
    )


def render_all() -> dict[str, str]:
    """Every generated file: relative path → content."""
    out = {path: dashboard_json(make()) for path, make in DASHBOARDS.items()}
    out[RULES_FILE] = rules_yaml()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if a committed file is out of date"
    )
    args = parser.parse_args(argv)
    stale = []
    for rel, text in render_all().items():
        path = HERE / rel
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(rel)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(HERE.parent)}")
    if stale:
        print("out of date (run python dashboards/build.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
