"""Broken agent configs: every kind of mistake names the file, the line and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from device_profiles.located_yaml import ConfigError
from edge_agent.cli import app
from edge_agent.config import load_config

GOOD = """\
site: shelter-a
gateway: gw1
state_dir: {state}
uplink:
  url: mqtt://127.0.0.1:1883
buses:
  - name: b1
    transport: modbus_rtu
    port: /dev/ttyUSB0
    baud: 9600
  - name: t1
    transport: modbus_tcp
    host: 127.0.0.1
    tcp_port: 5020
devices:
  - id: cp10-a
    profile: voltpile-cp10
    bus: b1
    address: 3
    poll: {{safety: 1, routine: 5}}
    labels: {{shelter: a}}
    interlocks:
      port_overtemp: {{value: 70}}
    charge_analytics: {{stop_port: true, warn_excess_c: 6}}
  - id: ebc12-a
    profile: hengtong-ebc12
    bus: t1
    address: 1
"""

# (name, text replaced, replacement, expected line, expected key fragment, message fragment)
BROKEN = [
    ("typo key", "    baud: 9600\n", "    buad: 9600\n", 10, "buses[0].buad", "unknown key"),
    ("bad baud", "    baud: 9600\n", "    baud: fast\n", 10, "buses[0].baud", "whole number"),
    ("bad parity", "    baud: 9600\n", "    baud: 9600\n    parity: X\n", 11, "buses[0].parity", "one of"),
    ("missing site", "site: shelter-a\n", "", 1, "site", "missing"),
    ("capital id", "  - id: cp10-a\n", "  - id: CP10-A\n", 16, "devices[0].id", "pattern"),
    ("unknown bus", "    bus: b1\n", "    bus: b9\n", 18, "devices[0].bus", "unknown bus"),
    (
        "unknown profile",
        "    profile: voltpile-cp10\n",
        "    profile: voltpile-cp99\n",
        17,
        "devices[0].profile",
        "unknown profile",
    ),
    (
        "transport mismatch",
        "    profile: hengtong-ebc12\n    bus: t1\n",
        "    profile: hengtong-ebc12\n    bus: b1\n",
        27,
        "devices[1].bus",
        "speaks modbus_tcp",
    ),
    ("unit out of range", "    address: 3\n", "    address: 300\n", 19, "devices[0].address", "247"),
    ("negative poll", "{safety: 1, routine: 5}", "{safety: -1, routine: 5}", 20, "devices[0].poll.safety", "greater"),
    (
        "unknown interlock",
        "      port_overtemp:",
        "      port_overheat:",
        23,
        "devices[0].interlocks.port_overheat",
        "no interlock",
    ),
    ("bad url", "  url: mqtt://127.0.0.1:1883\n", "  url: http://broker\n", 5, "uplink.url", "pattern"),
    ("tcp without host", "    host: 127.0.0.1\n", "", 11, "buses[1]", "host"),
    (
        "duplicate key",
        "    address: 1\n",
        "    address: 1\n    address: 2\n",
        29,
        "devices[1].address",
        "duplicate key",
    ),
    ("missing uplink url", "  url: mqtt://127.0.0.1:1883\n", "  client_id: x\n", 4, "uplink.url", "missing"),
    ("yaml syntax", "  - name: b1\n", "  - name: [b1\n", 0, "", "YAML syntax"),
    ("duplicate device id", "  - id: ebc12-a\n", "  - id: cp10-a\n", 25, "devices[1].id", "duplicate device"),
]


@pytest.mark.parametrize("name,old,new,line,key,msg", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_configs_are_located(
    tmp_path: Path, name: str, old: str, new: str, line: int, key: str, msg: str
) -> None:
    text = GOOD.format(state=tmp_path)
    assert old in text, name
    p = tmp_path / "agent.yaml"
    p.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError) as e:
        load_config(p)
    issues = e.value.issues
    hit = [i for i in issues if key in i.key and msg.lower() in i.message.lower()]
    assert hit, f"{name}: {[str(i) for i in issues]}"
    assert hit[0].file == str(p)
    if line:
        assert hit[0].line == line, f"{name}: {hit[0]}"


def test_good_config_loads_with_its_profiles(tmp_path: Path) -> None:
    p = tmp_path / "agent.yaml"
    p.write_text(GOOD.format(state=tmp_path))
    cfg, profiles = load_config(p)
    assert set(profiles) == {"voltpile-cp10", "hengtong-ebc12"}
    assert cfg.devices[0].interlocks["port_overtemp"].value == 70
    ca = cfg.devices[0].charge_analytics
    assert ca.stop_port and ca.overrides() == {"warn_excess_c": 6.0}
    assert cfg.devices[1].charge_analytics.enabled and not cfg.devices[1].charge_analytics.stop_port
    assert cfg.uplink.port == 1883 and not cfg.uplink.use_tls


def test_check_command_prints_located_errors(tmp_path: Path) -> None:
    p = tmp_path / "agent.yaml"
    p.write_text(GOOD.format(state=tmp_path).replace("    bus: b1\n", "    bus: b9\n"))
    r = CliRunner().invoke(app, ["check", str(p)])
    assert r.exit_code == 2
    assert f"{p}:18 devices[0].bus: unknown bus 'b9'" in r.output
    p.write_text(GOOD.format(state=tmp_path))
    r = CliRunner().invoke(app, ["check", str(p)])
    assert r.exit_code == 0, r.output
    assert "OK" in r.output and "bus b1: polls need" in r.output


def test_check_warns_when_polls_cannot_fit(tmp_path: Path) -> None:
    p = tmp_path / "agent.yaml"
    p.write_text(GOOD.format(state=tmp_path).replace("{safety: 1, routine: 5}", "{safety: 0.02, routine: 0.05}"))
    r = CliRunner().invoke(app, ["check", str(p)])
    assert r.exit_code == 0
    assert "cannot all run on time" in r.output
