"""The municipality detail board: one municipality channel by channel — reachability,
latency, outcomes and evidence, fallback and roll call, and its latest surges."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import (
    bargauge,
    heatmap,
    piechart,
    stat,
    timeseries,
)
from grafana_foundation_sdk.builders.dashboard import Dashboard, Row
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dm

from dashboards.panels import (
    LATENCY_STANDING_ABOUT,
    MUNI,
    SEL_M,
    UP_STEPS,
    bars_now,
    board,
    deliveries_bars,
    graded,
    panel,
    per_channel,
    q,
    standing_table,
    stat_now,
    table_now,
    thresholds,
    tls_left,
    up_down,
    up_timeline,
    variables,
)


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
        graded(stat_now("即応性スコア", f"min(tsunagari_readiness_score{{{SEL_M}}})", 6, 6))
    )
    d = d.with_panel(
        stat_now("前回の訓練からの変化", f"min(tsunagari_readiness_score_change{{{SEL_M}}})", 6, 6)
        .decimals(1)
        .thresholds(thresholds([dm.Threshold(None, "red"), dm.Threshold(0, "green")]))
    )
    d = d.with_panel(
        stat_now(
            "最後の訓練からの経過時間",
            f"time() - max(tsunagari_municipality_last_drill_timestamp_seconds{{{SEL_M}}})",
            6,
            6,
        ).unit("s")
    )
    d = d.with_panel(
        stat_now(
            "訓練間隔（レジストリ）",
            'max(tsunagari_municipality_drill_interval_seconds{municipality_name=~"$municipality"})',
            6,
            6,
        ).unit("s")
    )
    d = d.with_row(Row("チャネル"))
    d = d.with_panel(
        up_timeline(
            "到達できたか（チャネル・拠点別）",
            per_channel("tsunagari_channel_reachable"),
            "到達",
            "不通",
            12,
        )
    )
    d = d.with_panel(
        panel(timeseries, "到達率（チャネル・拠点別、最新の訓練）", 12, 8)
        .with_target(per_channel("tsunagari_channel_reachability_ratio"))
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
        .with_target(per_channel("tsunagari_channel_latency_p50_seconds", "p50"))
        .with_target(per_channel("tsunagari_channel_latency_p95_seconds", "p95", ref="B"))
        .unit("s")
    )
    d = d.with_panel(
        bars_now(
            "遅延 p95（表示期間内の全送信）",
            "histogram_quantile(0.95, sum by (le, channel_id, vantage) "
            f"(increase(tsunagari_delivery_latency_seconds_bucket{{{SEL_M}}}[$__range])))",
            "{{channel_id}} @ {{vantage}}",
            12,
            8,
        ).unit("s")
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
        .with_target(per_channel("tsunagari_observer_error_bound_seconds"))
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
        table_now(
            "チャネル別の結果と証拠（最新の訓練）",
            f"sum by (channel_id, channel_kind, vantage, outcome, evidence) (tsunagari_last_drill_deliveries{{{SEL_M}}})",
            "証拠: seen = 受け手側で着信確認、receipt = 事業者・携帯会社の受信報告のみ（着信は未確認）、"
            "accepted = 受付のみ、none = 届かなかったもの。drill_outage = 訓練自身が起こした停止中の送信（採点しない）",
            16,
            8,
        )
    )
    d = d.with_panel(deliveries_bars("結果の推移（送信数）", "outcome", SEL_M, 24, 8))
    d = d.with_row(Row("代替経路と点呼"))
    d = d.with_panel(
        stat_now(
            "代替経路（フォールバック）で届いたか",
            f"max by (vantage) (tsunagari_fallback_reached{{{SEL_M}}})",
            6,
            6,
            "{{vantage}}",
        ).mappings(up_down("届いた", "届かず"))
    )
    d = d.with_panel(
        stat_now(
            "代替経路で届くまで",
            f"max by (vantage) (tsunagari_fallback_latency_seconds{{{SEL_M}}})",
            6,
            6,
            "{{vantage}}",
        ).unit("s")
    )
    d = d.with_panel(
        stat_now(
            "点呼の回答（人）", f"sum(tsunagari_roll_call_answered{{{SEL_M}}})", 6, 6, "回答"
        ).with_target(
            q(f"sum(tsunagari_roll_call_expected{{{SEL_M}}})", "対象", instant=True, ref="B")
        )
    )
    d = d.with_panel(
        stat_now("点呼の回答率", f"min(tsunagari_roll_call_answered_ratio{{{SEL_M}}})", 6, 6)
        .unit("percentunit")
        .thresholds(thresholds(UP_STEPS))
    )
    return surge_rows(d)


def surge_query(metric: str, legend: str = "", agg: str = "max", **kw: Any) -> Dataquery:
    """``tsunagari_surge_<metric>`` of the municipality, per channel and vantage point."""
    return per_channel(f"tsunagari_surge_{metric}", legend, agg, **kw)


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
        .mappings(up_down("保てた", "破綻"))
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
