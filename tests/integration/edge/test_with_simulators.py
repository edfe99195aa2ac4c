"""The edge agent against the project's simulators (simulators.site.SimSite): physics models
behind real RTU bytes on pseudo-terminals, Modbus TCP and a serial line receiver.

Shelter A (two chargers of different models + a sprinkler monitor) and the garage (bay hub +
line-protocol receiver) → agent process → mosquitto → subscriber: every payload valid under the
wire contract, values matching the simulators' physical model; a runaway port is switched off by
the edge with the broker down; a port-off command reaches the simulator.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from device_profiles import wire
from simulators.edge_config import edge_config
from simulators.site import SimSite
from tests.integration.edge.helpers import AgentProcess, Collector, write_config

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]
SAFETY_S = 0.5


@pytest.fixture
def sims() -> Iterator[dict[str, SimSite]]:
    sites = {n: SimSite.from_file(f"simulators/sites/{n}.yaml").start() for n in ("shelter-a", "garage")}
    yield sites
    for s in sites.values():
        s.stop()


def agent_config(tmp: Path, port: int, sites: dict[str, SimSite]) -> Path:
    """The simulators' endpoints as an agent config (the builder `sim run --edge-config` uses),
    one agent bus per simulated bus; both sites' devices on one gateway."""
    buses: list[dict[str, Any]] = []
    devices: list[dict[str, Any]] = []
    poll = {"safety": SAFETY_S, "routine": 1.0, "slow": 5.0}
    for site_name, site in sites.items():
        eps = {d: {**ep, "bus": f"{site_name}-{ep['bus']}", "labels": {"shelter": site_name}}
               for d, ep in site.endpoints().items()}
        doc, _ = edge_config(site_name, eps)
        buses += doc["buses"]
        devices += [{**d, "poll": poll} for d in doc["devices"]]
    return write_config(tmp, port, buses, devices)


def test_sites_end_to_end_match_the_physics(tmp_path: Path, mosquitto, sims) -> None:  # type: ignore[no-untyped-def]
    col = Collector(mosquitto.port, "sim-e2e")
    agent = AgentProcess(agent_config(tmp_path, mosquitto.port, sims), tmp_path / "agent.log").start()
    try:
        for dev in ("chg1", "spk1", "chg2", "park1"):
            col.wait(lambda d=dev: col.of(wire.Kind.TELEMETRY, d), timeout=30, what=f"telemetry of {dev}")
        col.wait(lambda: any(k.endswith("connector_temp") for k in col.latest_values("chg1")), what="charger temps")
        col.wait(lambda: "port.1.current" in col.latest_values("chg1"), what="routine values")
        time.sleep(1.5)
        chg1 = sims["shelter-a"].device("chg1").model
        v = col.latest_values("chg1")
        for n in (1, 2, 3, 4):
            p = chg1.port(n)
            assert v[f"port.{n}.connector_temp"] == pytest.approx(p.connector_temp, abs=1.0), n
            assert v[f"port.{n}.current"] == pytest.approx(p.current, abs=0.1), n
            assert v[f"port.{n}.enabled"] is p.enabled
        chg2 = sims["shelter-a"].device("chg2").model
        v2 = col.latest_values("chg2")
        temps = [k for k in v2 if k.endswith("connector_temp")]
        assert temps
        k = temps[0]
        assert v2[k] == pytest.approx(chg2.port(int(k.split(".")[1])).connector_temp, abs=1.0)
        spk = sims["shelter-a"].device("spk1").model
        s = col.latest_values("spk1")
        assert s["pipe_pressure"] == pytest.approx(spk.pipe_pressure, abs=0.3)
        assert s["waterflow"] is spk.waterflow
        park = sims["garage"].device("park1").model
        pv = col.latest_values("park1")
        occ = [n for n in range(1, 49) if pv.get(f"bay.{n}.occupied")]
        assert abs(len(occ) - park.occupied_count) <= 2  # bays may change between poll and check
        col.wait(lambda: col.of(wire.Kind.TELEMETRY, "bays1"), timeout=30, what="line receiver telemetry")
        # sprinkler waterflow → event
        sims["shelter-a"].call(lambda: setattr(spk, "waterflow", True))
        col.wait(
            lambda: [e for e in col.of(wire.Kind.EVENT, "spk1") if e.point == "waterflow" and e.value is True],
            what="waterflow event",
        )
        assert not col.errors, col.errors
    finally:
        agent.stop()
        col.close()
    assert "Traceback" not in agent.log(), agent.log()


def test_runaway_port_cut_with_broker_down_and_command(tmp_path: Path, mosquitto, sims) -> None:  # type: ignore[no-untyped-def]
    col = Collector(mosquitto.port, "sim-il")
    agent = AgentProcess(agent_config(tmp_path, mosquitto.port, sims), tmp_path / "agent.log").start()
    chg1 = sims["shelter-a"].device("chg1").model
    try:
        col.wait(lambda: "port.2.current" in col.latest_values("chg1"), timeout=30, what="charger values")
        # command: port 1 off via MQTT reaches the simulator and its current falls to zero
        cid = col.send_command("chg1", "port_enable", index=1, value=False)
        res = col.wait(lambda: [r for r in col.of(wire.Kind.CMD_RESULT, "chg1") if r.id == cid], what="cmd-result")
        assert res[0].status == "done"
        col.wait(lambda: chg1.port(1).current == 0.0, what="simulated current at zero")
        bad = col.send_command("chg1", "reboot")
        res = col.wait(lambda: [r for r in col.of(wire.Kind.CMD_RESULT, "chg1") if r.id == bad], what="refusal")
        assert res[0].status == "refused" and "reboot" in res[0].detail

        mosquitto.stop()
        sims["shelter-a"].call(lambda: chg1.start_runaway(3))
        deadline = time.monotonic() + 60
        while chg1.port(3).connector_temp < 75.0:  # voltpile cut-off
            assert time.monotonic() < deadline, "runaway did not heat up"
            time.sleep(0.01)
        t_hot = time.monotonic()
        while chg1.port(3).enabled:
            assert time.monotonic() - t_hot < 5, "port not switched off"
            time.sleep(0.01)
        dt = time.monotonic() - t_hot
        assert dt <= 2 * SAFETY_S, f"switched off {dt:.2f} s after reaching the cut-off"
        assert chg1.port(3).current == 0.0 and chg1.port(2).enabled
        mosquitto.start()
        ev = col.wait(
            lambda: [e for e in col.of(wire.Kind.EVENT, "chg1") if e.kind == "interlock"],
            timeout=30,
            what="interlock event after the outage",
        )
        assert ev[0].data["index"] == 3 and ev[0].data["ok"] is True
    finally:
        agent.stop()
        col.close()
