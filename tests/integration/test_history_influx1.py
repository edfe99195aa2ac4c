"""cloud/history end to end: a gateway on a real mosquitto → CloudService (ingester, alarm engine,
history) → a real InfluxDB 1.x; then the dashboards' own InfluxQL reads what the cloud wrote.

The gateway here is a paho client publishing wire-contract messages with chosen edge timestamps
(a bay occupied for exactly 420 s, a backlog that arrives late), so the expected values are exact;
tests/integration/test_history_fleet.py drives the same path with the fleet generator."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from dashboards.build import build_all, to_json
from dashboards.templating import effective_interval, interpolate, time_filter
from device_profiles import wire
from tests.fixtures.servers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SITE = "demo-estate"
SITE_FILE = Path(__file__).parents[2] / "cloud" / "sites" / "demo-estate.yaml"
ALARMS = (
    f"site: {SITE}\nname: Demo\npeople: []\n"
    "gateway_offline: {silence: 3600}\n"  # only the last will takes a gateway offline in this test
    "alarm_overrides:\n"
    "  - {rule: fire_lane_blocked, for: 0}\n"
    "  - {rule: offline, enabled: false}\n"  # silent devices of other gateways stay quiet
)
DASH = {name: json.loads(to_json(d)) for name, d in build_all().items()}


def wait_until(cond, timeout: float = 20.0, what: str = "") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def panel_rows(db, dash: str, title: str, start_ms: int, end_ms: int) -> list[list[dict[str, Any]]]:
    """Every target of a panel, run as Grafana would (variables from their own queries, All selected)."""
    d = DASH[dash]
    tf = time_filter(start_ms, end_ms)
    variables: dict[str, list[str]] = {}
    for v in d["templating"]["list"]:
        res = db.query(interpolate(v["query"], variables, tf, "5m"))["results"][0]
        variables[v["name"]] = sorted({row[1] for s in res.get("series", []) for row in s["values"]})
    panel = next(p for p in d["panels"] if p["title"] == title)
    iv = effective_interval("5m", panel.get("interval"))
    out = []
    for t in panel["targets"]:
        res = db.query(interpolate(t["query"], variables, tf, iv))["results"][0]
        out.append(res.get("series", []))
    return out


def values(series: list[dict[str, Any]], col: int = 1) -> list[Any]:
    return [row[col] for s in series for row in s["values"] if row[col] is not None]


class Gateway:
    """A gateway's MQTT session: retained birth, last will, QoS 1 publishing."""

    def __init__(self, port: int, gw: str) -> None:
        self.gw = gw
        self.seq = 0
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=gw)
        self.c.will_set(wire.topic(SITE, gw, wire.Kind.STATUS), wire.encode(wire.last_will()), qos=1, retain=True)
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        self.pub(wire.topic(SITE, gw, wire.Kind.STATUS), wire.Status(ts=wire.now(), state="online"), retain=True)

    def pub(self, topic: str, msg: Any, retain: bool = False) -> None:
        self.c.publish(topic, wire.encode(msg), qos=1, retain=retain).wait_for_publish(5)

    def telemetry(self, dev: str, seq: int, ts: float, values: dict[str, Any]) -> None:
        at = datetime.fromtimestamp(ts, UTC)
        self.pub(wire.topic(SITE, self.gw, wire.Kind.TELEMETRY, dev), wire.Telemetry(ts=at, seq=seq, values=values))

    def lose_connection(self) -> None:
        """Drop the TCP connection without DISCONNECT: the broker publishes the last will."""
        self.c.loop_stop()
        sock = self.c.socket()
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def test_cloud_writes_what_the_dashboards_chart(tmp_path, mosquitto, influxdb1):
    from cloud.serve import CloudService, ServeConfig

    alarms = tmp_path / "alarms.yaml"
    alarms.write_text(ALARMS)
    cloud = CloudService(
        ServeConfig(
            broker=mosquitto.url, site_files=[SITE_FILE], alarm_files=[alarms], secret="s" * 40,
            data_dir=tmp_path / "data", tsdb=f"influx1://127.0.0.1:{influxdb1.port}/{influxdb1.database}",
            port=free_port(), mqtt_client="paho",
        )
    ).start()
    start_ms = int(time.time() * 1000) - 3600_000
    garage = shelter = None
    try:
        wait_until(lambda: cloud.ingest.client.connected.is_set(), what="ingester connected")
        time.sleep(0.5)  # the subscription follows the connection
        garage, shelter = Gateway(mosquitto.port, "gw-garage"), Gateway(mosquitto.port, "gw-shelter-b")
        t0 = time.time() - 900
        # bay 5: free, occupied at t0+60, repeated by a snapshot, freed at t0+480 → one stay of 420 s
        # bay 6: occupied at the first reading (arrival unknown), freed → no stay
        garage.telemetry("hub1", 1, t0, {"bay.5.occupied": False, "bay.6.occupied": True, "bay.47.occupied": False})
        garage.telemetry("hub1", 2, t0 + 60, {"bay.5.occupied": True})
        garage.telemetry("hub1", 3, t0 + 300, {"bay.5.occupied": True, "bay.6.occupied": True})
        garage.telemetry("hub1", 4, t0 + 480, {"bay.5.occupied": False, "bay.6.occupied": False})
        garage.telemetry("hub1", 7, t0 + 600, {"bay.47.occupied": True})  # a car in the fire lane
        # a backlog from before the last known state arrives late: it must not make a stay
        garage.telemetry("hub1", 5, t0 + 200, {"bay.5.occupied": False})
        garage.telemetry("hub1", 6, t0 + 250, {"bay.5.occupied": True})
        eng = cloud.engine
        wait_until(lambda: any(a.rule == "fire_lane_blocked" for a in eng.active.values()), what="fire lane alarm")
        alarm = next(a for a in eng.active.values() if a.rule == "fire_lane_blocked")
        assert eng.acknowledge(alarm.id, "li", "web")
        now = time.time()
        eng.add_window(SITE, now - 60, now + 1.0, "flow test", "li")
        garage.lose_connection()
        wait_until(lambda: cloud.history.gateways.online.get((SITE, "gw-garage")) is False, what="last will")
        wait_until(lambda: cloud.history.inspections.written.get(SITE, {}).get(round((now + 1.0) * 1000)) is False,
                   what="window closed")
        cloud.history.step()
        assert cloud.ingest.flush(30)
        assert cloud.history.stays.ignored_old == 2

        end_ms = int(time.time() * 1000) + 1000
        # ---- parking_stay: one stay of 420 s in zone g1
        med = panel_rows(influxdb1, "parking", "Median dwell time", start_ms, end_ms)
        assert values(med[0]) == [420.0]
        turnover = panel_rows(influxdb1, "parking", "Turnover per zone", start_ms, end_ms)
        (tz,) = turnover[0]
        assert tz["tags"] == {"zone": "g1"} and sum(r[1] for r in tz["values"]) == 1
        stay = influxdb1.query('SELECT * FROM "parking_stay"')["results"][0]["series"][0]
        row = dict(zip(stay["columns"], stay["values"][0], strict=True))
        assert row["bay"] == "5" and row["device"] == "hub1" and row["shelter"] == "garage"
        assert abs(row["time"] - round((t0 + 480) * 1000)) <= 1, "written at the departure time"

        # ---- gateway_status: the last will took gw-garage offline; gw-shelter-b is online
        gw = panel_rows(influxdb1, "overview", "Gateways online", start_ms, end_ms)
        assert values(gw[0]) == [1] and values(gw[1]) == [2]
        st = panel_rows(influxdb1, "health", "Gateway status", start_ms, end_ms)[0]
        last = {s["tags"]["gateway"]: values([s])[-1] for s in st}
        assert last == {"gw-garage": False, "gw-shelter-b": True}

        # ---- alarm: fire lane raised and acknowledged; the last will raised gateway_offline
        sev = panel_rows(influxdb1, "overview", "Active alarms by severity", start_ms, end_ms)[0]
        assert {s["tags"]["severity"]: s["values"][0][1] for s in sev} == {"major": 1, "minor": 1}
        q = ('SELECT last("active"), last("acknowledged") FROM "alarm" WHERE "rule" = \'fire_lane_blocked\' '
             'GROUP BY "device", "instance"')
        (fl,) = influxdb1.query(q)["results"][0]["series"]
        assert fl["tags"] == {"device": "hub1", "instance": "47"} and fl["values"][0][1:] == [True, True]
        q = 'SELECT last("active") FROM "alarm" WHERE "rule" = \'gateway_offline\' GROUP BY "device"'
        (go,) = influxdb1.query(q)["results"][0]["series"]
        assert go["tags"] == {"device": "gw-garage"} and go["values"][0][1] is True

        # ---- inspection: opened, then closed
        insp = panel_rows(influxdb1, "sprinklers", "Inspection windows", start_ms, end_ms)
        (s,) = insp[0]
        assert [r[1] for r in s["values"]] == [True, False]

        # ---- the fire lane is freed: the alarm clears, the stay is counted
        shelter.telemetry("bays-b", 1, time.time() - 5, {"bay.1.occupied": False})  # another gateway, other device
        garage2 = Gateway(mosquitto.port, "gw-garage")  # the gateway is back
        garage.close()
        garage = garage2
        garage.telemetry("hub1", 8, t0 + 700, {"bay.47.occupied": False})
        wait_until(lambda: not any(a.rule in ("fire_lane_blocked", "gateway_offline") for a in eng.active.values()),
                   what="alarms cleared")
        wait_until(lambda: cloud.history.stats.stays == 2, what="second stay")
        cloud.history.step()
        assert cloud.ingest.flush(30)
        end_ms = int(time.time() * 1000) + 1000
        sev = panel_rows(influxdb1, "overview", "Active alarms by severity", start_ms, end_ms)[0]
        assert sev == [], "nothing active any more"
        (fl,) = influxdb1.query(q.replace("gateway_offline", "fire_lane_blocked"))["results"][0]["series"]
        assert fl["values"][0][1] is False
        gw = panel_rows(influxdb1, "overview", "Gateways online", start_ms, end_ms)
        assert values(gw[0]) == [2]
        turnover = panel_rows(influxdb1, "parking", "Turnover per zone", start_ms, end_ms)
        assert sum(values(turnover[0])) == 2
        fire = influxdb1.query('SELECT "dwell_s" FROM "parking_stay" WHERE "fire_lane" = \'true\'')
        assert values(fire["results"][0]["series"]) == [100.0]
        assert cloud.history.stats.errors == 0 and cloud.history.stats.dropped == 0
    finally:
        for g in (garage, shelter):
            if g is not None:
                with contextlib.suppress(Exception):
                    g.close()
        cloud.stop()
