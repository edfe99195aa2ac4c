"""The five shelterwatch dashboards, one function each, and the generated JSON next to this file.

Queries are raw InfluxQL so one set works on InfluxDB 1.x, on 2.x through its v1 compatibility API
and on 3.x. Only InfluxQL that InfluxDB 1.6 runs is used (the tests run every query on 1.6). Two 1.6
limits shape them: no `fill(previous)` inside subqueries (it mis-merges series), hence the
snapshot-period minimum interval on state-count panels; and no maths on booleans, hence counting
with `WHERE "last" = true` in an outer query.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from grafana_foundation_sdk.builders import bargauge, dashboard
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard, DashboardCursorSync

from dashboards import schema as S
from dashboards.panels import (
    SHELTER,
    SITE,
    ZONE,
    Q,
    bar_panel,
    stat_panel,
    state_panel,
    table_panel,
    tag_variable,
    thresholds,
    ts_panel,
)

GENERATED = Path(__file__).parent / "generated"
TF = "$timeFilter"
IV = "$__interval"
SNAP = S.SNAPSHOT_PERIOD
CH = f"{SITE} AND {SHELTER}"  # charger / sprinkler / parking device filter
PK = f"{SITE} AND {SHELTER} AND {ZONE}"


def _base(uid: str, title: str, desc: str, variables: list[str]) -> dashboard.Dashboard:
    d = (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(desc)
        .tags(["shelterwatch"])
        .time("now-24h", "now")
        .refresh("1m")
        .timezone("browser")
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .editable()
    )
    d = d.with_variable(tag_variable("site", "Estate", None))
    if "shelter" in variables:
        d = d.with_variable(tag_variable("shelter", "Shelter / garage", None, SITE))
    if "zone" in variables:
        d = d.with_variable(tag_variable("zone", "Zone", "parking_bay", f"{SITE} AND {SHELTER}"))
    return d


def _count_last(measurement: str, field: str, where: str, by: str, cond: str, outer_by: str = "") -> str:
    """Count the series whose last `field` in the range meets `cond` (e.g. `= true`)."""
    q = (
        f'SELECT count("last") FROM (SELECT last("{field}") FROM "{measurement}" WHERE {TF} AND {where} '
        f'GROUP BY {by}) WHERE "last" {cond}'
    )
    return q + (f" GROUP BY {outer_by}" if outer_by else "")


def _count_over_time(measurement: str, field: str, where: str, by: str, cond: str, outer_by: str = "") -> str:
    """Per time bucket, count the series whose last `field` in the bucket meets `cond`."""
    ob = f"time({IV}), {outer_by}" if outer_by else f"time({IV})"
    return (
        f'SELECT count("v") FROM (SELECT last("{field}") AS "v" FROM "{measurement}" WHERE {TF} AND {where} '
        f'GROUP BY time({IV}), {by}) WHERE {TF} AND "v" {cond} GROUP BY {ob} fill(0)'
    )


def _per_device(select: str, measurement: str, where: str = CH, alias: str = "$tag_shelter $tag_device") -> Q:
    """One series per device (and its shelter) per interval, e.g. `select='max("ambient_temp")'`."""
    return Q(
        f'SELECT {select} FROM "{measurement}" WHERE {TF} AND {where} '
        f'GROUP BY time({IV}), "shelter", "device" fill(none)',
        alias,
    )


def _per_port(agg: str, field: str) -> list[Q]:
    """One series per charger port per interval: `agg(field)` of `charger_port`."""
    return [
        Q(
            f'SELECT {agg}("{field}") FROM "charger_port" WHERE {TF} AND {CH} '
            f'GROUP BY time({IV}), "shelter", "device", "port" fill(none)',
            "$tag_device port $tag_port",
        )
    ]


def _free_bays(where: str, w: int) -> bargauge.Panel:
    """Bays whose latest reading is free, per zone (the overview and the parking dashboard)."""
    return bar_panel(
        "Free bays per zone",
        "Bays whose latest reading is free, per zone.",
        "none",
        [Q(_count_last("parking_bay", "occupied", where, '"device", "bay", "zone"', "= false", '"zone"'), "$tag_zone")],
        w=w,
        th=thresholds("red", (1, "orange"), (3, "green")),
    )


ENERGY = (
    f'SELECT sum("kwh") FROM (SELECT non_negative_difference(max("energy")) AS "kwh" FROM "charger_port" '
    f'WHERE {TF} AND {CH} GROUP BY time(5m), "device", "port")'
)
PRESSURE_KPA = [
    _per_device('mean("pipe_pressure") * 100', "sprinkler", f"{CH} AND \"pressure_unit\" = 'bar'"),
    _per_device('mean("pipe_pressure")', "sprinkler", f"{CH} AND \"pressure_unit\" = 'kPa'"),
]
# Colour steps shared by more than one panel (a level changed in schema.py changes them all).
CONNECTOR_TEMP_TH = thresholds("green", (S.CONNECTOR_TEMP_WARN, "orange"), (S.CONNECTOR_TEMP_ALARM, "red"))
BATTERY_TH = thresholds("red", (S.BATTERY_LOW_V, "orange"), (S.BATTERY_WARN_V, "green"))
PRESSURE_TH = thresholds("red", (S.PIPE_PRESSURE_LOW_KPA, "orange"), (S.PIPE_PRESSURE_OK_KPA, "green"))
PRESSURE_DESC = (
    "Pipe pressure in kPa. Monitors that report bar (pressure_unit=bar, e.g. Nanfang FSM-8) are "
    "converted ×100; kPa monitors (AquaGuard RM-4) are shown as reported. Red below the "
    "low-pressure alarm level (150 kPa = 1.5 bar)."
)


def overview() -> dashboard.Dashboard:
    d = _base(
        "sw-overview",
        "shelterwatch · Estate overview",
        "What a property manager checks first: alarms, chargers, energy, parking, sprinklers, gateways.",
        ["shelter"],
    )
    sev_th = thresholds("green", (1, "red"))
    d = d.with_panel(
        stat_panel(
            "Active alarms by severity",
            "Alarms active now, per severity (critical, major, minor, warning).",
            "none",
            [
                Q(
                    _count_last(
                        "alarm",
                        "active",
                        SITE,
                        '"device", "rule", "severity", "instance"',
                        "= true",
                        '"severity"',
                    ),
                    "$tag_severity",
                )
            ],
            w=6,
            th=sev_th,
            no_value="0",
        )
    )
    d = d.with_panel(
        stat_panel(
            "Chargers in use",
            "Charging ports whose latest state is 'charging'.",
            "none",
            [Q(_count_last("charger_port", "state", CH, '"device", "port"', "= 'charging'"), "charging")],
            no_value="0",
        )
    )
    d = d.with_panel(
        stat_panel(
            "Ports cut off",
            "Ports switched off (enabled = false), e.g. by the over-temperature interlock; "
            "and cabinets whose main power is on (a cabinet cut by its smoke interlock drops out of it).",
            "none",
            [
                Q(_count_last("charger_port", "enabled", CH, '"device", "port"', "= false"), "ports off"),
                Q(_count_last("charger_cabinet", "main_relay", CH, '"device"', "= true"), "cabinets powered"),
            ],
            th=thresholds("green", (1, "orange")),
            no_value="0",
        )
    )
    d = d.with_panel(
        stat_panel(
            "Energy today",
            "Energy delivered by all ports since midnight (sum of session energy increases).",
            "kwatth",
            [Q(ENERGY, "energy")],
            time_from="now/d",
        )
    )
    d = d.with_panel(
        stat_panel(
            "Gateways online",
            "Gateways whose latest status is online, and all gateways known in the range.",
            "none",
            [
                Q(_count_last("gateway_status", "online", SITE, '"gateway"', "= true"), "online"),
                Q(
                    'SELECT count("last") FROM (SELECT last("online") FROM "gateway_status" WHERE '
                    f"{TF} AND {SITE} "
                    'GROUP BY "gateway")',
                    "known",
                ),
            ],
            w=6,
            no_value="0",
        )
    )
    d = d.with_panel(_free_bays(PK.replace(f" AND {ZONE}", ""), w=8))
    d = d.with_panel(
        ts_panel("Sprinkler pipe pressure", PRESSURE_DESC, "pressurekpa", PRESSURE_KPA, w=16, th=PRESSURE_TH)
    )
    return d


def chargers() -> dashboard.Dashboard:
    d = _base(
        "sw-chargers",
        "shelterwatch · Chargers",
        "E-bike charging ports: temperature, current, power, energy, warnings, long sessions.",
        ["shelter"],
    )
    d = d.with_panel(
        ts_panel(
            "Connector temperature per port",
            "Hottest reading per interval. Orange from the warning level "
            f"({S.CONNECTOR_TEMP_WARN:g} °C), red from the lower cut-off alarm "
            f"({S.CONNECTOR_TEMP_ALARM:g} °C).",
            "celsius",
            _per_port("max", "connector_temp"),
            th=CONNECTOR_TEMP_TH,
        )
    )
    d = d.with_panel(
        ts_panel(
            "Current per port",
            f"Highest current per interval; overcurrent warning from {S.CURRENT_ALARM:g} A.",
            "amp",
            _per_port("max", "current"),
            th=thresholds("green", (S.CURRENT_WARN, "orange"), (S.CURRENT_ALARM, "red")),
        )
    )
    d = d.with_panel(ts_panel("Power per port", "Mean power per interval.", "watt", _per_port("mean", "power")))
    d = d.with_panel(
        ts_panel(
            "Session energy per port",
            "Energy of the running session (resets when a new session starts).",
            "kwatth",
            _per_port("last", "energy"),
        )
    )
    d = d.with_panel(
        table_panel(
            "Ports above warning levels",
            f"Ports that reached {S.CONNECTOR_TEMP_WARN:g} °C or "
            f"{S.CURRENT_WARN:g} A in the time range, with their peaks.",
            "none",
            [
                Q(
                    f'SELECT "max_temp", "max_current" FROM (SELECT max("connector_temp") AS "max_temp", '
                    f'max("current") AS "max_current" FROM "charger_port" WHERE {TF} AND {CH} '
                    'GROUP BY "shelter", '
                    f'"device", "port") WHERE "max_temp" >= {S.CONNECTOR_TEMP_WARN:g} OR '
                    f'"max_current" >= {S.CURRENT_WARN:g} GROUP BY "shelter", "device", "port"'
                )
            ],
            th=CONNECTOR_TEMP_TH,
            column_units={"max_temp": "celsius", "max_current": "amp"},
        )
    )
    d = d.with_panel(
        table_panel(
            "Charge sessions over 8 h",
            "Ports charging for more than 8 hours now (the `long_charge` alarm).",
            "none",
            [
                Q(
                    'SELECT "active", "acknowledged" FROM (SELECT last("active") AS "active", '
                    'last("acknowledged") AS '
                    f'"acknowledged" FROM "alarm" WHERE {TF} AND {SITE} AND "rule" = '
                    "'long_charge' GROUP BY \"device\", "
                    f'"instance") WHERE "active" = true GROUP BY "device", "instance"'
                )
            ],
        )
    )
    d = d.with_panel(
        table_panel(
            "Charge sessions flagged",
            "Sessions the edge's charge-session analytics warned of (`abnormal_charge`: a failing battery or "
            "connector, minutes before any threshold): why, the hottest reading, the heat nothing explains, the "
            "energy. docs/charging.md says what each reason means.",
            "none",
            [
                Q(
                    'SELECT last("peak_temp_c") AS "peak_temp", max("peak_excess_c") AS "unexplained", '
                    'last("energy_kwh") AS "energy", max("duration_s") AS "duration" FROM "charge_session" '
                    f'WHERE {TF} AND {CH} AND "flagged" = true GROUP BY "shelter", "device", "port", "reason"'
                )
            ],
            column_units={"peak_temp": "celsius", "unexplained": "celsius", "energy": "kwatth", "duration": "s"},
        )
    )
    d = d.with_panel(
        ts_panel(
            "Cabinet ambient temperature",
            f"Warning {S.CABINET_TEMP_WARN:g} °C, cabinet-hot alarm {S.CABINET_TEMP_ALARM:g} °C.",
            "celsius",
            [_per_device('max("ambient_temp")', "charger_cabinet")],
            th=thresholds("green", (S.CABINET_TEMP_WARN, "orange"), (S.CABINET_TEMP_ALARM, "red")),
        )
    )
    d = d.with_panel(
        ts_panel(
            "Ports charging",
            "Number of ports charging over time (latest state per port in each interval).",
            "none",
            [
                Q(
                    _count_over_time("charger_port", "state", CH, '"device", "port"', "= 'charging'"),
                    "charging",
                )
            ],
            min_interval=SNAP,
        )
    )
    return d


def parking() -> dashboard.Dashboard:
    d = _base(
        "sw-parking",
        "shelterwatch · Parking",
        "Bay occupancy per zone, the fire lane, turnover and dwell time.",
        ["shelter", "zone"],
    )
    d = d.with_panel(
        ts_panel(
            "Occupied bays per zone",
            "Bays occupied per zone over time (latest reading per bay per interval).",
            "none",
            [
                Q(
                    _count_over_time(
                        "parking_bay", "occupied", PK, '"device", "bay", "zone"', "= true", '"zone"'
                    ),
                    "$tag_zone",
                )
            ],
            w=16,
            min_interval=SNAP,
        )
    )
    d = d.with_panel(
        stat_panel(
            "Fire-lane bays occupied now",
            "Fire-lane bays with something parked in them now. Must be 0.",
            "none",
            [
                Q(
                    _count_last(
                        "parking_bay",
                        "occupied",
                        f"{PK} AND \"fire_lane\" = 'true'",
                        '"device", "bay"',
                        "= true",
                    ),
                    "occupied",
                )
            ],
            w=8,
            th=thresholds("green", (1, "red")),
            no_value="0",
        )
    )
    d = d.with_panel(
        ts_panel(
            "Fire-lane occupancy",
            "Fire-lane bays occupied over time.",
            "none",
            [
                Q(
                    _count_over_time(
                        "parking_bay",
                        "occupied",
                        f"{PK} AND \"fire_lane\" = 'true'",
                        '"device", "bay"',
                        "= true",
                    ),
                    "fire lane",
                )
            ],
            min_interval=SNAP,
            th=thresholds("green", (1, "red")),
        )
    )
    d = d.with_panel(
        ts_panel(
            "Turnover per zone",
            "Departures per hour per zone (one per freed bay).",
            "none",
            [
                Q(
                    f'SELECT count("dwell_s") FROM "parking_stay" WHERE {TF} AND {PK} GROUP BY '
                    'time(1h), "zone" fill(0)',
                    "$tag_zone",
                )
            ],
            bars=True,
        )
    )
    d = d.with_panel(
        ts_panel(
            "Dwell time per zone",
            "Mean time a bay stayed occupied, for stays that ended in each hour.",
            "s",
            [
                Q(
                    f'SELECT mean("dwell_s") FROM "parking_stay" WHERE {TF} AND {PK} GROUP BY '
                    'time(1h), "zone" fill(none)',
                    "$tag_zone",
                )
            ],
        )
    )
    d = d.with_panel(
        stat_panel(
            "Median dwell time",
            "Median stay of the bays freed in the time range.",
            "s",
            [Q(f'SELECT median("dwell_s") FROM "parking_stay" WHERE {TF} AND {PK}', "median")],
            w=6,
        )
    )
    d = d.with_panel(_free_bays(PK, w=6))
    return d


def sprinklers() -> dashboard.Dashboard:
    d = _base(
        "sw-sprinklers",
        "shelterwatch · Sprinklers",
        "Sprinkler risers: pipe pressure, waterflow, valve tamper, pump, inspection windows.",
        ["shelter"],
    )
    d = d.with_panel(
        ts_panel("Pipe pressure", PRESSURE_DESC, "pressurekpa", PRESSURE_KPA, w=24, th=PRESSURE_TH)
    )
    d = d.with_panel(
        state_panel(
            "Waterflow, valve tamper, pump",
            "Latest state per interval: waterflow switch, control valve tamper switch, fire pump running.",
            "bool_on_off",
            [
                _per_device(
                    'last("waterflow") AS "waterflow", last("valve_tamper") AS "tamper", '
                    'last("pump_running") AS "pump"',
                    "sprinkler",
                    alias="$tag_shelter $tag_device $col",
                )
            ],
            w=24,
            min_interval=SNAP,
        )
    )
    d = d.with_panel(
        table_panel(
            "Waterflow and tamper events",
            "Readings with water flowing or the valve not fully open.",
            "none",
            [
                Q(
                    'SELECT "waterflow", "valve_tamper", "pump_running" FROM "sprinkler" WHERE '
                    f"{TF} AND {CH} AND "
                    f'("waterflow" = true OR "valve_tamper" = true) GROUP BY "shelter", "device"'
                )
            ],
        )
    )
    d = d.with_panel(
        table_panel(
            "Inspection windows",
            "Openings (true) and closings (false) of inspection windows; sprinkler alarms "
            "are silenced while one is open.",
            "none",
            [Q(f'SELECT "active" FROM "inspection" WHERE {TF} AND {SITE} GROUP BY "site"')],
        )
    )
    d = d.with_panel(
        ts_panel(
            "Monitor supply voltage",
            "Supply voltage of monitors that report it (Nanfang FSM-8).",
            "volt",
            [_per_device('mean("supply_voltage")', "sprinkler")],
        )
    )
    return d


def health() -> dashboard.Dashboard:
    d = _base(
        "sw-health",
        "shelterwatch · Device health",
        "Gateways and devices that stopped answering, Modbus error rates, bay sensor batteries.",
        ["shelter"],
    )
    d = d.with_panel(
        stat_panel(
            "Devices offline",
            "Devices whose latest health report says offline.",
            "none",
            [Q(_count_last("device_health", "online", SITE, '"gateway", "device"', "= false"), "offline")],
            w=6,
            th=thresholds("green", (1, "red")),
            no_value="0",
        )
    )
    d = d.with_panel(
        table_panel(
            "Offline devices",
            "Devices offline now and the gateway they hang on.",
            "none",
            [
                Q(
                    'SELECT "last" AS "online" FROM (SELECT last("online") FROM "device_health" '
                    f"WHERE {TF} AND {SITE} "
                    f'GROUP BY "gateway", "device") WHERE "last" = false GROUP BY "gateway", "device"'
                )
            ],
            w=9,
        )
    )
    d = d.with_panel(
        state_panel(
            "Gateway status",
            "Gateway online state over time.",
            "bool_on_off",
            [
                Q(
                    f'SELECT last("online") FROM "gateway_status" WHERE {TF} AND {SITE} GROUP BY '
                    f'time({IV}), "gateway" '
                    "fill(none)",
                    "$tag_gateway",
                )
            ],
            w=9,
            min_interval=SNAP,
        )
    )
    d = d.with_panel(
        ts_panel(
            "Communication error rate",
            "Timeouts + CRC errors + exception replies as a share of polls, per device.",
            "percent",
            [
                Q(
                    'SELECT (non_negative_difference(max("timeouts")) + '
                    'non_negative_difference(max("crc_errors")) + '
                    'non_negative_difference(max("exceptions"))) / '
                    'non_negative_difference(max("polls")) * 100 '
                    f'FROM "device_health" WHERE {TF} AND {SITE} GROUP BY time({IV}), "gateway", '
                    '"device" fill(none)',
                    "$tag_device",
                )
            ],
            th=thresholds("green", (1, "orange"), (5, "red")),
            min_interval=SNAP,
        )
    )
    d = d.with_panel(
        ts_panel(
            "Bay sensor batteries",
            f"Lowest battery per bay sensor; low-battery alarm below {S.BATTERY_LOW_V:g} V.",
            "volt",
            [
                Q(
                    f'SELECT min("battery") FROM "parking_bay" WHERE {TF} AND {CH} GROUP BY '
                    f'time({IV}), "device", "bay" '
                    "fill(none)",
                    "$tag_device bay $tag_bay",
                )
            ],
            th=BATTERY_TH,
        )
    )
    d = d.with_panel(
        table_panel(
            "Bay sensors with low battery",
            f"Bay sensors whose latest battery reading is below {S.BATTERY_WARN_V:g} V.",
            "volt",
            [
                Q(
                    'SELECT "b" AS "battery" FROM (SELECT last("battery") AS "b" FROM '
                    f'"parking_bay" WHERE {TF} AND {CH} '
                    f'GROUP BY "device", "bay") WHERE "b" < {S.BATTERY_WARN_V:g} GROUP BY "device", "bay"'
                )
            ],
            w=12,
            th=BATTERY_TH,
        )
    )
    return d


BUILDERS: dict[str, Callable[[], dashboard.Dashboard]] = {
    "overview": overview,
    "chargers": chargers,
    "parking": parking,
    "sprinklers": sprinklers,
    "health": health,
}


def _number(d: Dashboard) -> Dashboard:
    """Panel ids 1..n in layout order: stable across builds, unique within a dashboard."""
    for i, p in enumerate(d.panels or [], start=1):
        p.id_val = i
    return d


def build_all() -> dict[str, Dashboard]:
    return {name: _number(fn().build()) for name, fn in BUILDERS.items()}


def to_json(d: Dashboard) -> str:
    return json.dumps(d, cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def rendered() -> dict[str, str]:
    """File name → JSON text, exactly what `dashboards build` writes."""
    return {f"{name}.json": to_json(d) for name, d in build_all().items()}


def write(out: Path = GENERATED) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fname, text in rendered().items():
        p = out / fname
        p.write_text(text, encoding="utf-8")
        paths.append(p)
    return paths


def drift(out: Path = GENERATED) -> list[str]:
    """Names of generated files that differ from what the code builds now (or are missing)."""
    return [
        f
        for f, text in rendered().items()
        if not (out / f).exists() or (out / f).read_text(encoding="utf-8") != text
    ]
