"""Installer tools against real bytes: scan finds the units that answer, probe prints decoded points
with units, status prints the running agent's health."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from device_profiles.loader import get_profile
from tests.fixtures.modbus_slave import LineDevice, RtuBus, SimDevice
from tests.integration.edge.helpers import AgentProcess, write_config

pytestmark = pytest.mark.integration


def edge(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_agent", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )


def test_scan_lists_answering_units(rtu_bus: type[RtuBus]) -> None:
    cp = SimDevice(get_profile("voltpile-cp10"), 3)
    fsm = SimDevice(get_profile("nanfang-fsm8"), 5)
    bus = rtu_bus([cp, fsm])
    r = edge("scan", "--port", bus.port, "--baud", "9600", "--parity", "N", "--first", "1", "--last", "8",
             "--reply-ms", "60")
    assert r.returncode == 0, r.stderr
    # This stand-in slave serves the profiles' points but not their identify registers: both units
    # are listed with what they answered, and recognised as nothing (tests/integration/test_scan.py
    # has the simulators, which answer identify reads as the devices do).
    lines = [x for x in r.stdout.splitlines() if x.startswith("unit")]
    assert [int(x.split()[1]) for x in lines] == [3, 5], r.stdout
    assert all("at 9600 8N1, not recognised; it answered: holding 0: " in x for x in lines), r.stdout


def test_probe_prints_decoded_points_with_units(rtu_bus: type[RtuBus], tmp_path: Path) -> None:
    cp = SimDevice(get_profile("voltpile-cp10"), 3)
    cp.set(port__2__connector_temp=47.3, ambient_temp=21.5)
    bus = rtu_bus([cp])
    r = edge("probe", "--profile", "voltpile-cp10", "--port", bus.port, "--unit", "3")
    assert r.returncode == 0, r.stderr
    row = next(x for x in r.stdout.splitlines() if "port.2.connector_temp" in x)
    assert "47.3" in row and "°C" in row and "input 114" in row  # zero-based address 100 + 8 + 6
    assert any("ambient_temp" in x and "21.5" in x for x in r.stdout.splitlines())
    line = LineDevice(tmp_path, period_s=0.2)
    try:
        line.set_bay(9, occ="1", mv="3100", rssi="-80")
        r = edge("probe", "--profile", "geomag-rx200", "--port", line.port, "--seconds", "1.5")
        assert r.returncode == 0, r.stderr
        assert any("bay.9.battery" in x and "3.1" in x and " V " in x for x in r.stdout.splitlines()), r.stdout
    finally:
        line.stop()


def test_status_prints_health_of_the_running_agent(rtu_bus: type[RtuBus], tmp_path: Path, mosquitto) -> None:  # type: ignore[no-untyped-def]
    fsm = SimDevice(get_profile("nanfang-fsm8"), 5)
    bus = rtu_bus([fsm])
    cfg = write_config(
        tmp_path,
        mosquitto.port,
        [{"name": "b1", "transport": "modbus_rtu", "port": bus.port, "timeout_s": 0.2}],
        [
            {"id": "fsm8", "profile": "nanfang-fsm8", "bus": "b1", "address": 5},
            {"id": "ghost", "profile": "nanfang-fsm8", "bus": "b1", "address": 9},
        ],
    )
    agent = AgentProcess(cfg, tmp_path / "agent.log").start()
    try:
        time.sleep(5)
        r = edge("status", str(cfg))
        assert r.returncode == 0, r.stderr
        out = r.stdout
        assert "connected" in out and "bus b1" in out
        fsm_row = next(x for x in out.splitlines() if "fsm8" in x)
        ghost_row = next(x for x in out.splitlines() if "ghost" in x)
        assert "closed" in fsm_row
        assert "open" in ghost_row and "never" in ghost_row
    finally:
        agent.stop()


def test_device_refusing_bridged_holes_is_read_point_by_point(rtu_bus: type[RtuBus]) -> None:
    """The planner reads across small unmapped holes; a device that answers exception 2 to that
    gets its points read without bridging from then on, and every value still arrives."""
    import asyncio

    from device_profiles.model import PollClass
    from edge_agent.drivers.modbus_rtu import RtuDriver
    from edge_agent.scheduler import BusScheduler, Slave

    cp = SimDevice(get_profile("voltpile-cp10"), 3, strict_holes=True)
    cp.set(port__10__connector_temp=55.5)
    bus = rtu_bus([cp])
    got: dict[str, object] = {}

    async def run() -> Slave:
        s = Slave("cp", 3, cp.profile, {PollClass.SAFETY: 0.2, PollClass.ROUTINE: 0.2, PollClass.SLOW: 0.2})
        sch = BusScheduler("b", RtuDriver(bus.port, 9600, timeout_s=0.3), [s], lambda d, v, c: got.update(v))
        t = asyncio.create_task(sch.run())
        await asyncio.sleep(2.0)
        sch.stop()
        await t
        return s

    s = asyncio.run(run())
    assert s.split, "no read was split"
    assert got["port.10.connector_temp"] == 55.5
    assert s.stats.exceptions >= 1 and s.breaker.state == "closed"
