"""Small helpers that turn (title, unit, InfluxQL queries, thresholds) into SDK panel builders.

Every panel gets the provisioned data source, a unit and a description, so the checks in the tests
("every panel has a title, unit and data source") hold by construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from grafana_foundation_sdk.builders import bargauge, dashboard, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.builders.common import ReduceDataOptions, VizLegendOptions, VizTooltipOptions
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    DynamicConfigValue,
    Threshold,
    ThresholdsMode,
    VariableHide,
    VariableRefresh,
    VariableSort,
)

from dashboards import schema
from dashboards.influxql import InfluxQL

P = TypeVar("P", stat.Panel, timeseries.Panel, table.Panel, bargauge.Panel, statetimeline.Panel)

DS = DataSourceRef(type_val=schema.DATASOURCE_TYPE, uid=schema.DATASOURCE_UID)

# Filters shared by the queries. Grafana expands a multi-value variable to a regex group (a|b).
SITE = '"site" =~ /^$site$/'
SHELTER = '"shelter" =~ /^$shelter$/'
ZONE = '"zone" =~ /^$zone$/'


@dataclass(frozen=True, slots=True)
class Q:
    """One InfluxQL target: the query, how Grafana names its series, table or time series."""

    query: str
    alias: str | None = None
    table: bool = False


def _targets(queries: Sequence[Q]) -> list[InfluxQL]:
    out = []
    for i, q in enumerate(queries):
        t = InfluxQL(q.query).ref_id(chr(ord("A") + i)).datasource(DS)
        if q.alias:
            t = t.alias(q.alias)
        if q.table:
            t = t.table()
        out.append(t)
    return out


def thresholds(base: str, *steps: tuple[float, str]) -> dashboard.ThresholdsConfig:
    """Colour steps: `base` below the first value, then each (value, colour) upward."""
    return (
        dashboard.ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=None, color=base), *(Threshold(value=v, color=c) for v, c in steps)])
    )


GREEN = thresholds("green")


def _common(
    p: P,
    title: str,
    desc: str,
    unit: str,
    queries: Sequence[Q],
    w: int,
    h: int,
    th: dashboard.ThresholdsConfig | None,
) -> P:
    p = p.title(title).description(desc).datasource(DS).unit(unit).span(w).height(h)
    p = p.thresholds(th or GREEN)
    for t in _targets(queries):
        p = p.with_target(t)
    return p


def _legend() -> VizLegendOptions:
    return (
        VizLegendOptions()
        .display_mode(common.LegendDisplayMode.LIST)
        .placement(common.LegendPlacement.BOTTOM)
        .show_legend(True)
    )


def _tooltip() -> VizTooltipOptions:
    return VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI).sort(common.SortOrder.DESCENDING)


def stat_panel(
    title: str,
    desc: str,
    unit: str,
    queries: Sequence[Q],
    *,
    w: int = 4,
    h: int = 5,
    th: dashboard.ThresholdsConfig | None = None,
    time_from: str | None = None,
    no_value: str | None = None,
) -> stat.Panel:
    """`no_value="0"` for counts: a count of series matching a condition returns no rows when none do."""
    p = _common(stat.Panel(), title, desc, unit, queries, w, h, th)
    p = (
        p.reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.NONE)
    )
    if time_from:
        p = p.time_from(time_from)
    if no_value is not None:
        p = p.no_value(no_value)
    return p


def ts_panel(
    title: str,
    desc: str,
    unit: str,
    queries: Sequence[Q],
    *,
    w: int = 12,
    h: int = 8,
    th: dashboard.ThresholdsConfig | None = None,
    min_interval: str | None = None,
    bars: bool = False,
    line_thresholds: bool = True,
) -> timeseries.Panel:
    p = (
        _common(timeseries.Panel(), title, desc, unit, queries, w, h, th)
        .legend(_legend())
        .tooltip(_tooltip())
    )
    if bars:
        p = p.draw_style(common.GraphDrawStyle.BARS).fill_opacity(60)
    if th is not None and line_thresholds:
        from grafana_foundation_sdk.builders.common import GraphThresholdsStyleConfig

        p = p.thresholds_style(GraphThresholdsStyleConfig().mode(common.GraphTresholdsStyleMode.LINE))
    if min_interval:
        p = p.interval(min_interval)
    return p


def table_panel(
    title: str,
    desc: str,
    unit: str,
    queries: Sequence[Q],
    *,
    w: int = 12,
    h: int = 8,
    th: dashboard.ThresholdsConfig | None = None,
    column_units: dict[str, str] | None = None,
) -> table.Panel:
    """`column_units` gives a column its own unit where a table mixes quantities."""
    p = _common(
        table.Panel(), title, desc, unit, [Q(q.query, q.alias, True) for q in queries], w, h, th
    ).show_header(True)
    for col, u in (column_units or {}).items():
        p = p.override_by_name(col, [DynamicConfigValue(id_val="unit", value=u)])
    return p


def bar_panel(
    title: str,
    desc: str,
    unit: str,
    queries: Sequence[Q],
    *,
    w: int = 8,
    h: int = 8,
    th: dashboard.ThresholdsConfig | None = None,
) -> bargauge.Panel:
    p = _common(bargauge.Panel(), title, desc, unit, queries, w, h, th)
    return (
        p.reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .display_mode(common.BarGaugeDisplayMode.BASIC)
        .orientation(common.VizOrientation.HORIZONTAL)
    )


def state_panel(
    title: str,
    desc: str,
    unit: str,
    queries: Sequence[Q],
    *,
    w: int = 12,
    h: int = 8,
    min_interval: str | None = None,
) -> statetimeline.Panel:
    p = (
        _common(statetimeline.Panel(), title, desc, unit, queries, w, h, None)
        .legend(_legend())
        .tooltip(_tooltip())
    )
    if min_interval:
        p = p.interval(min_interval)
    return p


def tag_variable(
    name: str, label: str, measurement: str | None, where: str | None = None
) -> dashboard.QueryVariable:
    """A multi-select InfluxQL tag-values variable with 'All', refreshed when the time range changes."""
    q = "SHOW TAG VALUES"
    if measurement:
        q += f' FROM "{measurement}"'
    q += f' WITH KEY = "{name}"'
    if where:
        q += f" WHERE {where}"
    return (
        dashboard.QueryVariable(name)
        .label(label)
        .query(q)
        .datasource(DS)
        .multi(True)
        .include_all(True)
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .hide(VariableHide.DONT_HIDE)
    )
