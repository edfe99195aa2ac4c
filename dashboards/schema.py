"""Measurements the dashboards query, in one place.

The telemetry measurements come from the catalog profiles' `timeseries:` sections through
`device_profiles.timeseries.Mapping` and are written by the cloud ingester; they are listed here
only so the dashboards and the docs name them once. `device_health` is written by the ingester too
(`cloud/ingest/pipeline.py`, from DeviceHealth messages). alarm, gateway_status, inspection and
parking_stay are defined here and written by `cloud/history/` (one module each), which runs beside
the ingester and the alarm engine in `cloud serve` and writes into the ingester's storage writer.
(The ingester's `gateway_health` measurement is not charted by any dashboard yet.)

Every numeric field is written as a float (no `i` suffix): two profiles may decode the same field
as int and float (`power` is uint16 on one charger and float32 on the other), and InfluxDB 1.x
refuses a second type for a field within a shard.
"""

from __future__ import annotations

from dataclasses import dataclass

# Panels that count states (bays occupied, ports charging) take the last value per device in each
# time bucket. InfluxDB 1.6 mis-merges `fill(previous)` inside subqueries, so these panels rely on
# each device sending a full snapshot at least this often, and use it as their minimum interval.
SNAPSHOT_PERIOD = "10m"
SNAPSHOT_PERIOD_S = 600

# Grafana data source provisioned by dashboards/provisioning/datasources/influxdb.yaml.
DATASOURCE_UID = "shelterwatch-influxdb"
DATASOURCE_TYPE = "influxdb"
DATABASE = "shelterwatch"


@dataclass(frozen=True, slots=True)
class Measurement:
    name: str
    tags: tuple[str, ...]
    fields: dict[str, str]  # field -> type and meaning
    writer: str  # who writes it
    note: str = ""


TELEMETRY = (
    Measurement(
        "charger_port",
        ("site", "gateway", "device", "port", "shelter"),
        {
            "state": "string enum (idle, plugged, charging, full, fault, disabled)",
            "voltage": "V",
            "current": "A",
            "power": "W",
            "energy": "kWh, session energy, resets when a session starts",
            "connector_temp": "°C",
            "enabled": "bool, port relay on",
        },
        "cloud ingester via Mapping",
    ),
    Measurement(
        "charger_cabinet",
        ("site", "gateway", "device", "shelter"),
        {"smoke": "bool", "ambient_temp": "°C", "main_relay": "bool", "door_open": "bool"},
        "cloud ingester via Mapping",
    ),
    Measurement(
        "sprinkler",
        ("site", "gateway", "device", "shelter", "pressure_unit"),
        {
            "waterflow": "bool",
            "valve_tamper": "bool",
            "pump_running": "bool",
            "power_fault": "bool",
            "pipe_pressure": "bar or kPa, as the `pressure_unit` tag says",
            "supply_voltage": "V",
        },
        "cloud ingester via Mapping",
        "pressure_unit is a fixed tag declared in each sprinkler profile's timeseries section",
    ),
    Measurement(
        "parking_bay",
        ("site", "gateway", "device", "bay", "shelter", "zone", "fire_lane"),
        {"occupied": "bool", "sensor_fault": "bool", "battery": "V", "rssi": "dBm"},
        "cloud ingester via Mapping",
        "zone and fire_lane ('true'/'false') are instance labels",
    ),
    Measurement(
        "parking_hub",
        ("site", "gateway", "device", "shelter"),
        {"occupied_count": "bays"},
        "cloud ingester via Mapping",
    ),
)

DEFINED_HERE = (
    Measurement(
        "charge_session",
        ("site", "gateway", "device", "port", "shelter", "reason"),
        {
            "duration_s": "seconds since the session started",
            "energy_kwh": "energy of the session",
            "peak_temp_c": "hottest connector reading",
            "peak_excess_c": "°C the connector ran above what current, ambient and neighbours explain",
            "cc_s": "seconds at constant current",
            "flagged": "bool, the edge raised abnormal_charge in this session",
            "severe": "bool, a severe finding (the edge may have stopped the port)",
            "ended": "bool, false for the point written when the session was flagged",
        },
        "cloud/history/charge_session.py, from charger_port telemetry and the edge's abnormal_charge events",
        "one point when a session ends (`ended` true) and one when it is flagged (`ended` false); `reason` is the "
        "warning's reason, 'none' when not flagged; the other tags are the port's charger_port tags",
    ),
    Measurement(
        "alarm",
        ("site", "device", "rule", "severity", "instance"),
        {"active": "bool", "acknowledged": "bool"},
        "cloud/history/alarm.py, from the alarm engine's transition hook",
        "one point on every transition (raise, acknowledge, clear or resolve) and, for every active alarm, "
        f"again at least every {SNAPSHOT_PERIOD}; `instance` is the block instance (port 3 → '3'), "
        "absent for device-level rules; `device` is the gateway id for gateway-level alarms "
        "(gateway_offline); severity is critical, major, minor or warning",
    ),
    Measurement(
        "device_health",
        ("site", "gateway", "device"),
        {
            "online": "bool",
            "timeouts": "count since agent start",
            "crc_errors": "count since agent start",
            "exceptions": "count since agent start",
            "polls": "count since agent start",
        },
        "cloud ingester (cloud/ingest/pipeline.py), from the wire DeviceHealth message",
        "the ingester also writes ok, retries and latency_ms when the gateway sends them",
    ),
    Measurement(
        "gateway_status",
        ("site", "gateway"),
        {"online": "bool"},
        "cloud/history/gateway_status.py, from the retained status (birth) and its last will",
        f"at the receive time; re-written at least every {SNAPSHOT_PERIOD} while known",
    ),
    Measurement(
        "inspection",
        ("site",),
        {"active": "bool"},
        "cloud/history/inspection.py, from the alarm engine's inspection windows (API and site file)",
        "true when an inspection window opens, false when it closes (overlapping windows: their union)",
    ),
    Measurement(
        "parking_stay",
        ("site", "gateway", "device", "bay", "shelter", "zone", "fire_lane"),
        {"dwell_s": "seconds the bay was occupied"},
        "cloud/history/parking_stay.py, from parking_bay occupied readings (true → false)",
        "one point per departure, at the departure time (edge time): turnover and dwell time come "
        "from it; tags are the bay's parking_bay tags",
    ),
)

# Measurements the dashboards query that no cloud component writes yet (none since cloud/history).
NOT_YET_WRITTEN: tuple[str, ...] = ()

ALL = {m.name: m for m in (*TELEMETRY, *DEFINED_HERE)}

# Levels drawn on panels. From the catalog: the lower of the two chargers' clear levels is the warning.
CONNECTOR_TEMP_WARN = 55.0
CONNECTOR_TEMP_ALARM = 65.0
CURRENT_WARN = 4.0
CURRENT_ALARM = 5.0
CABINET_TEMP_WARN = 45.0
CABINET_TEMP_ALARM = 50.0
PIPE_PRESSURE_LOW_KPA = 150.0
PIPE_PRESSURE_OK_KPA = 200.0
BATTERY_LOW_V = 2.9
BATTERY_WARN_V = 3.1
