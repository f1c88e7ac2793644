"""What every board is made of: the data source variable, the label selectors, the
query and panel helpers, the board's variables, and the panels two boards share (time
left on TLS certificates, where a municipality stands among the drill's participants)."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import bargauge, table
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
