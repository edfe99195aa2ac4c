"""The edge agent's charge-session analytics against the simulator (a Hengtong EBC-12 on Modbus TCP,
the `bms-failure` scenario at 60× speed, the analytics clock with it): with `stop_port` the gateway
sends its `abnormal_charge` warning, then switches the port off on the severe finding, itself and
before any threshold: the interlock event says why, and the connector never reaches the 65 °C alarm."""

from __future__ import annotations

import pytest

from device_profiles import wire
from tests.integration.edge.helpers import AgentProcess, Collector, write_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SPEED = 60


def test_a_severe_finding_stops_the_port_before_it_overheats(tmp_path, mosquitto, sim_process) -> None:  # type: ignore[no-untyped-def]
    sim = sim_process("bms-failure", "--speed", str(SPEED))
    ep = sim.endpoints["chg2"]
    bus = {"name": "lan", "transport": "modbus_tcp", "host": ep["host"], "tcp_port": ep["port"], "timeout_s": 1.0}
    dev = {"id": "chg2", "profile": "hengtong-ebc12", "bus": "lan", "address": ep["unit"],
           "poll": {"safety": 0.5, "routine": 1.0, "slow": 30.0},
           "charge_analytics": {"time_scale": SPEED, "stop_port": True}}
    col = Collector(mosquitto.port, "charge-analytics")
    agent = AgentProcess(write_config(tmp_path, mosquitto.port, [bus], [dev]), tmp_path / "agent.log").start()
    try:
        def stopped() -> list[wire.Event]:
            return [e for e in col.of(wire.Kind.EVENT, "chg2")
                    if e.kind == "interlock" and e.data.get("rule") == "abnormal_charge"]

        col.wait(stopped, timeout=180, what="the analytics' port stop")
        events = col.of(wire.Kind.EVENT, "chg2")
        warned = [e for e in events if e.kind == "abnormal_charge"]
        assert warned and warned[0].data["index"] == 3 and warned[0].severity == "major"
        assert any(e.data["severe"] for e in warned), "the stop follows a severe finding"
        stop = stopped()[0]
        assert stop.data["index"] == 3 and stop.data["ok"] is True and stop.point == "port.3.connector_temp"
        assert "abnormal charge" in stop.text and float(stop.value) < 65.0  # type: ignore[arg-type]
        assert events.index(warned[0]) < events.index(stop)
        col.wait(lambda: col.latest_values("chg2").get("port.3.enabled") is False, what="port 3 off")
        temps = [t.values["port.3.connector_temp"] for t in col.of(wire.Kind.TELEMETRY, "chg2")
                 if "port.3.connector_temp" in t.values]
        assert max(temps) < 65.0, "switched off before the threshold alarm, let alone the cut-off"
        assert not [e for e in events if e.kind == "interlock" and e.data.get("rule") == "port_overtemp"]
        assert all(e.data["index"] == 3 for e in warned), "no other port was warned of"
    finally:
        agent.stop()
        col.close()
