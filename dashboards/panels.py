"""What every board is made of: the data source variable, the label selectors, the
query and panel helpers, the board's variables, the panel shapes the boards repeat (a stat
or bars of an instant query, a table, a graph, a 1/0 state over time), and the panels two
boards share (time left on TLS certificates, where a municipality stands among the drill's
participants)."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import bargauge, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.builders.common import TableSortByFieldState
from grafana_foundation_sdk.builders.dashboard import (
    Dashboard,
    DashboardLink,
    DatasourceVariable,
    QueryVariable,
    ThresholdsConfig,
)
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

DS = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
TAGS = ["tsunagari"]

TLS_WARNING_DAYS = 21

# Grade bands of drills.core.scoring.GRADES as Grafana thresholds.
GRADE_STEPS = [
    dm.Threshold(None, "red"),
    dm.Threshold(50, "orange"),
    dm.Threshold(75, "yellow"),
    dm.Threshold(90, "green"),
]

# A 1/0 gauge (reachable, check passed): red below 1, green at 1.
UP_STEPS = [dm.Threshold(None, "red"), dm.Threshold(1, "green")]

SEL = 'scenario=~"$scenario", vantage=~"$vantage"'
SEL_M = SEL + ', municipality_name=~"$municipality"'
MUNI = "municipality_code, municipality_name"


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


def up_down(up: str, down: str) -> list[dm.ValueMapping]:
    """A 1/0 gauge's values as words: *up* in green for 1, *down* in red for 0."""
    return value_text({"1": (up, "green"), "0": (down, "red")})


def per_channel(metric: str, legend: str = "", agg: str = "max", **kw: Any) -> Dataquery:
    """*metric* of the chosen municipality, per channel and vantage point."""
    return q(
        f"{agg} by (channel_id, vantage) ({metric}{{{SEL_M}}})",
        "{{channel_id}} " + (legend + " " if legend else "") + "@ {{vantage}}",
        **kw,
    )


# ---------------------------------------------------------------- repeated panel shapes


def stat_now(title: str, expr: str, w: int, h: int, legend: str | None = None) -> Any:
    """A stat of the instant query *expr*."""
    return panel(stat, title, w, h).with_target(q(expr, legend, instant=True))


def failing_count(title: str, series: str, description: str, h: int) -> Any:
    """How many of the 1/0 *series* are 0 now: green while none, red from one."""
    return (
        stat_now(title, f"count({series} == 0) or vector(0)", 4, h)
        .description(description)
        .thresholds(thresholds([dm.Threshold(None, "green"), dm.Threshold(1, "red")]))
    )


def bars_now(title: str, expr: str, legend: str, w: int, h: int) -> Any:
    """Horizontal bars of the instant query *expr*, one a series."""
    return (
        panel(bargauge, title, w, h)
        .with_target(q(expr, legend, instant=True))
        .orientation(common.VizOrientation.HORIZONTAL)
    )


def table_now(title: str, expr: str, description: str, w: int, h: int) -> Any:
    """A table of the instant query *expr*, one row a series."""
    return (
        panel(table, title, w, h)
        .description(description)
        .with_target(q(expr, fmt="table", instant=True))
    )


def graph(title: str, expr: str, legend: str, w: int, h: int) -> Any:
    """A time series graph of the range query *expr*."""
    return panel(timeseries, title, w, h).with_target(q(expr, legend))


def deliveries_bars(title: str, by: str, selector: str, w: int, h: int) -> Any:
    """Drill messages journalled per scrape interval, by the label *by*, as bars."""
    return graph(
        title,
        f"sum by ({by}) (increase(tsunagari_deliveries_total{{{selector}}}[$__rate_interval]))",
        "{{" + by + "}}",
        w,
        h,
    ).draw_style(common.GraphDrawStyle.BARS)


def up_timeline(title: str, target: Dataquery, up: str, down: str, w: int) -> Any:
    """The 1/0 gauge *target* over time: *up* in green for 1, *down* in red for 0."""
    return (
        panel(statetimeline, title, w, 8)
        .with_target(target)
        .mappings(up_down(up, down))
        .thresholds(thresholds(UP_STEPS))
    )


def graded(p: Any) -> Any:
    """*p* on a readiness score's scale: 0 to 100, one decimal, the grade colours."""
    return p.min(0).max(100).decimals(1).thresholds(thresholds(GRADE_STEPS))


def query_variable(name: str, label: str, query: str) -> QueryVariable:
    """The variable *name*: the values of the label query *query*, re-read with the time
    range, in alphabetical order."""
    return (
        QueryVariable(name)
        .label(label)
        .datasource(DS)
        .query({"query": query, "refId": name})
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
    )


def any_of(variable: QueryVariable) -> QueryVariable:
    """*variable* with several values chosen at once, all of them at first."""
    return (
        variable.multi(True)
        .include_all(True)
        .all_value(".*")
        .current(dm.VariableOption(selected=True, text="All", value="$__all"))
    )


def variables(board: Dashboard, *, municipality: bool = False) -> Dashboard:
    board = board.with_variable(
        DatasourceVariable("datasource").label("データソース").type("prometheus")
    )
    for name, label in (("scenario", "シナリオ"), ("vantage", "拠点")):
        board = board.with_variable(
            any_of(
                query_variable(
                    name,
                    label,
                    f"label_values(tsunagari_drill_last_start_timestamp_seconds, {name})",
                )
            )
        )
    if municipality:
        board = board.with_variable(
            query_variable(
                "municipality",
                "団体",
                f"label_values(tsunagari_readiness_score{{{SEL}}}, municipality_name)",
            )
        ).with_variable(
            any_of(
                query_variable(
                    "channel",
                    "チャネル",
                    f"label_values(tsunagari_channel_reachable{{{SEL_M}}}, channel_id)",
                )
            )
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
        bars_now(title, expr, legend, w, h)
        .unit("s")
        .thresholds(
            thresholds([dm.Threshold(None, "red"), dm.Threshold(TLS_WARNING_DAYS * 86400, "green")])
        )
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
