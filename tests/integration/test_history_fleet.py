"""cloud/history under the fleet generator: an hour of the demo estate (simulated clock) published to
a real mosquitto, through CloudService, into a real InfluxDB 1.x. What the cloud wrote must agree
with what was sent (every stay, each at its departure) and with the alarm engine's own state."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cloud.history.parking_stay import StayTracker
from device_profiles import wire
from tests.fixtures.servers import free_port
from tests.integration.test_history_influx1 import panel_rows, values, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SITE_FILE = Path(__file__).parents[2] / "cloud" / "sites" / "demo-estate.yaml"
PARKING = {"hub1", "bays-b", "rx1"}


def test_fleet_hour_stays_gateways_and_fire_lane_alarms(tmp_path, mosquitto, influxdb1):
    from cloud.serve import CloudService, ServeConfig
    from simulators.fleet import FleetConfig, publish_fleet

    alarms = tmp_path / "alarms.yaml"
    alarms.write_text(
        "site: demo-estate\nname: Demo\npeople: []\ngateway_offline: {silence: 3600}\n"
        "alarm_overrides:\n  - {rule: fire_lane_blocked, for: 0}\n  - {rule: offline, enabled: false}\n"
    )
    cloud = CloudService(
        ServeConfig(
            broker=mosquitto.url, site_files=[SITE_FILE], alarm_files=[alarms], secret="s" * 40,
            data_dir=tmp_path / "data", tsdb=f"influx1://127.0.0.1:{influxdb1.port}/{influxdb1.database}",
            port=free_port(),
        )
    ).start()
    try:
        wait_until(lambda: cloud.ingest.client.connected.is_set(), what="ingester connected")
        time.sleep(0.5)
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
        cfg = FleetConfig(
            broker=mosquitto.url, site_file=str(SITE_FILE), rate=0, duration=60, ticks=360, sim_start=start,
            tick_s=10.0, event_probability=0.3, seed=5, snapshot_every=30,
            quiet=False,  # cars park in the fire lanes: alarms for the history to follow
        )
        res = publish_fleet(cfg, record=True)
        assert res.published > 1000
        wait_until(lambda: cloud.ingest.stats()["accepted"] == res.published, 60, "ingester took everything")
        cloud.engine.drain(30)
        wait_until(lambda: not cloud.history.queue, 30, "history drained")
        cloud.history.step()
        assert cloud.ingest.flush(60)

        # What the cloud should have found, from the messages as sent (per device in order).
        expect = StayTracker()
        stays: list[tuple[str, str, int, float]] = []
        for topic, payload in res.sent:
            t = wire.parse_topic(topic)
            if t.kind not in wire.TELEMETRY_KINDS or t.device not in PARKING:
                continue
            msg = wire.decode(t.kind, payload)
            for pid, v in msg.values.items():
                if pid.startswith("bay.") and pid.endswith(".occupied"):
                    s = expect.reading((t.device, pid), msg.ts.timestamp(), bool(v))
                    if s is not None:
                        stays.append((t.device, pid.split(".")[1], round(s.departed * 1000), s.dwell_s))
        assert len(stays) > 50
        got = influxdb1.query('SELECT "dwell_s", "device", "bay" FROM "parking_stay"')["results"][0]["series"]
        rows = sorted((r[2], r[3], r[0], r[1]) for s in got for r in s["values"])
        assert rows == sorted(stays)
        assert cloud.history.stats.stays == len(stays)
        end_ms = int(time.time() * 1000) + 1000
        turnover = panel_rows(influxdb1, "parking", "Turnover per zone", round(start.timestamp() * 1000), end_ms)
        assert sum(values(turnover[0])) == len(stays)

        # Three gateways announced themselves (retained births) and disconnected cleanly: online.
        gw = panel_rows(influxdb1, "overview", "Gateways online", end_ms - 3 * 3600_000, end_ms)
        assert values(gw[0]) == [3] and values(gw[1]) == [3]

        # Fire-lane alarms raised and cleared as cars came and went: what InfluxDB says is active
        # now is exactly what the engine holds active.
        q = ('SELECT last("active") FROM "alarm" WHERE "rule" = \'fire_lane_blocked\' '
             'GROUP BY "device", "instance"')
        series = influxdb1.query(q)["results"][0].get("series", [])
        written = {(s["tags"]["device"], s["tags"]["instance"]) for s in series if s["values"][0][1]}
        engine = {(a.device, a.instance) for a in cloud.engine.active.values() if a.rule == "fire_lane_blocked"}
        assert written == engine
        assert len(series) >= 2, "fire-lane bays of two devices raised alarms"
        n = influxdb1.query('SELECT count("active") FROM "alarm"')["results"][0]["series"][0]["values"][0][1]
        assert n >= len(series)
        assert cloud.history.stats.errors == 0 and cloud.history.stats.dropped == 0
    finally:
        cloud.stop()
