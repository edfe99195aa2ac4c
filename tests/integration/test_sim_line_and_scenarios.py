"""The line receiver on a real pty, scenarios played against a running site, and the CLI as a
separate process (what the edge tests and benchmarks use)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable

import pytest
import serial  # pyserial

from device_profiles.lineproto import LineError, parse_line
from simulators.scenario import SCENARIOS_DIR, ScenarioPlayer, find_scenario, load_scenario
from simulators.site import BusSpec, DeviceSpec, SimSite, SiteSpec

pytestmark = pytest.mark.integration


def rx_site(**params: object) -> SiteSpec:
    """38400 baud: ~140 lines/s fit on the line (at 9600 only ~37 would)."""
    return SiteSpec(
        site="rx",
        buses=[BusSpec(id="rx", kind="line", baud=38400)],
        devices=[DeviceSpec(id="bays1", profile="geomag-rx200", bus="rx", params=params)],
    )


def read_lines(path: str, seconds: float) -> list[bytes]:
    port = serial.Serial(path, 38400, timeout=0.1)
    port.reset_input_buffer()
    lines: list[bytes] = []
    deadline = time.monotonic() + seconds
    buf = b""
    while time.monotonic() < deadline:
        buf += port.read(512)
        *done, buf = buf.split(b"\r\n")
        lines += done
    port.close()
    return lines


def test_line_receiver_output_parses_through_its_profile(sim_site: Callable[..., SimSite]) -> None:
    site = sim_site(rx_site(heartbeat_s=1.0, speedup=300))
    dev = site.device("bays1")
    lines = read_lines(site.endpoints()["bays1"]["serial_port"], 1.5)
    assert len(lines) >= 64
    for line in lines:
        rec = parse_line(dev.profile, line)
        assert 1 <= rec.index <= 64
    dev.model.set_occupied(7, not dev.model.bays[7].occupied)
    want = dev.model.bays[7].occupied
    got = [parse_line(dev.profile, ln) for ln in read_lines(site.endpoints()["bays1"]["serial_port"], 0.5)]
    assert any(r.index == 7 and r.values["bay.7.occupied"] is want for r in got)


def test_garbage_lines_are_rejected_with_reasons(sim_site: Callable[..., SimSite]) -> None:
    site = sim_site(rx_site(heartbeat_s=1.0))
    dev = site.device("bays1")
    dev.faults.garbage_rate = 0.5
    reasons: Counter[str] = Counter()
    good = 0
    for line in read_lines(site.endpoints()["bays1"]["serial_port"], 2.5):
        try:
            parse_line(dev.profile, line)
            good += 1
        except LineError as e:
            reasons[e.reason] += 1
    assert good >= 100
    assert set(reasons) <= {"not_text", "no_match", "checksum", "bad_instance"}
    assert {"checksum", "bad_instance"} <= set(reasons), reasons
    assert 0.25 < sum(reasons.values()) / good < 0.8


def test_port_runaway_scenario(sim_site: Callable[..., SimSite]) -> None:
    scn = load_scenario(find_scenario("port-runaway"))
    site = sim_site(scn.site)
    port = site.device("chg1").model.ports[3]
    player = ScenarioPlayer(site, scn, speed=20).start()  # runaway at 30 s → 1.5 s
    time.sleep(1.0)
    assert port.bike and not port.runaway
    time.sleep(1.2)
    assert port.runaway
    t0 = port.connector_temp
    time.sleep(1.0)
    assert port.connector_temp - t0 > 2.5, "climbing several °C per second"
    assert player.wait(5) and not player.errors
    assert [what for _, what in player.log] == [
        "chg1 plug port=3",
        "chg1 runaway port=3",
        "chg2 runaway port=7",
    ]


def test_silent_slave_scenario(sim_site: Callable[..., SimSite]) -> None:
    scn = load_scenario(find_scenario("silent-slave"))
    site = sim_site(scn.site)
    player = ScenarioPlayer(site, scn, speed=100).start()
    time.sleep(0.5)
    assert site.device("spk1").faults.silent
    time.sleep(1.0)
    assert not site.device("spk1").faults.silent and site.device("spk1").faults.crc_error_rate == 0.3
    assert player.wait(3)
    assert site.device("spk1").faults.crc_error_rate == 0


def test_scenario_steps_must_fit_the_running_site(sim_site: Callable[..., SimSite]) -> None:
    scn = load_scenario(find_scenario("garage-rush-hour"))
    site = sim_site("shelter-a")
    with pytest.raises(ValueError, match="no device 'park1'"):
        ScenarioPlayer(site, scn)


def test_cli_runs_a_site_in_its_own_process(sim_process: Callable[..., object]) -> None:
    from pymodbus.client import ModbusSerialClient, ModbusTcpClient

    sp = sim_process("sprinkler-waterflow", "--speed", "10")
    eps = sp.endpoints  # type: ignore[attr-defined]
    assert set(eps) == {"chg1", "spk1", "chg2"} and eps["spk1"]["transport"] == "modbus_rtu"
    c = ModbusSerialClient(port=eps["spk1"]["serial_port"], baudrate=9600, timeout=1, retries=0)
    assert c.connect()
    assert c.read_discrete_inputs(0, count=1, device_id=5).bits[0] is False
    time.sleep(2.5)  # waterflow at 20 s / speed 10
    assert c.read_discrete_inputs(0, count=1, device_id=5).bits[0] is True
    c.close()
    t = ModbusTcpClient(eps["chg2"]["host"], port=eps["chg2"]["tcp_port"], timeout=1, retries=0)
    assert t.connect() and not t.read_holding_registers(200, count=9, device_id=1).isError()
    t.close()
    assert sp.stop() == 0  # type: ignore[attr-defined]


def test_cli_duration_and_list() -> None:
    t0 = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "shelterwatch.cli", "sim", "run", "garage", "--json", "--duration", "1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0 and time.monotonic() - t0 < 20
    assert '"park1"' in r.stdout.splitlines()[0]
    r = subprocess.run(
        [sys.executable, "-m", "shelterwatch.cli", "sim", "list"], capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 0 and "shelter-a" in r.stdout and "port-runaway" in r.stdout


def test_cli_reports_a_broken_file(tmp_path: object) -> None:
    from pathlib import Path

    bad = Path(str(tmp_path)) / "bad.yaml"
    bad.write_text("site: x\nbuses: []\ndevices: []\n")
    r = subprocess.run(
        [sys.executable, "-m", "shelterwatch.cli", "sim", "run", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2 and "bad.yaml:2 buses" in r.stderr.replace("\n", "")


def test_a_reader_at_the_wrong_baud_sees_noise(sim_site: Callable[..., SimSite]) -> None:
    site = sim_site(rx_site(heartbeat_s=1.0))
    port = serial.Serial(site.endpoints()["bays1"]["serial_port"], 9600, timeout=0.1)  # the line runs at 38400
    port.reset_input_buffer()
    data = b""
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        data += port.read(512)
    port.close()
    assert len(data) > 500 and b"$PBAY" not in data


@pytest.mark.parametrize("name", sorted(p.stem for p in SCENARIOS_DIR.glob("*.yaml")))
def test_every_shipped_scenario_plays_without_errors(sim_site: Callable[..., SimSite], name: str) -> None:
    scn = load_scenario(find_scenario(name))
    site = sim_site(scn.site)
    player = ScenarioPlayer(site, scn, speed=1000).start()
    assert player.wait(5)
    assert not player.errors and len(player.log) == len(scn.steps)
    time.sleep(0.3)
    assert not site.errors
