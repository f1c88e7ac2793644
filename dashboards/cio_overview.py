"""The CIO overview board: every municipality at a glance — readiness now, on a map,
compared among the drill's participants, over time, and the preflight checks."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import geomap
from grafana_foundation_sdk.builders.common import FrameGeometrySource, MapLayerOptions
from grafana_foundation_sdk.builders.dashboard import Dashboard, Row
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import geomap as gm

from dashboards.panels import (
    LATENCY_STANDING_ABOUT,
    MUNI,
    SEL,
    bars_now,
    board,
    failing_count,
    graded,
    graph,
    panel,
    q,
    standing_table,
    table_now,
    thresholds,
    tls_left,
    up_timeline,
    variables,
)


def cio_overview() -> Dashboard:
    d = variables(
        board(
            "繋がり 即応性 総覧（都・区市町村）",
            "tsunagari-cio-overview",
            "Readiness of every municipality at a glance / 全団体の即応性を一目で",
        )
    ).time("now-7d", "now")
    d = d.with_row(Row("いまの状態"))
    by_name = "{{municipality_name}}"
    d = d.with_panel(
        graded(
            bars_now(
                "即応性スコア（団体別・最新の訓練）",
                f"min by ({MUNI}) (tsunagari_readiness_score{{{SEL}}})",
                by_name,
                12,
                10,
            )
        )
        .description("最新の訓練の即応性スコア（0〜100）。複数のシナリオ・拠点を選ぶと最も低い値。")
        .unit("none")
    )
    d = d.with_panel(
        failing_count(
            "不通のチャネル数",
            f"tsunagari_channel_reachable{{{SEL}}}",
            "最新の訓練で 1 通も受け手側に届かなかったチャネルの数",
            10,
        )
    )
    d = d.with_panel(
        bars_now(
            "最後の訓練からの経過時間",
            f"time() - max by ({MUNI}) (tsunagari_municipality_last_drill_timestamp_seconds{{{SEL}}})",
            by_name,
            8,
            10,
        )
        .description("その団体を含む最新の訓練が終わってからの時間")
        .unit("s")
    )
    for title, expr, description in (
        (
            "いま不通のチャネル",
            f"tsunagari_channel_unreachable_streak{{{SEL}}} > 0",
            "最新の訓練で 1 通も届かなかったチャネル（連続回数つき）",
        ),
        (
            "前回の訓練から悪化した団体",
            f"tsunagari_readiness_score_change{{{SEL}}} < 0",
            "即応性スコアが前回の訓練より下がった団体（値は変化幅）",
        ),
        (
            "新たに不通になったチャネル",
            f"tsunagari_channel_unreachable_streak{{{SEL}}} == 1",
            "前回の訓練では届いていた（または初めての訓練で）、今回届かなかったチャネル",
        ),
    ):
        d = d.with_panel(table_now(title, expr, description, 12, 8))
    d = d.with_panel(
        bars_now(
            "点呼（安否確認）の回答率",
            f"min by ({MUNI}) (tsunagari_roll_call_answered_ratio{{{SEL}}})",
            by_name,
            12,
            8,
        )
        .unit("percentunit")
        .min(0)
        .max(1)
        .thresholds(
            thresholds(
                [dm.Threshold(None, "red"), dm.Threshold(0.9, "yellow"), dm.Threshold(1, "green")]
            )
        )
    )
    d = map_row(d)
    d = comparison_row(d)
    d = d.with_row(Row("推移"))
    d = d.with_panel(
        graph(
            "即応性スコアの推移（90 日）",
            f"min by ({MUNI}) (tsunagari_readiness_score{{{SEL}}})",
            by_name,
            16,
            10,
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
        graded(panel(geomap, title, w, 12))
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
        bars_now(
            "比較の母数: 到着を確認できた団体数（種別別）/ Municipalities compared, by kind",
            f"max by (channel_kind) (tsunagari_drill_latency_measured_municipalities{{{SEL}}})",
            "{{channel_kind}}",
            6,
            10,
        )
        .description(
            "最新の訓練でその種別の到着を確認できた団体の数。10 未満の種別は遅延を比較しない"
            " / Municipalities with a confirmed arrival of the kind in the latest drill; a kind "
            "with fewer than 10 is not compared"
        )
        .min(0)
        .decimals(0)
        .thresholds(thresholds([dm.Threshold(None, "text"), dm.Threshold(10, "green")]))
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
        failing_count(
            "チェックに失敗しているチャネル数",
            "tsunagari_check_up",
            "送信せずに行うチェック（接続・TLS・ログイン・受け手側の読み取り）で失敗している"
            "チャネルの数。Prometheus が /probe をスクレイプした最新の結果",
            8,
        )
    )
    d = d.with_panel(
        failing_count(
            "ログインできない資格情報",
            "tsunagari_check_auth_ok",
            "送信側または受け手側の資格情報が拒否されたチャネルの数",
            8,
        )
    )
    d = d.with_panel(
        table_now(
            "失敗したチェックの段階",
            f"max by ({MUNI}, channel_id, channel_kind, phase, stage) "
            "(tsunagari_check_phase_ok == 0)",
            "失敗した段階（phase: dns・connect・tls・auth・read・account）と名前（stage）",
            16,
            8,
        )
    )
    d = d.with_panel(
        up_timeline(
            "チェックの結果（チャネル別）",
            q(
                f"max by ({MUNI}, channel_id) (tsunagari_check_up)",
                "{{municipality_name}} {{channel_id}}",
            ),
            "正常",
            "失敗",
            12,
        )
    )
    return d.with_panel(
        graph(
            "チェックの段階別の所要時間",
            "sum by (municipality_name, channel_id, phase) "
            "(tsunagari_check_phase_duration_seconds)",
            "{{municipality_name}} {{channel_id}} {{phase}}",
            12,
            8,
        )
        .description("段階の種類（dns・connect・tls・auth・read・account）ごとの所要時間の合計")
        .unit("s")
    )
