"""The drill run board: one drill run from start to finish, and the harness's own
send-side wait (not a latency)."""

from __future__ import annotations

from grafana_foundation_sdk.builders import stat, statetimeline
from grafana_foundation_sdk.builders.dashboard import AnnotationQuery, Dashboard
from grafana_foundation_sdk.models import dashboard as dm

from dashboards.panels import (
    DS,
    SEL,
    bars_now,
    board,
    deliveries_bars,
    graph,
    panel,
    q,
    stat_now,
    thresholds,
    value_text,
    variables,
)


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
    for title, metric in (
        ("開始", "tsunagari_drill_last_start_timestamp_seconds"),
        ("終了", "tsunagari_drill_last_finish_timestamp_seconds"),
    ):
        d = d.with_panel(
            stat_now(title, f"max({metric}{{{SEL}}}) * 1000", 6, 5).unit("dateTimeAsIso")
        )
    d = d.with_panel(
        stat_now("所要時間", f"max(tsunagari_drill_duration_seconds{{{SEL}}})", 6, 5).unit("s")
    )
    d = d.with_panel(
        stat_now("状態", f"max(tsunagari_drill_running{{{SEL}}})", 6, 5).mappings(
            value_text({"1": ("実行中", "blue"), "0": ("終了", "green")})
        )
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
        deliveries_bars("送達の推移（結果別）", "outcome", SEL, 12, 9).description(
            "スクレイプ間隔ごとに journal に記録された訓練メッセージの数"
        )
    )
    d = d.with_panel(
        deliveries_bars(
            "到達した訓練メッセージ（団体別）",
            "municipality_name",
            f'{SEL}, outcome=~"delivered|late"',
            12,
            9,
        )
    )
    d = d.with_panel(
        graph(
            "累計の訓練メッセージ（結果別）",
            f"sum by (outcome) (tsunagari_deliveries_total{{{SEL}}})",
            "{{outcome}}",
            24,
            8,
        )
    )
    d = d.with_panel(  # where the chain broke and why (drills.core.taxonomy)
        bars_now(
            "届かなかった記録（段階・原因別、最新の訓練）",
            f"sum by (stage, cause) (tsunagari_drill_failures{{{SEL}}})",
            "{{stage}} · {{cause}}",
            24,
            8,
        ).description(
            "最新の訓練で届かなかった記録（遅延を含む）。段階: registry 登録・設定 / send 送信 / "
            "transit 伝達経路 / far_end 受け手側の確認。原因: auth 認証・権限 / config 設定誤り / "
            "connection 接続不良 / congestion 混雑・制限 / delay 遅延 / unknown 不明"
        )
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
        graph(
            "ハーネスの送信待ちの推移（p50・p95・最大）/ Harness send wait over drills",
            f"max by (scenario, vantage, stat) ({wait}{{{SEL}}})",
            "{{scenario}} @ {{vantage}} {{stat}}",
            16,
            8,
        )
        .description(SEND_WAIT_ABOUT)
        .unit("s")
    )
