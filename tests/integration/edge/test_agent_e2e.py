"""The edge agent as a real process: simulated devices on pseudo-terminals and Modbus TCP →
agent → real mosquitto → a test subscriber that validates every payload with the wire contract."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from device_profiles import wire
from device_profiles.loader import get_profile
from tests.fixtures.modbus_slave import LineDevice, RtuBus, SimDevice, TcpSlave
from tests.integration.edge.helpers import AgentProcess, Collector, write_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def site(tmp_path: Path, rtu_bus: type[RtuBus]) -> Iterator[dict]:  # type: ignore[type-arg]
    cp10 = SimDevice(get_profile("voltpile-cp10"), 3)
    fsm8 = SimDevice(get_profile("nanfang-fsm8"), 5)
    ebc12 = SimDevice(get_profile("hengtong-ebc12"), 1)
    ph48 = SimDevice(get_profile("parkhub-ph48"), 7)
    shelter = rtu_bus([cp10, fsm8])
    garage = rtu_bus([ph48])
    tcp = TcpSlave([ebc12])
    line = LineDevice(tmp_path)
    cp10.set(port__3__connector_temp=41.5, port__3__current=2.5, ambient_temp=22.0)
    fsm8.set(pipe_pressure=3.2, supply_voltage=24.0)
    ph48.set(bay__2__occupied=True, occupied_count=1)
    line.set_bay(4, occ="1", mv="3300", rssi="-70")
    yield {
        "cp10": cp10,
        "fsm8": fsm8,
        "ebc12": ebc12,
        "ph48": ph48,
        "shelter": shelter,
        "garage": garage,
        "tcp": tcp,
        "line": line,
    }
    tcp.stop()
    line.stop()


def site_config(tmp: Path, port: int, s: dict, **extra: object) -> Path:  # type: ignore[type-arg]
    buses = [
        {
            "name": "shelter-485",
            "transport": "modbus_rtu",
            "port": s["shelter"].port,
            "baud": 9600,
            "timeout_s": 0.25,
            "retries": 1,
        },
        {"name": "garage-485", "transport": "modbus_rtu", "port": s["garage"].port, "baud": 9600, "timeout_s": 0.25},
        {"name": "ebc12-tcp", "transport": "modbus_tcp", "host": "127.0.0.1", "tcp_port": s["tcp"].port},
        {"name": "bay-radio", "transport": "serial_line", "port": s["line"].port, "baud": 9600},
    ]
    fast = {"safety": 0.5, "routine": 1.0, "slow": 5.0}
    devices = [
        {
            "id": "cp10-a",
            "profile": "voltpile-cp10",
            "bus": "shelter-485",
            "address": 3,
            "poll": fast,
            "labels": {"shelter": "a", "zone": "north"},
        },
        {"id": "fsm8-a", "profile": "nanfang-fsm8", "bus": "shelter-485", "address": 5, "poll": fast},
        {"id": "ebc12-a", "profile": "hengtong-ebc12", "bus": "ebc12-tcp", "address": 1, "poll": fast},
        {"id": "ph48-g", "profile": "parkhub-ph48", "bus": "garage-485", "address": 7, "poll": fast},
        {"id": "rx200-g", "profile": "geomag-rx200", "bus": "bay-radio"},
    ]
    return write_config(tmp, port, buses, devices, **extra)


def test_shelter_and_garage_end_to_end(tmp_path: Path, mosquitto, site) -> None:  # type: ignore[no-untyped-def]
    col = Collector(mosquitto.port, "e2e")
    agent = AgentProcess(site_config(tmp_path, mosquitto.port, site), tmp_path / "agent.log").start()
    try:
        st = col.wait(lambda: [s for s in col.of(wire.Kind.STATUS) if s.state == "online"], what="birth")
        assert {d.id for d in st[-1].devices} == {"cp10-a", "fsm8-a", "ebc12-a", "ph48-g", "rx200-g"}
        for dev in ("cp10-a", "fsm8-a", "ebc12-a", "ph48-g", "rx200-g"):
            col.wait(lambda d=dev: col.of(wire.Kind.TELEMETRY, d), what=f"telemetry of {dev}")
        col.wait(lambda: "port.3.current" in col.latest_values("cp10-a"), what="routine values")
        v = col.latest_values("cp10-a")
        assert v["port.3.connector_temp"] == 41.5
        assert v["port.3.current"] == 2.5
        assert v["port.3.state"] == "charging"
        assert v["ambient_temp"] == 22.0
        assert v["smoke"] is False
        f = col.latest_values("fsm8-a")
        assert f["pipe_pressure"] == 3.2 and f["waterflow"] is False
        col.wait(lambda: "bay.2.occupied" in col.latest_values("ph48-g"), what="bay values")
        assert col.latest_values("ph48-g")["bay.2.occupied"] is True
        col.wait(lambda: "bay.4.occupied" in col.latest_values("rx200-g"), what="line values")
        r = col.latest_values("rx200-g")
        assert r["bay.4.occupied"] is True and r["bay.4.battery"] == 3.3 and r["bay.4.rssi"] == -70
        e = col.latest_values("ebc12-a")
        assert any(k.endswith("connector_temp") for k in e)

        # a state change becomes an event: waterflow on the sprinkler monitor
        site["fsm8"].set(waterflow=True)
        ev = col.wait(
            lambda: [x for x in col.of(wire.Kind.EVENT, "fsm8-a") if x.point == "waterflow"], what="waterflow event"
        )
        assert ev[0].value is True and ev[0].previous is False and ev[0].kind == "state"
        # a car leaves bay 4 of the radio receiver
        site["line"].set_bay(4, occ="0", mv="3300", rssi="-70")
        col.wait(
            lambda: [x for x in col.of(wire.Kind.EVENT, "rx200-g") if x.point == "bay.4.occupied"],
            what="bay freed event",
        )
        # health for every device, sequence numbers strictly increasing per device
        col.wait(
            lambda: len({d for d in ("cp10-a", "rx200-g") if col.of(wire.Kind.HEALTH, d)}) == 2,
            what="health",
            timeout=10,
        )
        h = col.of(wire.Kind.HEALTH, "cp10-a")[-1]
        assert h.online and h.ok > 0 and h.breaker == "closed"
        for dev in ("cp10-a", "fsm8-a", "rx200-g"):
            seqs = [m.seq for k in (wire.Kind.TELEMETRY, wire.Kind.EVENT, wire.Kind.HEALTH) for m in col.of(k, dev)]
            assert len(seqs) == len(set(seqs)), f"duplicate seq for {dev}"
        assert not col.errors, col.errors
    finally:
        agent.stop()
        col.close()
    assert "Traceback" not in agent.log(), agent.log()
    off = col.of(wire.Kind.STATUS)
    assert off[-1].state == "offline"


def test_commands_and_refusals(tmp_path: Path, mosquitto, site) -> None:  # type: ignore[no-untyped-def]
    col = Collector(mosquitto.port, "cmd")
    agent = AgentProcess(site_config(tmp_path, mosquitto.port, site), tmp_path / "agent.log").start()
    try:
        col.wait(lambda: "port.3.current" in col.latest_values("cp10-a"), timeout=20, what="first values")
        cid = col.send_command("cp10-a", "port_enable", index=3, value=False)
        res = col.wait(lambda: [r for r in col.of(wire.Kind.CMD_RESULT, "cp10-a") if r.id == cid], what="cmd-result")
        assert res[0].status == "done", res[0]
        assert site["cp10"].values["port.3.current"] == 0.0
        col.wait(lambda: col.latest_values("cp10-a").get("port.3.current") == 0.0, what="current falls to zero")
        bad = col.send_command("cp10-a", "self_destruct", value=True)
        res = col.wait(lambda: [r for r in col.of(wire.Kind.CMD_RESULT, "cp10-a") if r.id == bad], what="refusal")
        assert res[0].status == "refused" and "self_destruct" in res[0].detail and "port_enable" in res[0].detail
        bad2 = col.send_command("cp10-a", "port_enable", index=11, value=False)
        res = col.wait(lambda: [r for r in col.of(wire.Kind.CMD_RESULT, "cp10-a") if r.id == bad2], what="refusal")
        assert res[0].status == "refused" and "11" in res[0].detail
        bad3 = col.send_command("rx200-g", "port_enable", index=1, value=False)
        res = col.wait(lambda: [r for r in col.of(wire.Kind.CMD_RESULT, "rx200-g") if r.id == bad3], what="refusal")
        assert res[0].status == "refused"
        assert not site["cp10"].writes[1:], "a refused command must not reach the device"
    finally:
        agent.stop()
        col.close()
