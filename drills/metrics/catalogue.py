"""The metric catalogue: every metric Tsunagari exports, its type, labels and meaning.

One table (:data:`CATALOGUE`) that the collector (:mod:`drills.metrics.collector`)
emits, the README lists (:func:`catalogue_markdown`, kept in sync by a test) and
the dashboards query. Label values are bounded: municipality and channel come
from the registry, ``outcome`` and ``evidence`` from fixed enumerations, as do
``stage`` and ``cause`` (:mod:`drills.core.taxonomy`), ``stat`` (p50, p95 of the latency
standing, :data:`drills.core.standing.QUANTILES`; p50, p95, max of the send wait — a gauge
may not carry ``quantile``, promtool says).

    >>> CATALOGUE["tsunagari_deliveries_total"].type
    'counter'
"""

from __future__ import annotations

from dataclasses import dataclass

from drills.surge.summary import SURGE_GAUGES

__all__ = [
    "CATALOGUE",
    "CHANNEL",
    "CHECKS",
    "MUNI",
    "RUN",
    "MetricSpec",
    "catalogue_markdown",
    "checks_markdown",
]

MUNI = ("municipality_code", "municipality_name")
CHANNEL = (*MUNI, "channel_id", "channel_kind")
RUN = ("scenario", "vantage")


@dataclass(frozen=True)
class MetricSpec:
    """One exported metric: its name, type, labels and meaning (ja / en)."""

    name: str
    type: str  # counter | gauge | histogram
    labels: tuple[str, ...]
    ja: str
    en: str

    @property
    def help(self) -> str:
        return f"{self.en} / {self.ja}"


_SPECS = (
    MetricSpec(
        "tsunagari_deliveries_total",
        "counter",
        (*CHANNEL, *RUN, "outcome", "evidence"),
        "journal に記録された訓練メッセージの数（結果別・証拠別、全訓練の累計）。"
        "証拠: seen（受け手側で着信確認）、receipt（事業者・携帯会社の受信報告のみ）、"
        "accepted（受付のみ）、none（不達・拒否・ハーネス障害・訓練による停止）",
        "Drill messages journalled, by outcome (delivered, late, accepted, lost, rejected, "
        "error, drill_outage) and evidence (seen, receipt, accepted; none for the others), "
        "over all drills",
    ),
    MetricSpec(
        "tsunagari_delivery_latency_seconds",
        "histogram",
        (*CHANNEL, *RUN),
        "送信から受け手側で確認されるまでの遅延（届いたメッセージのみ、全訓練の累計）",
        "Send-to-seen-at-the-far-end latency of confirmed messages (delivered or late), "
        "over all drills",
    ),
    MetricSpec(
        "tsunagari_last_drill_deliveries",
        "gauge",
        (*CHANNEL, *RUN, "outcome", "evidence"),
        "最新の訓練での結果別・証拠別のメッセージ数",
        "Drill messages by outcome and evidence in the latest drill of the channel",
    ),
    MetricSpec(
        "tsunagari_channel_reachable",
        "gauge",
        (*CHANNEL, *RUN),
        "最新の訓練で 1 通以上の到達を確認したら（着信確認または受信報告）1、1 通も届かなければ 0",
        "1 if at least one message reached the far end (seen or carrier receipt) in the latest "
        "drill, 0 if none did (absent when the drill could not tell: harness errors, drill "
        "outages or accepted-only)",
    ),
    MetricSpec(
        "tsunagari_channel_reachability_ratio",
        "gauge",
        (*CHANNEL, *RUN),
        "最新の訓練の到達率（届いた数 ÷ ハーネス障害と訓練による停止を除く送信数、スコアカードと同じ）",
        "Reachability in the latest drill, as in the scorecard: "
        "(delivered + late) / (sent - error - drill_outage)",
    ),
    MetricSpec(
        "tsunagari_channel_unreachable_streak",
        "gauge",
        (*CHANNEL, *RUN),
        "連続して不通だった直近の訓練の回数（届けば 0、訓練による停止だけの訓練は数えない）",
        "Consecutive latest drills in which the channel was unreachable (0 once it is reached; "
        "drills with only harness errors or drill outages are skipped)",
    ),
    MetricSpec(
        "tsunagari_channel_latency_p50_seconds",
        "gauge",
        (*CHANNEL, *RUN),
        "最新の訓練での遅延の中央値（スコアカードの p50 と同じ）",
        "Median latency of the latest drill (the scorecard's p50)",
    ),
    MetricSpec(
        "tsunagari_channel_latency_p95_seconds",
        "gauge",
        (*CHANNEL, *RUN),
        "最新の訓練での遅延の 95 パーセンタイル（スコアカードの p95 と同じ）",
        "95th percentile latency of the latest drill (the scorecard's p95)",
    ),
    MetricSpec(
        "tsunagari_observer_error_bound_seconds",
        "gauge",
        (*CHANNEL, *RUN),
        "最新の訓練で受け手側の観測が報告した誤差の上限（最大値）",
        "Largest error bound the far-end observer reported in the latest drill",
    ),
    MetricSpec(
        "tsunagari_tls_cert_expiry_timestamp_seconds",
        "gauge",
        (*CHANNEL, *RUN),
        "最新の訓練で見た TLS 証明書の有効期限（UNIX 時刻、日単位の切り捨てから求めた下限）",
        "Expiry (notAfter) of the TLS certificate seen in the latest drill, Unix time "
        "(a lower bound when the probe reports whole days left)",
    ),
    MetricSpec(
        "tsunagari_readiness_score",
        "gauge",
        (*MUNI, *RUN),
        "最新の訓練の即応性スコア（0〜100、scorecard.json と同じ）",
        "Readiness score (0-100) of the latest drill, as in scorecard.json",
    ),
    MetricSpec(
        "tsunagari_readiness_score_change",
        "gauge",
        (*MUNI, *RUN),
        "即応性スコアの前回の訓練からの変化（負なら悪化）",
        "Readiness score of the latest drill minus that of the drill before it (negative: worse)",
    ),
    MetricSpec(
        "tsunagari_drill_scored_municipalities",
        "gauge",
        RUN,
        "最新の訓練で点数のついた団体の数（参加団体間の比較の母数。10 団体未満なら比較しない）",
        "Municipalities scored in the latest drill: those its comparison is among "
        "(none is compared below 10)",
    ),
    MetricSpec(
        "tsunagari_readiness_rank",
        "gauge",
        (*MUNI, *RUN),
        "最新の訓練の参加団体の中での即応性スコアの順位（1 が最上位、同点は同順位。"
        "参加 10 団体未満ならなし）",
        "Rank of the readiness score among the latest drill's municipalities (1 is best, ties "
        "share a rank; absent when fewer than 10 took part)",
    ),
    MetricSpec(
        "tsunagari_readiness_percentile",
        "gauge",
        (*MUNI, *RUN),
        "即応性スコアのパーセンタイル（(下回る団体数 + 同点数 ÷ 2) ÷ 団体数 × 100。"
        "参加 10 団体未満ならなし）",
        "Midrank percentile of the readiness score in the latest drill, "
        "100 × (below + tied / 2) / n (absent when fewer than 10 took part)",
    ),
    MetricSpec(
        "tsunagari_readiness_deviation_score",
        "gauge",
        (*MUNI, *RUN),
        "即応性スコアの偏差値（50 + 10 × (点数 − 平均) ÷ 母標準偏差、最新の訓練の参加団体の中で。"
        "参加 10 団体未満ならなし）",
        "偏差値 (deviation score) of the readiness score among the latest drill's "
        "municipalities: 50 + 10 × (score − mean) / population SD (absent when fewer than 10 "
        "took part)",
    ),
    MetricSpec(
        "tsunagari_drill_latency_measured_municipalities",
        "gauge",
        (*RUN, "channel_kind"),
        "最新の訓練でその種別の到着を確認できた団体の数（種別ごとの遅延の比較の母数。"
        "10 団体未満なら比較しない）",
        "Municipalities with a confirmed arrival of the channel kind in the latest drill: "
        "those its latency comparison is among (none is compared below 10)",
    ),
    MetricSpec(
        "tsunagari_latency_standing_rank",
        "gauge",
        (*MUNI, *RUN, "channel_kind", "stat"),
        "最新の訓練の参加団体の中での種別ごとの遅延（stat は p50・p95、団体のチャネルの到着を"
        "合わせる）の順位（短いほど上位で 1 が最上位、同じ値は同順位。10 団体未満ならなし）",
        "Rank of the municipality's p50 or p95 latency (stat) of a channel kind, its "
        "channels of the kind pooled, among the latest drill's municipalities (1 is fastest, "
        "ties share a rank; absent when fewer than 10 have the kind)",
    ),
    MetricSpec(
        "tsunagari_latency_standing_percentile",
        "gauge",
        (*MUNI, *RUN, "channel_kind", "stat"),
        "種別ごとの遅延のパーセンタイル（(遅い団体数 + 同じ値の団体数 ÷ 2) ÷ 団体数 × 100、"
        "高いほど速い。10 団体未満ならなし）",
        "Midrank percentile of the p50 or p95 latency of a channel kind in the latest drill, "
        "100 × (slower + tied / 2) / n: higher is faster (absent when fewer than 10 have the kind)",
    ),
    MetricSpec(
        "tsunagari_latency_standing_deviation_score",
        "gauge",
        (*MUNI, *RUN, "channel_kind", "stat"),
        "種別ごとの遅延の偏差値（50 + 10 × (平均 − 遅延) ÷ 母標準偏差、高いほど速い。"
        "10 団体未満ならなし）",
        "偏差値 (deviation score) of the p50 or p95 latency of a channel kind among the latest "
        "drill's municipalities: 50 + 10 × (mean − latency) / population SD, higher is faster "
        "(absent when fewer than 10 have the kind)",
    ),
    MetricSpec(
        "tsunagari_municipality_last_drill_timestamp_seconds",
        "gauge",
        (*MUNI, *RUN),
        "その団体を含む最新の訓練が終わった時刻（UNIX 時刻）",
        "When the latest drill that included the municipality ended, Unix time",
    ),
    MetricSpec(
        "tsunagari_municipality_drill_interval_seconds",
        "gauge",
        MUNI,
        "レジストリの drill_interval（この間隔を超えて訓練しないとアラート）",
        "The registry's drill_interval: the longest the municipality may go undrilled",
    ),
    MetricSpec(
        "tsunagari_municipality_info",
        "gauge",
        (*MUNI, "latitude", "longitude", "region"),
        "レジストリの団体の役所・役場の位置（常に 1。緯度・経度は度、0.001° 単位。region は pref・ku・"
        "tama・izu・ogasawara）。位置の表にない団体はなし。地図（Geomap）で点数と結合する",
        "Always 1, for each registered municipality whose office location is known: latitude and "
        "longitude (degrees, to 0.001°) and region (pref, ku, tama, izu, ogasawara) as labels, "
        "to join with the scores on a map (Geomap)",
    ),
    MetricSpec(
        "tsunagari_roll_call_expected",
        "gauge",
        (*MUNI, *RUN),
        "最新の点呼（安否確認）で回答を求めた人数",
        "People asked to answer in the latest roll call",
    ),
    MetricSpec(
        "tsunagari_roll_call_answered",
        "gauge",
        (*MUNI, *RUN),
        "最新の点呼で回答した人数",
        "People who answered the latest roll call",
    ),
    MetricSpec(
        "tsunagari_roll_call_answered_ratio",
        "gauge",
        (*MUNI, *RUN),
        "最新の点呼の回答率",
        "Share of people who answered the latest roll call",
    ),
    MetricSpec(
        "tsunagari_fallback_reached",
        "gauge",
        (*MUNI, *RUN),
        "最新の代替経路（フォールバック）訓練で届いたら 1、届かなければ 0",
        "1 if the latest fallback step reached the municipality over another channel, else 0",
    ),
    MetricSpec(
        "tsunagari_fallback_latency_seconds",
        "gauge",
        (*MUNI, *RUN),
        "最新の代替経路訓練で届くまでにかかった時間",
        "Time until the latest fallback step reached the municipality",
    ),
    *(
        MetricSpec(f"tsunagari_surge_{name}", "gauge", (*CHANNEL, *RUN), ja, en)
        for name, ja, en in SURGE_GAUGES
    ),
    MetricSpec(
        "tsunagari_drill_last_start_timestamp_seconds",
        "gauge",
        RUN,
        "最新の訓練の開始時刻（UNIX 時刻）",
        "When the latest drill started, Unix time",
    ),
    MetricSpec(
        "tsunagari_drill_last_finish_timestamp_seconds",
        "gauge",
        RUN,
        "最後に終わった訓練の終了時刻（UNIX 時刻、状態を問わない）",
        "When the latest drill that ended (in any status) ended, Unix time",
    ),
    MetricSpec(
        "tsunagari_drill_last_success_timestamp_seconds",
        "gauge",
        RUN,
        "最後に最後まで実行できた訓練の終了時刻（ハーネスとしての成功。チャネルの成否は別の指標）",
        "When the latest drill that ran to the end (status finished) ended, Unix time; "
        "channel results are in the other metrics",
    ),
    MetricSpec(
        "tsunagari_drill_failures",
        "gauge",
        (*RUN, "channel_kind", "stage", "cause"),
        "最新の訓練で届かなかった記録の数（遅延を含む）。stage はどこで途切れたか（registry・send・"
        "transit・far_end）、cause は原因（auth・config・connection・congestion・delay・unknown）。"
        "判定不能（ハーネス障害・中断）の記録は数えない",
        "Records of the latest drill that were not delivered (late included), by channel kind, "
        "stage (registry, send, transit, far_end: where the chain broke) and cause (auth, config, "
        "connection, congestion, delay, unknown); records not judged (harness fault, interrupted) "
        "are not counted",
    ),
    MetricSpec(
        "tsunagari_drill_duration_seconds",
        "gauge",
        RUN,
        "最後に終わった訓練の所要時間",
        "Wall time of the latest drill that ended",
    ),
    MetricSpec(
        "tsunagari_drill_send_queue_seconds",
        "gauge",
        (*RUN, "stat"),
        "最新の訓練でハーネス自身が各メッセージを送り出すまで待たせた時間（stat は p50・p95・max）。"
        "送信ペースの調整・空き接続の待ち・混み合ったイベントループの分で、チャネルの遅延ではなく"
        "（遅延は実際に送り出された時点から測る）、点数にも含めない。待ち時間の記録がない訓練ではなし",
        "The harness's own wait before each message left, in the latest drill (stat: p50, "
        "p95, max): pacing, a free connection, a busy event loop. Not the channel's latency "
        "(latencies are timed from the moment each message left) and not scored; absent when "
        "the drill recorded no wait",
    ),
    MetricSpec(
        "tsunagari_drill_running",
        "gauge",
        RUN,
        "訓練が実行中なら 1",
        "1 while a drill is running",
    ),
)

CATALOGUE: dict[str, MetricSpec] = {s.name: s for s in _SPECS}

# The preflight checks' metrics, served per target by ``/probe`` (drills.metrics.probe),
# never by ``/metrics``: a check is of now, not of a journalled drill (no scenario, vantage).
_CHECK_SPECS = (
    MetricSpec(
        "tsunagari_check_up",
        "gauge",
        CHANNEL,
        "チェックで送信できる状態と確認できたら 1、どこかの段階で失敗したら 0",
        "1 if the preflight check found the channel able to work, 0 if a phase failed",
    ),
    MetricSpec(
        "tsunagari_check_skipped",
        "gauge",
        CHANNEL,
        "チェックしなかったら 1（その種別にはチェックがないなど。失敗ではない）",
        "1 if the target was not checked (no check for its kind …); not a failure",
    ),
    MetricSpec(
        "tsunagari_check_phase_duration_seconds",
        "gauge",
        (*CHANNEL, "phase", "stage"),
        "チェックの段階ごとの所要時間。phase は dns・connect・tls・auth・read・account、"
        "stage はその段階の名前（smtp.auth など）",
        "Time taken by each phase of the check; phase is its class (dns, connect, tls, auth, "
        "read, account), stage its name (smtp.auth …)",
    ),
    MetricSpec(
        "tsunagari_check_phase_ok",
        "gauge",
        (*CHANNEL, "phase", "stage"),
        "チェックの段階が成功したら 1、失敗したら 0（失敗した段階でチェックは終わる）",
        "1 if the phase succeeded, 0 if it failed (the check stops at the first failure)",
    ),
    MetricSpec(
        "tsunagari_check_auth_ok",
        "gauge",
        CHANNEL,
        "資格情報でログインできたら 1、拒否されたら 0（認証の段階まで進まなければなし）",
        "1 if every credential logged in, 0 if one was refused (absent if no auth phase ran)",
    ),
    MetricSpec(
        "tsunagari_check_tls_cert_expiry_timestamp_seconds",
        "gauge",
        (*CHANNEL, "endpoint"),
        "チェックで見た TLS 証明書の有効期限（UNIX 時刻、endpoint は smtp・imap・https など）",
        "Expiry (notAfter) of each TLS certificate the check saw, Unix time "
        "(endpoint: smtp, imap, https …)",
    ),
    MetricSpec(
        "tsunagari_check_twilio_balance",
        "gauge",
        CHANNEL,
        "Twilio アカウントの残高（アカウントの通貨）",
        "Balance of the Twilio account, in the account's currency",
    ),
    MetricSpec(
        "tsunagari_check_twilio_cost_cap",
        "gauge",
        CHANNEL,
        "レジストリの費用上限（残高がこれを下回るとチェックは失敗）",
        "The registry's cost cap (the check fails when the balance is below it)",
    ),
    MetricSpec(
        "tsunagari_check_duration_seconds",
        "gauge",
        CHANNEL,
        "チェック全体の所要時間",
        "Wall time of the whole check",
    ),
    MetricSpec(
        "tsunagari_check_cache_age_seconds",
        "gauge",
        CHANNEL,
        "答えたチェック結果の古さ（最小間隔の間は前回の結果を返す。0 なら今回チェックした）",
        "Age of the result served: within the minimum interval the previous check is "
        "served again (0: checked for this scrape)",
    ),
)

CHECKS: dict[str, MetricSpec] = {s.name: s for s in _CHECK_SPECS}


def _markdown(specs: tuple[MetricSpec, ...]) -> str:
    lines = [
        "| metric | type | labels | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for s in specs:
        labels = ", ".join(s.labels)
        lines.append(f"| `{s.name}` | {s.type} | {labels} | {s.ja}<br>{s.en} |")
    return "\n".join(lines)


def catalogue_markdown() -> str:
    """The README table of every ``/metrics`` metric (kept in sync by a test)."""
    return _markdown(_SPECS)


def checks_markdown() -> str:
    """The README table of every ``/probe`` metric."""
    return _markdown(_CHECK_SPECS)
