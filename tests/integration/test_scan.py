"""`edge-agent scan` and `sim run --edge-config` as an installer runs them, on real serial bytes.

The simulators speak real Modbus RTU on pseudo-terminals paced at the bus's baud (a master at the
wrong baud gets no answer), Modbus TCP, and a line protocol. The scan must find every slave at the
right line setting, recognise each model from the registers its profile declares, list a device no
profile fits with what it read (not guessed, not configured), not be fooled by a slave too slow to
answer in time, and write a config that `edge-agent check` accepts.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from simulators.site import BusSpec, DeviceSpec, FaultSpec, SimSite, SiteSpec

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CATALOG = Path(__file__).resolve().parents[2] / "device_profiles" / "catalog"


def run(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=timeout)


def cli(args: list[str]) -> Any:
    from typer.testing import CliRunner

    from edge_agent.cli import app

    return CliRunner().invoke(app, args)


def an_unknown_model(tmp: Path) -> Path:
    """A charger the catalog does not know: the VoltPile map, another vendor's identity registers."""
    text = (CATALOG / "voltpile-cp10.yaml").read_text()
    text = text.replace("id: voltpile-cp10", "id: acme-c10").replace("expect: VOLT", "expect: ACME")
    p = tmp / "acme-c10.yaml"
    p.write_text(text)
    return p


def test_scan_walks_bauds_identifies_and_writes_a_config(tmp_path: Path) -> None:
    spec = SiteSpec(site="bus19200", buses=[BusSpec(id="rs485", kind="rtu", baud=19200)], devices=[
        DeviceSpec(id="slow", profile="voltpile-cp10", bus="rs485", unit=2, faults=FaultSpec(delay_s=0.5)),
        DeviceSpec(id="chg", profile="voltpile-cp10", bus="rs485", unit=3),
        DeviceSpec(id="spk", profile="nanfang-fsm8", bus="rs485", unit=5),
        DeviceSpec(id="hub", profile="parkhub-ph48", bus="rs485", unit=7),
        DeviceSpec(id="odd", profile=str(an_unknown_model(tmp_path)), bus="rs485", unit=9)])
    site = SimSite(spec).start()
    out = tmp_path / "edge.yaml"
    try:
        port = site.endpoints()["chg"]["serial_port"]
        r = run("edge_agent", "scan", "--serial-port", port, "--baud", "9600,19200,38400", "--parity", "N",
                "--last", "10", "--site", "estate-7", "--gateway", "gw3", "--out", str(out))
    finally:
        site.stop()
    text = r.stdout + r.stderr
    assert r.returncode == 0, text
    assert "5 device(s) at 19200 8N1" in text, text
    assert "Late or garbled answers" in text, "the slow slave's late replies are noticed and said"
    for model in ("VoltPile CP-10", "Nanfang Fire FSM-8", "ParkHub PH-48"):
        assert model in text, text
    assert "unit 9 at 19200 8N1, not recognised; it answered: " in text and "input 900+1: [0x4143, 0x4d45]" in text
    assert "not voltpile-cp10: vendor (input 900): expected 'VOLT', got 'ACME'" in text, text
    assert "passes `edge-agent check`" in text and "bus ttyname" not in text
    doc = yaml.safe_load(out.read_text())
    assert (doc["site"], doc["gateway"]) == ("estate-7", "gw3")
    [bus] = doc["buses"]
    assert (bus["serial_port"], bus["baud"], bus["parity"]) == (port, 19200, "N")
    assert {(d["profile"], d["address"]) for d in doc["devices"]} == {
        ("voltpile-cp10", 2), ("voltpile-cp10", 3), ("nanfang-fsm8", 5), ("parkhub-ph48", 7)}, "the unknown is left out"
    assert bus["timeout_s"] == 1.0, "the slow slave (unit 2) is polled with a timeout it can meet"
    check = run("edge_agent", "check", str(out))
    assert check.returncode == 0, check.stderr
    assert f"bus {bus['name']}: polls need" in check.stdout


def test_scan_tcp_and_line_into_enrolment_config(tmp_path: Path) -> None:
    """Scanned into the config enrolment made: its uplink and device ids stay, placeholders go."""
    from cloud import enrol
    from cloud.enrol import DeviceSpec as Enrolled

    e = enrol.enrol("shelter-b", "gw1", [Enrolled("cab1", "hengtong-ebc12"), Enrolled("riser", "aquaguard-rm4"),
                                         Enrolled("bays", "geomag-rx200")], "mqtt://broker.example:1883")
    out = tmp_path / "edge.yaml"
    out.write_text(e.edge_config)
    site = SimSite.from_file("shelter-b").start()
    try:
        eps = site.endpoints()
        for dev in ("chg1", "spk1"):  # in this process (the other tests run the real command)
            r = cli(["scan", "--host", "127.0.0.1", "--tcp-port", str(eps[dev]["tcp_port"]), "--last", "3",
                     "--out", str(out)])
            assert r.exit_code == 0, r.output
        r = cli(["scan", "--line", "--serial-port", eps["bays1"]["serial_port"], "--baud", "19200,9600",
                 "--listen", "3", "--out", str(out)])
        assert r.exit_code == 0, r.output
        assert "at 19200 8N1: 0 line(s)" in r.output and "at 9600 8N1" in r.output, r.output
        assert "→ geomag-rx200" in r.output, r.output
    finally:
        site.stop()
    doc = yaml.safe_load(out.read_text())
    assert doc["uplink"]["password"] == e.password and doc["uplink"]["url"] == "mqtt://broker.example:1883"
    by_id = {d["id"]: d for d in doc["devices"]}
    assert set(by_id) == {"cab1", "riser", "bays"}, "enrolment's device ids are kept"
    assert by_id["riser"]["address"] == 1
    hosts = {b["tcp_port"] for b in doc["buses"] if b["transport"] == "modbus_tcp"}
    assert hosts == {eps["chg1"]["tcp_port"], eps["spk1"]["tcp_port"]}
    assert not [b for b in doc["buses"] if b.get("host") == "192.0.2.10"], "enrolment's placeholder bus is gone"
    check = run("edge_agent", "check", str(out))
    assert check.returncode == 0, check.stderr


def test_sim_run_writes_the_matching_edge_config(tmp_path: Path) -> None:
    out = tmp_path / "garage.yaml"
    r = run("shelterwatch.cli", "sim", "run", "garage", "--duration", "1", "--edge-config", str(out),
            "--gateway", "gw7", "--uplink", "mqtt://127.0.0.1:1884")
    assert r.returncode == 0, r.stderr
    doc = yaml.safe_load(out.read_text())
    assert doc["gateway"] == "gw7" and doc["uplink"]["url"] == "mqtt://127.0.0.1:1884"
    assert {d["id"]: d["profile"] for d in doc["devices"]} == {"park1": "parkhub-ph48", "bays1": "geomag-rx200"}
    assert {b["name"]: b["baud"] for b in doc["buses"]} == {"rs485-park": 19200, "rx-serial": 9600}
    check = run("edge_agent", "check", str(out))
    assert check.returncode == 0, check.stderr
    assert "bus rs485-park: polls need" in check.stdout


def test_a_master_at_the_wrong_parity_gets_no_answer_where_a_pty_can_tell() -> None:
    """Odd against none: a real slave sees parity errors and stays silent, and so does the simulated
    bus (a pty keeps PARODD; docs/simulators.md). mbpoll (libmodbus) is the master: pyserial cannot
    reconfigure a pty at odd parity."""
    import shutil

    answered = {}
    for bus_parity in ("O", "N"):
        site = SimSite(SiteSpec(site="par", buses=[BusSpec(id="b", kind="rtu", baud=9600, parity=bus_parity)],
                                devices=[DeviceSpec(id="chg", profile="voltpile-cp10", bus="b", unit=2)])).start()
        try:
            port = site.endpoints()["chg"]["serial_port"]
            for master in ("odd", "none"):
                r = subprocess.run([shutil.which("mbpoll") or "mbpoll", "-0", "-1", "-o", "0.5", "-m", "rtu", "-b",
                                    "9600", "-P", master, "-a", "2", "-t", "3", "-r", "900", "-c", "2", port],
                                   capture_output=True, text=True, timeout=20)
                answered[(bus_parity, master)] = "[900]:" in r.stdout
            mismatches = site.buses["b"].stats["parity_mismatch"]  # type: ignore[union-attr]
        finally:
            site.stop()
        assert mismatches == 1
    assert answered == {("O", "odd"): True, ("O", "none"): False, ("N", "odd"): False, ("N", "none"): True}
